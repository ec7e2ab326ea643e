/**
 * The WebAssembly implementation of the Sem vocabulary, shared by every engine. Subclasses say
 * where operands live and how the engine leaves; everything an instruction *does* (arithmetic,
 * memory fast paths, atomics) is emitted here, once.
 */
import { HartSlot, LOCK_STRIDE, mirrorOffsetsOf, PAGE_SIZE, type MemoryLayout, STRIPE_COUNT, STRIPE_LINE_SHIFT, TLB_ENTRIES, TLB_SET_SIZE, type SyncStrategy } from "../../shared-mem/layout.ts";
import { CONTENDED, FREE, HELD } from "../../sync/mutex.ts";
import { locksAtomics, locksStores } from "../../sync/strategy.ts";
import { hartOwnsMemory } from "../../sync/owner.ts";
import { Cause, Exit, ExitRequest } from "../exits.ts";
import type { AmoKind, Cond, CsrKind, Expr, FpOp, HostOp, Sem, Width } from "../sem.ts";
import { FP_OP_NUMBER } from "../fpu.ts";
import { AtomicOp, FunctionBody, ModuleBuilder, Op, ValType, rmwOpcode } from "./encoder.ts";

/** What an engine knows of the memory layout. */
export interface EngineMemory {
  /** Guest RAM size in bytes. */
  ramSize: number;
  /** Host offset of guest RAM in the shared memory. */
  ramOffset: number;
  /**
   * Distances from a primary host address to each of its mirror copies (k·S for k = 1..N−1);
   * empty for an unmirrored VM, whose code then carries no mirror stores at all. The host only
   * puts pages whose primary frame is the native one into a store TLB set, so that for every
   * fast-path store mirror(a) = a + k·S holds — the kMemvisor paper's static mirror offset.
   */
  mirrorOffsets: readonly number[];
  /**
   * Whether protection is decided page by page (`--mirror ranges:`): then store TLB entries carry
   * a mirror bit and the engine tests it. Under `--mirror vm` every page is mirrored and the
   * stores are emitted unconditionally, with no test at all.
   */
  perPageProtection: boolean;
  /**
   * Multi-core consistency (sync/strategy.ts): which mirrored stores and atomics hold a mirror
   * lock while they write the copies. Irrelevant, and no lock emitted, without mirrors.
   */
  sync: SyncStrategy;
  /** Host offset of the mirror lock table (MemoryLayout.lockOffset). */
  lockOffset: number;
  /**
   * The code map (MemoryLayout.codeMapOffset) and its frames: translations that may be entered
   * from other translations (translator.ts chaining) check their frame's generation there. Absent:
   * no chaining.
   */
  codeMapOffset?: number;
  codeFrames?: number;
  /**
   * No mirror locks at all, whatever `sync` says: the VM has one hart, which owns the memory for
   * each whole run while host writers wait for it (sync/owner.ts), and no other hart to exclude.
   */
  lockFree: boolean;
}

/** What the engines of a VM with this layout must know of it. */
export function engineMemoryOf(layout: MemoryLayout, perPageProtection: boolean): EngineMemory {
  return {
    ramSize: layout.ramSize,
    ramOffset: layout.ramOffset,
    mirrorOffsets: mirrorOffsetsOf(layout),
    perPageProtection,
    sync: layout.sync,
    lockOffset: layout.lockOffset,
    lockFree: hartOwnsMemory(layout),
    codeMapOffset: layout.codeMapOffset,
    codeFrames: layout.copyStride / PAGE_SIZE,
  };
}

/** Indices of the host functions an engine module imports (see engine-imports.ts). */
export interface SlowPathFunctions {
  /** (hart i32, addr i64, widthAndSign i32) -> i64 */
  load: number;
  /** (hart i32, addr i64, width i32, value i64) -> () */
  store: number;
  /** (hart i32, csr i32, kindAndWrite i32, value i64) -> i64 */
  csr: number;
  /** (hart i32, addr i64, kind i32) -> i32 host address, for atomics on a TLB miss */
  translate: number;
  /** (hart i32, pc i64) -> i64 raw instruction bits, on a fetch TLB miss */
  fetch: number;
  /** (lock address i32) -> (), when the inline attempt to take a mirror lock failed: spin, sleep */
  lockContended: number;
  /** (lock address i32) -> (), after releasing a mirror lock that has sleepers */
  wakeSleeper: number;
  /** (hart i32, op i32, rm i32, a i64, b i64, c i64) -> i64: a floating-point operation (vcpu/fpu.ts) */
  fp: number;
}

/** Declare the host functions every engine module imports, in the order above. */
export function importSlowPaths(m: ModuleBuilder): SlowPathFunctions {
  return {
    load: m.importFunction("host", "load", { params: [ValType.I32, ValType.I64, ValType.I32], results: [ValType.I64] }),
    store: m.importFunction("host", "store", { params: [ValType.I32, ValType.I64, ValType.I32, ValType.I64], results: [] }),
    csr: m.importFunction("host", "csr", { params: [ValType.I32, ValType.I32, ValType.I32, ValType.I64], results: [ValType.I64] }),
    translate: m.importFunction("host", "translate", { params: [ValType.I32, ValType.I64, ValType.I32], results: [ValType.I32] }),
    fetch: m.importFunction("host", "fetch", { params: [ValType.I32, ValType.I64], results: [ValType.I64] }),
    lockContended: m.importFunction("host", "lockContended", { params: [ValType.I32], results: [] }),
    wakeSleeper: m.importFunction("host", "wakeSleeper", { params: [ValType.I32], results: [] }),
    fp: m.importFunction("host", "fp", {
      params: [ValType.I32, ValType.I32, ValType.I32, ValType.I64, ValType.I64, ValType.I64],
      results: [ValType.I64],
    }),
  };
}

type FastPath = (this: WasmSem, rm: Expr, a: Expr, b: Expr, exact: () => void) => void;
/** Operations with a wasm fast path (WasmSem.fp; each proven where it is defined). */
const FAST_PATHS: Partial<Record<FpOp, FastPath>> = {
  "add.d": function (rm, a, b, exact) { this.fastSum(rm, a, b, exact, false); },
  "sub.d": function (rm, a, b, exact) { this.fastSum(rm, a, b, exact, true); },
  "mul.d": function (rm, a, b, exact) { this.fastProduct(rm, a, b, exact); },
  "div.d": function (rm, a, b, exact) { this.fastQuotient(rm, a, b, exact); },
  "sqrt.d": function (rm, a, _b, exact) { this.fastRoot(rm, a, exact); },
  "eq.d": function (_rm, a, b, exact) { this.fastCompare(a, b, exact, Op.f64_eq, false); },
  "lt.d": function (_rm, a, b, exact) { this.fastCompare(a, b, exact, Op.f64_lt, false); },
  "le.d": function (_rm, a, b, exact) { this.fastCompare(a, b, exact, Op.f64_le, false); },
  "min.d": function (_rm, a, b, exact) { this.fastCompare(a, b, exact, Op.f64_min, true); },
  "max.d": function (_rm, a, b, exact) { this.fastCompare(a, b, exact, Op.f64_max, true); },
  "sgnj.d": function (_rm, a, b, exact) { this.fastSignInject(a, b, exact, 0, false); },
  "sgnjn.d": function (_rm, a, b, exact) { this.fastSignInject(a, b, exact, 1, false); },
  "sgnjx.d": function (_rm, a, b, exact) { this.fastSignInject(a, b, exact, 2, false); },
  "add.s": function (rm, a, b, exact) { this.fastSingle(rm, a, b, exact, "add"); },
  "sub.s": function (rm, a, b, exact) { this.fastSingle(rm, a, b, exact, "sub"); },
  "mul.s": function (rm, a, b, exact) { this.fastSingle(rm, a, b, exact, "mul"); },
  "div.s": function (rm, a, b, exact) { this.fastSingle(rm, a, b, exact, "div"); },
  "sqrt.s": function (rm, a, b, exact) { this.fastSingle(rm, a, b, exact, "sqrt"); },
  "cvt.d.w": function (_rm, a, _b, exact) { this.fastToDouble(a, exact, "w"); },
  "cvt.d.wu": function (_rm, a, _b, exact) { this.fastToDouble(a, exact, "wu"); },
  "cvt.d.l": function (_rm, a, _b, exact) { this.fastToDouble(a, exact, "l"); },
  "cvt.d.s": function (_rm, a, _b, exact) { this.fastToDouble(a, exact, "s"); },
  "cvt.w.d": function (rm, a, _b, exact) { this.fastToInteger(rm, a, exact, "w"); },
  "cvt.l.d": function (rm, a, _b, exact) { this.fastToInteger(rm, a, exact, "l"); },
  "sgnj.s": function (_rm, a, b, exact) { this.fastSignInject(a, b, exact, 0, true); },
  "sgnjn.s": function (_rm, a, b, exact) { this.fastSignInject(a, b, exact, 1, true); },
  "sgnjx.s": function (_rm, a, b, exact) { this.fastSignInject(a, b, exact, 2, true); },
};

/** Access kinds as passed to the translate import (same numbering as vcpu/tlb.ts AccessKind). */
const LOAD_KIND = 1;
const STORE_KIND = 2;

export const CSR_KIND_CODE: Record<CsrKind, number> = { rw: 1, rs: 2, rc: 3 };
/** Flag in the csr import's second argument: the instruction writes the CSR. */
export const CSR_WRITE_FLAG = 4;
/** Flag in the load import's width argument: sign-extend the result. */
export const LOAD_SIGNED_FLAG = 16;

const HOST_EXIT: Record<HostOp, Exit> = {
  ecall: Exit.Ecall,
  ebreak: Exit.Ebreak,
  mret: Exit.Mret,
  sret: Exit.Sret,
  wfi: Exit.Wfi,
  "sfence.vma": Exit.SfenceVma,
};

const LOAD_OPS: Record<Width, [signed: number, unsigned: number]> = {
  1: [Op.i64_load8_s, Op.i64_load8_u],
  2: [Op.i64_load16_s, Op.i64_load16_u],
  4: [Op.i64_load32_s, Op.i64_load32_u],
  8: [Op.i64_load, Op.i64_load],
};
const STORE_OPS: Record<Width, number> = { 1: Op.i64_store8, 2: Op.i64_store16, 4: Op.i64_store32, 8: Op.i64_store };

export abstract class WasmSem implements Sem {
  private readonly tempPool: number[] = [];
  private tempsInUse = 0;
  /** Scratch i32 locals for host addresses and TLB entry addresses. */
  protected readonly hostAddr: number;
  private readonly tlbEntry: number;
  /** 1 when the page of the current store is protected by the mirroring policy. */
  private readonly mirrorFlag: number;
  /** Mirrored stores since the last syncForHost (added to the hart's MIRRORED_STORES slot there). */
  protected readonly mirroredStores: number;
  /** The hart's TLB generation tag (HartSlot.TLB_TAG), loaded once per engine call. */
  private readonly tlbTag: number;
  /** Address of the mirror lock the current store or atomic holds. */
  private readonly lockAddress: number;
  /**
   * Lock batching (the translator's choice): a mirror lock once taken stays held, in heldLock,
   * until the engine needs a different one, calls the host, leaves, or sees another hart waiting
   * for it — so a run of stores into one stripe line pays for one acquisition, not one each.
   * At most one lock is held at a time (released before taking another), so no deadlock.
   */
  protected batchLocks = false;
  /** The lock held under batching, or 0 (no lock word sits at address 0). */
  protected readonly heldLock: number;
  /** Whether plain mirrored stores, and atomics, hold a mirror lock (see sync/strategy.ts). */
  private readonly storesLock: boolean;
  private readonly atomicsLock: boolean;

  constructor(
    protected readonly f: FunctionBody,
    protected readonly memory: EngineMemory,
    protected readonly slow: SlowPathFunctions,
    /** Local holding the hart's base offset in shared memory. */
    protected readonly hart: number,
    /** Local holding the absolute address of the data-load TLB set (the store set follows it). */
    protected readonly dataTlb: number,
  ) {
    this.hostAddr = f.local(ValType.I32);
    this.tlbEntry = f.local(ValType.I32);
    this.mirrorFlag = f.local(ValType.I32);
    this.mirroredStores = f.local(ValType.I64);
    this.lockAddress = f.local(ValType.I32);
    this.heldLock = f.local(ValType.I32);
    this.tlbTag = f.local(ValType.I64);
    const mirrored = memory.mirrorOffsets.length > 0;
    this.storesLock = mirrored && !memory.lockFree && locksStores(memory.sync);
    this.atomicsLock = mirrored && !memory.lockFree && locksAtomics(memory.sync);
  }

  // --- what subclasses provide ------------------------------------------------------------
  abstract readonly rs1: Expr;
  abstract readonly rs2: Expr;
  abstract readonly imm: Expr;
  abstract readonly pc: Expr;
  abstract readonly nextPc: Expr;
  /** Emit the rs1 field as an i32 (the CSR immediate, or "is the source x0"). */
  protected abstract rs1Field(): void;
  abstract setRd(value: Expr): void;
  abstract readonly frs1: Expr;
  abstract readonly frs2: Expr;
  abstract readonly frs3: Expr;
  /** Store `value` in the f register rd names (setFrd adds the FS update). */
  protected abstract writeFrd(value: Expr): void;
  /** The immediate when the engine knows it at emission time (the translator), else undefined. */
  protected staticImmediate(): number | undefined {
    return undefined;
  }
  abstract jump(target: Expr): void;
  /** Leave the engine with `code`, pc at the current instruction, which does not retire. */
  protected abstract exitAtCurrent(code: Exit): void;
  /** Make pc and the retired count visible to host code before a slow-path call. */
  protected abstract syncForHost(): void;
  /** Finish the current instruction, then leave with Exit.Budget. */
  protected abstract returnAfterThisInstruction(): void;
  /**
   * The same, from the slow path of a plain load (its result in local `loadResult`, to go to rd)
   * or store (`loadResult` undefined): the host has done the access, so an engine may leave from
   * right there instead of flagging the return for after the instruction.
   */
  protected returnAfterMemoryAccess(_loadResult: number | undefined): void {
    this.returnAfterThisInstruction();
  }

  /**
   * Engine prologue: read the TLB generation tag. Host code flushes only between engine calls,
   * so it stays valid for the whole call.
   */
  loadTlbTag(): void {
    this.f.get(this.hart).mem(Op.i64_load, HartSlot.TLB_TAG).set(this.tlbTag);
  }

  /**
   * Emit the host address (i32) of the page the hart's fetch TLB set maps the i64 address in local
   * `address` to, or -1 when the set holds no live entry for it (vcpu/tlb.ts cachedFetchPage's
   * test, inline). The fetch set carries the execute permission checks.
   */
  fetchHostPage(address: number): void {
    const f = this.f;
    f.get(this.hart).get(this.hart).mem(Op.i32_load, HartSlot.FETCH_TLB).op(Op.i32_add);
    f.get(address).i64(12).op(Op.i64_shr_u).op(Op.i32_wrap_i64).i32(TLB_ENTRIES - 1).op(Op.i32_and).i32(4).op(Op.i32_shl);
    f.op(Op.i32_add).tee(this.tlbEntry).mem(Op.i64_load, 0);
    f.get(address).i64(12).op(Op.i64_shr_u).get(this.tlbTag).op(Op.i64_or).op(Op.i64_eq);
    f.if(ValType.I32);
    f.get(address).i64(-4096).op(Op.i64_and).get(this.tlbEntry).mem(Op.i64_load, 8).op(Op.i64_add).op(Op.i32_wrap_i64);
    f.else().i32(-1).end();
  }

  /** Start of a new instruction: temporaries may be reused. */
  resetTemps(): void {
    this.tempsInUse = 0;
    this.f64InUse = 0;
  }

  // --- operands and arithmetic --------------------------------------------------------------
  const(value: bigint | number): Expr {
    return () => this.f.i64(value);
  }

  /** A fresh i64 local for the current instruction. */
  protected temp(): number {
    if (this.tempsInUse === this.tempPool.length) this.tempPool.push(this.f.local(ValType.I64));
    return this.tempPool[this.tempsInUse++]!;
  }

  /**
   * Computes `e` now, at the point of emission, into a temporary. Semantics call tmp() before
   * emitting the code that uses the value, so the value is set on every path that reads it.
   */
  tmp(e: Expr): Expr {
    const local = this.temp();
    e();
    this.f.set(local);
    return () => this.f.get(local);
  }

  private binary(opcode: number, a: Expr, b: Expr): Expr {
    return () => {
      a();
      b();
      this.f.op(opcode);
    };
  }
  add = (a: Expr, b: Expr) => this.binary(Op.i64_add, a, b);
  sub = (a: Expr, b: Expr) => this.binary(Op.i64_sub, a, b);
  and = (a: Expr, b: Expr) => this.binary(Op.i64_and, a, b);
  or = (a: Expr, b: Expr) => this.binary(Op.i64_or, a, b);
  xor = (a: Expr, b: Expr) => this.binary(Op.i64_xor, a, b);
  shl = (a: Expr, b: Expr) => this.binary(Op.i64_shl, a, b);
  shrU = (a: Expr, b: Expr) => this.binary(Op.i64_shr_u, a, b);
  shrS = (a: Expr, b: Expr) => this.binary(Op.i64_shr_s, a, b);
  mul = (a: Expr, b: Expr) => this.binary(Op.i64_mul, a, b);
  divS = (a: Expr, b: Expr) => this.binary(Op.i64_div_s, a, b);
  divU = (a: Expr, b: Expr) => this.binary(Op.i64_div_u, a, b);
  remS = (a: Expr, b: Expr) => this.binary(Op.i64_rem_s, a, b);
  remU = (a: Expr, b: Expr) => this.binary(Op.i64_rem_u, a, b);

  mulhU(a: Expr, b: Expr): Expr {
    // Schoolbook on 32-bit halves: every partial product fits in 64 bits.
    const x = this.tmp(a), y = this.tmp(b);
    const lo = (e: Expr) => this.and(e, this.const(0xffffffff));
    const hi = (e: Expr) => this.shrU(e, this.const(32));
    const xl = this.tmp(lo(x)), xh = this.tmp(hi(x)), yl = this.tmp(lo(y)), yh = this.tmp(hi(y));
    const lh = this.tmp(this.mul(xl, yh));
    const hl = this.tmp(this.mul(xh, yl));
    const mid = this.add(this.add(hi(this.mul(xl, yl)), lo(lh)), lo(hl));
    return this.add(this.add(this.add(this.mul(xh, yh), hi(lh)), hi(hl)), hi(mid));
  }

  sext32(a: Expr): Expr {
    return () => {
      a();
      this.f.op(Op.i64_extend32_s);
    };
  }
  zext32(a: Expr): Expr {
    return this.and(a, this.const(0xffffffff));
  }

  eq = (a: Expr, b: Expr): Cond => this.binary(Op.i64_eq, a, b);
  ne = (a: Expr, b: Expr): Cond => this.binary(Op.i64_ne, a, b);
  ltS = (a: Expr, b: Expr): Cond => this.binary(Op.i64_lt_s, a, b);
  ltU = (a: Expr, b: Expr): Cond => this.binary(Op.i64_lt_u, a, b);
  geS = (a: Expr, b: Expr): Cond => this.binary(Op.i64_ge_s, a, b);
  geU = (a: Expr, b: Expr): Cond => this.binary(Op.i64_ge_u, a, b);

  bool(c: Cond): Expr {
    return () => {
      c();
      this.f.op(Op.i64_extend_i32_u);
    };
  }

  ifElse(c: Cond, then: Expr, otherwise: Expr): Expr {
    return () => {
      c();
      this.f.if(ValType.I64);
      then();
      this.f.else();
      otherwise();
      this.f.end();
    };
  }

  branch(c: Cond, target: Expr): void {
    c();
    this.f.if();
    this.jump(target);
    this.f.end();
  }

  // --- traps -------------------------------------------------------------------------------
  protected trap(cause: number, tval: Expr): void {
    const f = this.f;
    f.get(this.hart).i64(cause).mem(Op.i64_store, HartSlot.TRAP_CAUSE);
    f.get(this.hart);
    tval();
    f.mem(Op.i64_store, HartSlot.TRAP_TVAL);
    this.exitAtCurrent(Exit.Trap);
  }

  illegal(): void {
    // The engine's subclass knows the raw bits; it overrides this where it can.
    this.trap(Cause.IllegalInstruction, this.const(0));
  }

  host(op: HostOp): void {
    this.exitAtCurrent(HOST_EXIT[op]);
  }

  // --- F and D -----------------------------------------------------------------------------
  requireFp(): void {
    this.f.get(this.hart).mem(Op.i32_load, HartSlot.FS).op(Op.i32_eqz).ifHinted(false);
    this.illegal();
    this.f.end();
  }

  setFrd(value: Expr): void {
    this.writeFrd(value);
    this.f.get(this.hart).i32(3).mem(Op.i32_store, HartSlot.FS);
  }

  roundingMode(): Expr {
    const f = this.f;
    const known = this.staticImmediate();
    const field = known === undefined ? undefined : known & 7;
    if (field !== undefined && field < 5) return this.const(field);
    if (field === 5 || field === 6) {
      this.illegal();
      return this.const(0);
    }
    const rm = this.temp();
    if (field === undefined) {
      this.imm();
      f.i64(7).op(Op.i64_and).set(rm);
      f.get(rm).i64(7).op(Op.i64_eq).if();
    }
    f.get(this.hart).mem(Op.i32_load, HartSlot.FCSR).i32(5).op(Op.i32_shr_u).i32(7).op(Op.i32_and).op(Op.i64_extend_i32_u).set(rm);
    if (field === undefined) f.end();
    f.get(rm).i64(5).op(Op.i64_ge_u).ifHinted(false);
    this.illegal();
    f.end();
    return () => f.get(rm);
  }

  fp(op: FpOp, rm: Expr, a: Expr, b: Expr = this.const(0), c: Expr = this.const(0)): Expr {
    const number = FP_OP_NUMBER.get(op);
    if (number === undefined) throw new Error(`no floating-point operation ${op}`);
    const exact = () => {
      const f = this.f;
      f.get(this.hart).i32(number);
      rm();
      f.op(Op.i32_wrap_i64);
      a();
      b();
      c();
      f.call(this.slow.fp);
    };
    const fast = FAST_PATHS[op];
    return fast ? () => fast.call(this, rm, a, b, exact) : exact;
  }

  // --- F and D fast paths --------------------------------------------------------------------
  // WebAssembly's f64 arithmetic rounds to nearest, ties to even, exactly as IEEE 754 requires
  // (no flush to zero), and raises no flags. A fast path uses it only where the outcome is proven
  // (docs/decisions.md): RNE; operands and result in ranges where no overflow, underflow or NaN
  // can occur; the inexact flag from an error-free transformation (TwoSum, Dekker's product),
  // which is exact there. Anything else calls the exact reference (`exact`).
  private readonly f64Pool: number[] = [];
  private f64InUse = 0;

  /** A fresh f64 local for the current instruction, set from what `emit` leaves. */
  private f64Local(emit: () => void): number {
    if (this.f64InUse === this.f64Pool.length) this.f64Pool.push(this.f.local(ValType.F64));
    const local = this.f64Pool[this.f64InUse++]!;
    emit();
    this.f.set(local);
    return local;
  }
  private asF64(e: Expr, negate = false): number {
    return this.f64Local(() => {
      e();
      this.f.op(Op.f64_reinterpret_i64);
      if (negate) this.f.op(Op.f64_neg);
    });
  }
  /** i32: lo ≤ |v| < hi (false for NaN). */
  private magnitudeIn(v: number, lo: number, hi: number): void {
    const f = this.f;
    f.get(v).op(Op.f64_abs).f64(lo).op(Op.f64_ge);
    f.get(v).op(Op.f64_abs).f64(hi).op(Op.f64_lt).op(Op.i32_and);
  }
  /** i32: both operands' magnitudes in [lo, hi). */
  private bothIn(x: number, y: number, lo: number, hi: number): void {
    this.magnitudeIn(x, lo, hi);
    this.magnitudeIn(y, lo, hi);
    this.f.op(Op.i32_and);
  }
  /** Dekker's TwoProduct: the exact x·y − fl(x·y), given p = fl(x·y), for |x|, |y| < 2^995 and |p| ≥ 2^-968. */
  private productError(x: number, y: number, p: number): number {
    const f = this.f;
    const split = (v: number): [number, number] => {
      const c = this.f64Local(() => f.get(v).f64(134217729).op(Op.f64_mul)); // 2^27 + 1 (Veltkamp)
      const hi = this.f64Local(() => f.get(c).get(c).get(v).op(Op.f64_sub).op(Op.f64_sub));
      const lo = this.f64Local(() => f.get(v).get(hi).op(Op.f64_sub));
      return [hi, lo];
    };
    const [xh, xl] = split(x);
    const [yh, yl] = split(y);
    return this.f64Local(() => {
      f.get(xh).get(yh).op(Op.f64_mul).get(p).op(Op.f64_sub);
      f.get(xh).get(yl).op(Op.f64_mul).op(Op.f64_add);
      f.get(xl).get(yh).op(Op.f64_mul).op(Op.f64_add);
      f.get(xl).get(yl).op(Op.f64_mul).op(Op.f64_add);
    });
  }
  /** fflags.NX |= 1 and FS Dirty. */
  private raiseInexact(): void {
    const f = this.f;
    f.get(this.hart).get(this.hart).mem(Op.i32_load, HartSlot.FCSR).i32(1).op(Op.i32_or).mem(Op.i32_store, HartSlot.FCSR);
    f.get(this.hart).i32(3).mem(Op.i32_store, HartSlot.FS);
  }
  /**
   * Emit: `condition` (an i32 on the stack) ? the fast result (the f64 in `result`, NX when
   * `inexact` leaves 1) : the exact path.
   */
  private choose(rm: Expr, condition: () => void, result: number | (() => void), inexact: () => void, exact: () => void): void {
    const f = this.f;
    rm();
    f.op(Op.i64_eqz);
    condition();
    f.op(Op.i32_and).if(ValType.I64);
    inexact();
    f.if();
    this.raiseInexact();
    f.end();
    if (typeof result === "number") f.get(result).op(Op.i64_reinterpret_f64);
    else result();
    f.else();
    exact();
    f.end();
  }

  /**
   * A binary fast path: r = x `opcode` y (y negated first for subtraction); `error` computes the
   * locals the inexact test needs, `inRange` the ranges where the proof holds, `inexact` the flag.
   */
  private fastBinary(rm: Expr, a: Expr, b: Expr, exact: () => void, opcode: number, negate: boolean,
    rule: { error(x: number, y: number, r: number): () => void; inRange(x: number, y: number, r: number): void }): void {
    const x = this.asF64(a), y = this.asF64(b, negate);
    const r = this.f64Local(() => this.f.get(x).get(y).op(opcode));
    const inexact = rule.error(x, y, r);
    this.choose(rm, () => rule.inRange(x, y, r), r, inexact, exact);
  }

  /** add.d, sub.d: TwoSum (Knuth) gives the exact rounding error; |x|, |y|, |s| < 2^1023 keep it from overflowing; a sum below 2^-1022 is exact (no underflow). */
  fastSum(rm: Expr, a: Expr, b: Expr, exact: () => void, subtract: boolean): void {
    const f = this.f;
    this.fastBinary(rm, a, b, exact, Op.f64_add, subtract, {
      error: (x, y, s) => {
        const bb = this.f64Local(() => f.get(s).get(x).op(Op.f64_sub));
        const err = this.f64Local(() => {
          f.get(x).get(s).get(bb).op(Op.f64_sub).op(Op.f64_sub);
          f.get(y).get(bb).op(Op.f64_sub).op(Op.f64_add);
        });
        return () => f.get(err).f64(0).op(Op.f64_ne);
      },
      inRange: (x, y, s) => {
        this.bothIn(x, y, 0, 2 ** 1023);
        this.magnitudeIn(s, 0, 2 ** 1023);
        f.op(Op.i32_and);
      },
    });
  }

  /** mul.d: Dekker's product error; |p| ≥ 2^-968 (no underflow, error representable) or an exact zero. */
  fastProduct(rm: Expr, a: Expr, b: Expr, exact: () => void): void {
    const f = this.f;
    this.fastBinary(rm, a, b, exact, Op.f64_mul, false, {
      error: (x, y, p) => {
        const err = this.productError(x, y, p);
        return () => f.get(err).f64(0).op(Op.f64_ne);
      },
      inRange: (x, y, p) => {
        this.bothIn(x, y, 0, 2 ** 995);
        this.magnitudeIn(p, 2 ** -968, 2 ** 1023);
        f.get(x).f64(0).op(Op.f64_eq).op(Op.i32_or);
        f.get(y).f64(0).op(Op.f64_eq).op(Op.i32_or);
        f.op(Op.i32_and);
      },
    });
  }

  /**
   * div.d: q = fl(x / y) is exact iff x = q·y; with (ph, pl) Dekker's q·y, x − ph is exact
   * (Sterbenz: ph is within a factor 2 of x), so inexact iff x − ph ≠ pl. Ranges keep Dekker exact
   * and q normal (no underflow), finite (no overflow); y ≠ 0 (no divide-by-zero).
   */
  fastQuotient(rm: Expr, a: Expr, b: Expr, exact: () => void): void {
    const f = this.f;
    this.fastBinary(rm, a, b, exact, Op.f64_div, false, {
      error: (x, y, q) => {
        const ph = this.f64Local(() => f.get(q).get(y).op(Op.f64_mul));
        const pl = this.productError(q, y, ph);
        return () => f.get(x).get(ph).op(Op.f64_sub).get(pl).op(Op.f64_ne);
      },
      inRange: (x, y, q) => {
        this.bothIn(x, y, 2 ** -968, 2 ** 995);
        this.magnitudeIn(q, 2 ** -1021, 2 ** 995);
        f.op(Op.i32_and);
      },
    });
  }

  /** sqrt.d: as division, r = fl(√x) is exact iff r·r = x: inexact iff x − ph ≠ pl. */
  fastRoot(rm: Expr, a: Expr, exact: () => void): void {
    const f = this.f;
    const x = this.asF64(a);
    const r = this.f64Local(() => f.get(x).op(Op.f64_sqrt));
    const ph = this.f64Local(() => f.get(r).get(r).op(Op.f64_mul));
    const pl = this.productError(r, r, ph);
    this.choose(rm, () => {
      this.magnitudeIn(x, 2 ** -968, 2 ** 995);
      f.get(x).f64(0).op(Op.f64_ge).op(Op.i32_and);
    }, r, () => f.get(x).get(ph).op(Op.f64_sub).get(pl).op(Op.f64_ne), exact);
  }

  /** feq/flt/fle.d and fmin/fmax.d on two non-NaN operands: exact, no flag (wasm's min/max order −0 < +0). */
  fastCompare(a: Expr, b: Expr, exact: () => void, opcode: number, bits: boolean): void {
    const f = this.f;
    const x = this.asF64(a), y = this.asF64(b);
    f.get(x).get(x).op(Op.f64_eq).get(y).get(y).op(Op.f64_eq).op(Op.i32_and).if(ValType.I64);
    f.get(x).get(y).op(opcode);
    f.op(bits ? Op.i64_reinterpret_f64 : Op.i64_extend_i32_u);
    f.else();
    exact();
    f.end();
  }

  /**
   * add/sub/mul/div/sqrt.s through binary64: d = x op y in f64, r = d rounded to single (wasm's
   * demote: RNE). A sum or product of singles is exact in f64 when TwoSum says so (a product always
   * is: 48 bits); a quotient or root rounded twice (to 53, then 24 bits) is correctly rounded, as
   * 53 ≥ 2·24 + 2 (Figueroa). NX: r ≠ d for the exact ones; r·y ≠ x, r·r ≠ x (exact in f64) for
   * division and root. 2^-126 ≤ |d| excludes tininess (the exact value is then at least
   * 2^-126·(1 − 2^-53), which rounds to no less than 2^-126 at 24 bits) and zero, NaN; |r| < 2^128
   * overflow and ∞. Operands must be NaN-boxed.
   */
  fastSingle(rm: Expr, a: Expr, b: Expr, exact: () => void, kind: "add" | "sub" | "mul" | "div" | "sqrt"): void {
    const f = this.f;
    const ai = this.tmp(a), bi = this.tmp(b);
    const toF64 = (v: Expr) => this.f64Local(() => {
      v();
      f.op(Op.i32_wrap_i64).op(Op.f32_reinterpret_i32).op(Op.f64_promote_f32);
    });
    const x = toF64(ai), y = toF64(bi);
    const opcode = { add: Op.f64_add, sub: Op.f64_sub, mul: Op.f64_mul, div: Op.f64_div, sqrt: Op.f64_sqrt }[kind];
    const d = this.f64Local(() => (kind === "sqrt" ? f.get(x) : f.get(x).get(y)).op(opcode));
    const r = this.f64Local(() => f.get(d).op(Op.f32_demote_f64).op(Op.f64_promote_f32));
    let exactInF64 = () => void f.i32(1);
    if (kind === "add" || kind === "sub") {
      // TwoSum of x and ±y: d is exact iff the error is zero.
      const yy = kind === "sub" ? this.f64Local(() => f.get(y).op(Op.f64_neg)) : y;
      const bb = this.f64Local(() => f.get(d).get(x).op(Op.f64_sub));
      exactInF64 = () => {
        f.get(x).get(d).get(bb).op(Op.f64_sub).op(Op.f64_sub);
        f.get(yy).get(bb).op(Op.f64_sub).op(Op.f64_add).f64(0).op(Op.f64_eq);
      };
    }
    const boxed = (v: Expr) => this.eq(this.shrU(v, this.const(32)), this.const(0xffffffff));
    const inexact = kind === "div" ? () => f.get(r).get(y).op(Op.f64_mul).get(x).op(Op.f64_ne)
      : kind === "sqrt" ? () => f.get(r).get(r).op(Op.f64_mul).get(x).op(Op.f64_ne)
      : () => f.get(d).get(r).op(Op.f64_ne);
    this.choose(rm, () => {
      boxed(ai)();
      if (kind !== "sqrt") {
        boxed(bi)();
        f.op(Op.i32_and);
      }
      exactInF64();
      f.op(Op.i32_and);
      this.magnitudeIn(d, 2 ** -126, Infinity);
      f.op(Op.i32_and);
      this.magnitudeIn(r, 0, 2 ** 128);
      f.op(Op.i32_and);
    }, () => {
      f.get(d).op(Op.f32_demote_f64).op(Op.i32_reinterpret_f32).op(Op.i64_extend_i32_u).i64(BigInt.asIntN(64, 0xffffffff00000000n)).op(Op.i64_or);
    }, inexact, exact);
  }

  /**
   * Conversions to double that are exact: from a 32-bit integer (always), from a 64-bit one of
   * magnitude ≤ 2^53, from a NaN-boxed non-NaN single (promotion): no rounding, so no flag under
   * any mode. Else (or for a 64-bit integer beyond 2^53, a NaN) the exact path.
   */
  fastToDouble(a: Expr, exact: () => void, from: "w" | "wu" | "l" | "s"): void {
    const f = this.f;
    const v = this.tmp(a);
    if (from === "w" || from === "wu") {
      v();
      f.op(Op.i32_wrap_i64).op(from === "w" ? Op.f64_convert_i32_s : Op.f64_convert_i32_u).op(Op.i64_reinterpret_f64);
      return;
    }
    if (from === "l") {
      // |v| ≤ 2^53: v + 2^53 ≤ 2^54 (unsigned, wrapping for negative v).
      this.add(v, this.const(2n ** 53n))();
      f.i64(2n ** 54n).op(Op.i64_le_u);
    } else {
      const x = this.f64Local(() => {
        v();
        f.op(Op.i32_wrap_i64).op(Op.f32_reinterpret_i32).op(Op.f64_promote_f32);
      });
      this.eq(this.shrU(v, this.const(32)), this.const(0xffffffff))();
      f.get(x).get(x).op(Op.f64_eq).op(Op.i32_and);
    }
    f.if(ValType.I64);
    v();
    if (from === "l") f.op(Op.f64_convert_i64_s);
    else f.op(Op.i32_wrap_i64).op(Op.f32_reinterpret_i32).op(Op.f64_promote_f32);
    f.op(Op.i64_reinterpret_f64);
    f.else();
    exact();
    f.end();
  }

  /**
   * fcvt.w.d / fcvt.l.d under RTZ or RNE: f64.trunc / f64.nearest (ties to even) round to an
   * integer exactly as the mode says; with |x| < 2^31 − 1 (2^62) the result is in range, so the
   * truncating conversion is exact and never traps; NX iff the rounded value differs from x. NaN,
   * other modes and larger magnitudes take the exact path.
   */
  fastToInteger(rm: Expr, a: Expr, exact: () => void, to: "w" | "l"): void {
    const f = this.f;
    const x = this.asF64(a);
    const limit = to === "w" ? 2 ** 31 - 1 : 2 ** 62;
    const rounded = this.f64Local(() => {
      rm();
      f.op(Op.i64_eqz).if(ValType.F64);
      f.get(x).op(Op.f64_nearest);
      f.else();
      f.get(x).op(Op.f64_trunc);
      f.end();
    });
    // (choose() wants RNE; RTZ is as good here: test rm ≤ 1 by hand.)
    rm();
    f.i64(2).op(Op.i64_lt_u);
    this.magnitudeIn(x, 0, limit);
    f.op(Op.i32_and).if(ValType.I64);
    f.get(rounded).get(x).op(Op.f64_ne).if();
    this.raiseInexact();
    f.end();
    f.get(rounded);
    if (to === "w") f.op(Op.i32_trunc_f64_s).op(Op.i64_extend_i32_s);
    else f.op(Op.i64_trunc_f64_s);
    f.else();
    exact();
    f.end();
  }

  /** fsgnj[n|x]: bits only, never a flag; singles only when both are NaN-boxed (else the exact path's canonical NaN). */
  fastSignInject(a: Expr, b: Expr, exact: () => void, kind: 0 | 1 | 2, single: boolean): void {
    const f = this.f;
    const sign = single ? 0x80000000n : 1n << 63n;
    const x = this.tmp(a), y = this.tmp(b);
    const injected = () => {
      const fromB = kind === 1 ? this.xor(y, this.const(-1n)) : y;
      const signBit = this.and(fromB, this.const(BigInt.asIntN(64, sign)));
      (kind === 2 ? this.xor(x, signBit) : this.or(this.and(x, this.const(BigInt.asIntN(64, ~sign))), signBit))();
    };
    if (!single) return injected();
    const boxed = (v: Expr) => this.eq(this.shrU(v, this.const(32)), this.const(0xffffffff));
    boxed(x)();
    boxed(y)();
    f.op(Op.i32_and).if(ValType.I64);
    injected();
    f.else();
    exact();
    f.end();
  }

  fence(): void {
    this.f.atomic(AtomicOp.fence, 0);
  }

  fenceI(): void {
    // Decode caches are keyed by the instruction bits themselves, so modified code can never
    // run stale: nothing to flush here.
  }

  /**
   * After a slow-path call: abandon the instruction on a trap, or finish it and return (`finish`:
   * how; by default returnAfterThisInstruction).
   */
  private checkExitRequest(finish: () => void = () => this.returnAfterThisInstruction()): void {
    const f = this.f;
    f.get(this.hart).mem(Op.i32_load, HartSlot.EXIT_REQUEST).ifHinted(false);
    f.get(this.hart).mem(Op.i32_load, HartSlot.EXIT_REQUEST).i32(ExitRequest.Trap).op(Op.i32_eq).if();
    this.exitAtCurrent(Exit.Trap);
    f.end();
    finish();
    f.end();
  }

  // --- memory ------------------------------------------------------------------------------
  /**
   * Emit the software-TLB fast path (see vcpu/tlb.ts): leaves a Cond that is true when the page
   * of `a` is in the TLB set at `setBase + extra` and the access does not cross the page (or the
   * smaller power-of-two `boundary`); tlbEntry then addresses the entry.
   */
  protected tlbHit(a: Expr, width: number, setBase: number, extra: number, boundary = 4096): void {
    const f = this.f;
    a();
    f.i64(12).op(Op.i64_shr_u).op(Op.i32_wrap_i64).i32(TLB_ENTRIES - 1).op(Op.i32_and).i32(4).op(Op.i32_shl);
    f.get(setBase).op(Op.i32_add).tee(this.tlbEntry);
    f.mem(Op.i64_load, extra);
    // The tag is compared with the page of the access's last byte: an access that crosses into
    // the next page cannot match (that page's entry has the next index), so one compare also
    // keeps page-crossing accesses off the fast path.
    a();
    if (width > 1) f.i64(width - 1).op(Op.i64_add);
    f.i64(12).op(Op.i64_shr_u).get(this.tlbTag).op(Op.i64_or).op(Op.i64_eq);
    if (width > 1 && boundary < 4096) {
      a();
      f.op(Op.i32_wrap_i64).i32(boundary - 1).op(Op.i32_and).i32(boundary - width).op(Op.i32_le_u).op(Op.i32_and);
    }
  }

  /**
   * hostAddr := a + addend of the entry tlbHit found. In a mirrored VM, bit 0 of a store-set
   * addend says whether the page is protected (its stores go to every copy): it lands in
   * mirrorFlag and is masked off the address.
   */
  protected hostAddressFromTlb(a: Expr, extra: number): void {
    const f = this.f;
    const flagged = extra === TLB_SET_SIZE && this.memory.mirrorOffsets.length > 0 && this.memory.perPageProtection;
    if (!flagged) {
      a();
      f.get(this.tlbEntry).mem(Op.i64_load, extra + 8).op(Op.i64_add).op(Op.i32_wrap_i64).set(this.hostAddr);
      return;
    }
    // Split the flag off the addend before adding: the address itself may be odd.
    const addend = this.temp();
    f.get(this.tlbEntry).mem(Op.i64_load, extra + 8).tee(addend).op(Op.i32_wrap_i64).i32(1).op(Op.i32_and).set(this.mirrorFlag);
    a();
    f.get(addend).i64(-2).op(Op.i64_and).op(Op.i64_add).op(Op.i32_wrap_i64).set(this.hostAddr);
  }

  /** Emit the mirror stores (`emit(offset)` per copy) for a protected page only, and count them. */
  private mirrored(emit: (offset: number) => void): void {
    if (this.memory.mirrorOffsets.length === 0) return;
    if (this.memory.perPageProtection) this.f.get(this.mirrorFlag).if();
    for (const offset of this.memory.mirrorOffsets) emit(offset);
    this.f.get(this.mirroredStores).i64(1).op(Op.i64_add).set(this.mirroredStores);
    if (this.memory.perPageProtection) this.f.end();
  }

  /**
   * Emit `body` (which writes every copy at hostAddr) holding the mirror lock of hostAddr's stripe,
   * when `locking` and the page is protected. The inline fast path is the mutex protocol of
   * sync/mutex.ts: cmpxchg 0→1 to take, xchg →0 to release; only contention calls the host.
   * `body` must not leave the engine: a lock is never held across an exit.
   */
  private holdingMirrorLock(locking: boolean, body: () => void): void {
    if (!locking) return body();
    const f = this.f;
    const whenProtected = (emit: () => void) => {
      if (this.memory.perPageProtection) f.get(this.mirrorFlag).if();
      emit();
      if (this.memory.perPageProtection) f.end();
    };
    const acquire = () => {
      f.get(this.lockAddress).i32(FREE).i32(HELD).atomic(AtomicOp.i32_cmpxchg, 4).ifHinted(false);
      f.get(this.lockAddress).call(this.slow.lockContended);
      f.end();
    };
    whenProtected(() => {
      if (this.memory.sync === "global") f.i32(this.memory.lockOffset);
      else {
        f.get(this.hostAddr).i32(STRIPE_LINE_SHIFT).op(Op.i32_shr_u).i32(STRIPE_COUNT - 1).op(Op.i32_and);
        f.i32(LOCK_STRIDE).op(Op.i32_mul).i32(this.memory.lockOffset).op(Op.i32_add);
      }
      f.set(this.lockAddress);
      if (!this.batchLocks) return acquire();
      f.get(this.lockAddress).get(this.heldLock).op(Op.i32_ne).if();
      this.releaseHeldLock();
      acquire();
      f.get(this.lockAddress).set(this.heldLock);
      f.end();
    });
    body();
    if (this.batchLocks) return;
    whenProtected(() => this.releaseLock(() => f.get(this.lockAddress)));
  }

  /** Release the mirror lock at `address`, waking a sleeper if one waits. */
  private releaseLock(address: () => void): void {
    const f = this.f;
    address();
    f.i32(FREE).atomic(AtomicOp.i32_xchg, 4).i32(CONTENDED).op(Op.i32_eq).ifHinted(false);
    address();
    f.call(this.slow.wakeSleeper);
    f.end();
  }

  /** Whether a lock can be held across instructions (batching on, and some access locks). */
  private get locksCanBeHeld(): boolean {
    return this.batchLocks && (this.storesLock || this.atomicsLock);
  }

  /** Under lock batching: release the held lock, if any (before host calls, exits, other locks). */
  protected releaseHeldLock(): void {
    if (!this.locksCanBeHeld) return;
    const f = this.f;
    f.get(this.heldLock).if();
    this.releaseLock(() => f.get(this.heldLock));
    f.i32(0).set(this.heldLock);
    f.end();
  }

  /** Under lock batching: release the held lock if another hart waits for it. */
  protected releaseHeldLockIfWanted(): void {
    if (!this.locksCanBeHeld) return;
    const f = this.f;
    f.get(this.heldLock).if();
    f.get(this.heldLock).atomic(AtomicOp.i32_load, 4).i32(CONTENDED).op(Op.i32_eq).if();
    this.releaseLock(() => f.get(this.heldLock));
    f.i32(0).set(this.heldLock);
    f.end();
    f.end();
  }

  /** Emit: on a TLB hit set hostAddr and run `fast`, else run `slowPath`; both leave `resultType`. */
  private tlbAccess(addr: Expr, width: Width, extra: number, resultType: number, fast: () => void, slowPath: () => void): void {
    const a = this.tmp(addr);
    // Under `striped` a store's copies are written under one stripe's lock, so the fast path takes
    // only stores within one stripe line; the rare line-crossing one goes to the host, which
    // takes both locks in order.
    const boundary = extra === TLB_SET_SIZE && this.storesLock && this.memory.sync === "striped" ? 1 << STRIPE_LINE_SHIFT : 4096;
    this.tlbHit(a, width, this.dataTlb, extra, boundary);
    this.f.ifHinted(true, resultType);
    this.hostAddressFromTlb(a, extra);
    fast();
    this.f.else();
    slowPath();
    this.f.end();
  }

  load(width: Width, signed: boolean, addr: Expr): Expr {
    return () => {
      const a = this.tmp(addr);
      this.tlbAccess(a, width, 0, ValType.I64, () => {
        this.f.get(this.hostAddr).mem(LOAD_OPS[width][signed ? 0 : 1]);
      }, () => {
        this.syncForHost();
        this.f.get(this.hart);
        a();
        const result = this.temp();
        this.f.i32(width | (signed ? LOAD_SIGNED_FLAG : 0)).call(this.slow.load).tee(result);
        this.checkExitRequest(() => this.returnAfterMemoryAccess(result));
      });
    };
  }

  store(width: Width, addr: Expr, value: Expr): void {
    const a = this.tmp(addr);
    const v = this.tmp(value);
    this.tlbAccess(a, width, TLB_SET_SIZE, 0x40, () => this.holdingMirrorLock(this.storesLock, () => {
      this.f.get(this.hostAddr);
      v();
      this.f.mem(STORE_OPS[width]);
      // The mirror instrumentation: the same store again at each copy's static offset.
      this.mirrored((offset) => {
        this.f.get(this.hostAddr);
        v();
        this.f.mem(STORE_OPS[width], offset);
      });
    }), () => {
      this.syncForHost();
      this.f.get(this.hart);
      a();
      this.f.i32(width);
      v();
      this.f.call(this.slow.store);
      this.checkExitRequest(() => this.returnAfterMemoryAccess(undefined));
    });
  }

  /**
   * Atomic accesses must be naturally aligned (else `misalignedCause`) and in RAM (the host raises
   * the access or page fault on a TLB miss it cannot fill). Leaves the host address in hostAddr.
   */
  private atomicAddress(addr: Expr, width: 4 | 8, misalignedCause: number, store: boolean): Expr {
    const a = this.tmp(addr);
    const f = this.f;
    a();
    f.i64(width - 1).op(Op.i64_and).op(Op.i64_eqz).op(Op.i32_eqz).if();
    this.trap(misalignedCause, a);
    f.end();
    const extra = store ? TLB_SET_SIZE : 0;
    this.tlbHit(a, width, this.dataTlb, extra);
    f.if();
    this.hostAddressFromTlb(a, extra);
    f.else();
    this.syncForHost();
    f.get(this.hart);
    a();
    f.i32(store ? STORE_KIND : LOAD_KIND).call(this.slow.translate).set(this.hostAddr);
    this.checkExitRequest();
    if (store && this.memory.mirrorOffsets.length > 0 && this.memory.perPageProtection) {
      // The host sets bit 0 of a (4- or 8-aligned) address for a protected page.
      f.get(this.hostAddr).i32(1).op(Op.i32_and).set(this.mirrorFlag);
      f.get(this.hostAddr).i32(-2).op(Op.i32_and).set(this.hostAddr);
    }
    f.end();
    return a;
  }

  amo(kind: AmoKind, width: 4 | 8, addr: Expr, value: Expr): Expr {
    return () => {
      const f = this.f;
      const v = this.tmp(value);
      this.atomicAddress(addr, width, Cause.StoreMisaligned, true);
      const wide = width === 8;
      const off = 0;
      const direct: Partial<Record<AmoKind, Parameters<typeof rmwOpcode>[0]>> = {
        add: "add", swap: "xchg", xor: "xor", and: "and", or: "or",
      };
      // Under every strategy but `none` the whole read-modify-write of every copy holds the
      // stripe's lock (see locksAtomics for why the commutative ones too).
      this.holdingMirrorLock(this.atomicsLock, () => {
        const rmw = direct[kind];
        if (rmw) {
          f.get(this.hostAddr);
          v();
          f.atomic(rmwOpcode(rmw, wide), width, off);
          // Each copy takes the same read-modify-write. Without a lock (`none`) commutative ones
          // (add, and, or, xor) still converge among themselves; a racing swap does not.
          this.mirrored((offset) => {
            f.get(this.hostAddr);
            v();
            f.atomic(rmwOpcode(rmw, wide), width, offset).op(Op.drop);
          });
        } else {
          // min/max have no wasm instruction: compare-and-swap until no other hart intervened.
          const old = this.temp();
          const seen = this.temp();
          const operand = (e: Expr) => (wide ? e : kind.endsWith("u") ? this.zext32(e) : this.sext32(e));
          const keepOld: Cond = {
            min: this.ltS(operand(() => f.get(old)), operand(v)),
            max: this.geS(operand(() => f.get(old)), operand(v)),
            minu: this.ltU(operand(() => f.get(old)), operand(v)),
            maxu: this.geU(operand(() => f.get(old)), operand(v)),
          }[kind as "min" | "max" | "minu" | "maxu"];
          f.get(this.hostAddr).atomic(wide ? AtomicOp.i64_load : AtomicOp.i64_load32_u, width, off).set(old);
          f.loop();
          f.get(this.hostAddr).get(old);
          f.get(old);
          v();
          keepOld();
          f.op(Op.select);
          f.atomic(rmwOpcode("cmpxchg", wide), width, off);
          // cmpxchg returns what memory held; equal to `old` means our value went in.
          f.tee(seen).get(old).op(Op.i64_ne).if();
          f.get(seen).set(old).br(1);
          f.end();
          f.end();
          // Our value is in the primary: copy it to the mirrors.
          this.mirrored((offset) => {
            f.get(this.hostAddr);
            f.get(old);
            v();
            keepOld();
            f.op(Op.select);
            f.atomic(wide ? AtomicOp.i64_store : AtomicOp.i64_store32, width, offset);
          });
          f.get(old);
        }
      });
      if (!wide) f.op(Op.i64_extend32_s);
    };
  }

  loadReserved(width: 4 | 8, addr: Expr): Expr {
    return () => {
      const f = this.f;
      const a = this.atomicAddress(addr, width, Cause.LoadMisaligned, false);
      const value = this.temp();
      f.get(this.hart);
      a();
      f.mem(Op.i64_store, HartSlot.RES_ADDR);
      f.get(this.hostAddr).atomic(width === 8 ? AtomicOp.i64_load : AtomicOp.i64_load32_u, width);
      f.set(value);
      f.get(this.hart).get(value).mem(Op.i64_store, HartSlot.RES_VALUE);
      f.get(value);
      if (width === 4) f.op(Op.i64_extend32_s);
    };
  }

  storeConditional(width: 4 | 8, addr: Expr, value: Expr): Expr {
    return () => {
      const f = this.f;
      const v = this.tmp(value);
      const a = this.atomicAddress(addr, width, Cause.StoreMisaligned, true);
      const expected = this.temp();
      // Success iff we hold a reservation on this address and memory still holds what LR read
      // (QEMU's MTTCG rule); the reservation is consumed either way.
      f.get(this.hart).mem(Op.i64_load, HartSlot.RES_ADDR);
      a();
      f.op(Op.i64_eq).if(ValType.I64);
      this.holdingMirrorLock(this.atomicsLock, () => {
        f.get(this.hart).mem(Op.i64_load, HartSlot.RES_VALUE).set(expected);
        f.get(this.hostAddr).get(expected);
        v();
        f.atomic(rmwOpcode("cmpxchg", width === 8), width);
        f.get(expected).op(Op.i64_ne).op(Op.i64_extend_i32_u);
        if (this.memory.mirrorOffsets.length > 0) {
          // Stored (result 0): the mirrors take the value too.
          const result = this.temp();
          f.tee(result).op(Op.i64_eqz).if();
          this.mirrored((offset) => {
            f.get(this.hostAddr);
            v();
            f.atomic(width === 8 ? AtomicOp.i64_store : AtomicOp.i64_store32, width, offset);
          });
          f.end();
          f.get(result);
        }
      });
      f.else().i64(1).end();
      f.get(this.hart).i64(-1).mem(Op.i64_store, HartSlot.RES_ADDR);
    };
  }

  csr(kind: CsrKind, immediate: boolean): Expr {
    return () => {
      // fflags, frm and fcsr (CSRs 1..3) are read and written in the engine while FS is not Off
      // (FP code touches them around every operation); everything else, and FS Off (illegal), is
      // the host's.
      const known = this.staticImmediate();
      if (known !== undefined && (known < 1 || known > 3)) return this.csrSlowPath(kind, immediate);
      const f = this.f;
      f.get(this.hart).mem(Op.i32_load, HartSlot.FS).i32(0).op(Op.i32_ne);
      if (known === undefined) {
        this.imm();
        f.op(Op.i32_wrap_i64).i32(1).op(Op.i32_sub).i32(3).op(Op.i32_lt_u).op(Op.i32_and);
      }
      f.if(ValType.I64);
      this.fpCsr(kind, immediate, known);
      f.else();
      this.csrSlowPath(kind, immediate);
      f.end();
    };
  }

  /** csrr[wsc][i] on fflags (1: fcsr bits 4:0), frm (2: bits 7:5) or fcsr (3: bits 7:0). */
  private fpCsr(kind: CsrKind, immediate: boolean, known: number | undefined): void {
    const number = known === undefined ? this.tmp(this.imm) : this.const(known);
    const pick = (values: [number, number, number]) =>
      known !== undefined ? this.const(values[known - 1]!) : this.ifElse(this.eq(number, this.const(1)), this.const(values[0]),
        this.ifElse(this.eq(number, this.const(2)), this.const(values[1]), this.const(values[2])));
    const shift = this.tmp(pick([0, 5, 0]));
    const mask = this.tmp(pick([0x1f, 7, 0xff]));
    const fcsr = this.tmp(() => this.f.get(this.hart).mem(Op.i64_load32_u, HartSlot.FCSR));
    const old = this.tmp(this.and(this.shrU(fcsr, shift), mask));
    const source: Expr = immediate ? () => (this.rs1Field(), this.f.op(Op.i64_extend_i32_u)) : this.rs1;
    const value = { rw: source, rs: this.or(old, source), rc: this.and(old, this.xor(source, this.const(-1))) }[kind];
    const write = () => {
      const f = this.f;
      f.get(this.hart);
      this.or(this.and(fcsr, this.xor(this.shl(mask, shift), this.const(-1))), this.shl(this.and(value, mask), shift))();
      f.mem(Op.i64_store32, HartSlot.FCSR);
      f.get(this.hart).i32(3).mem(Op.i32_store, HartSlot.FS);
    };
    // csrrw always writes; csrrs/csrrc only when the source field is not x0 / zero.
    if (kind === "rw") write();
    else {
      this.rs1Field();
      this.f.if();
      write();
      this.f.end();
    }
    old();
  }

  private csrSlowPath(kind: CsrKind, immediate: boolean): void {
    const f = this.f;
    {
      this.syncForHost();
      f.get(this.hart);
      this.imm();
      f.op(Op.i32_wrap_i64);
      // csrrw always writes; csrrs/csrrc write only when the source field is not x0 / zero.
      f.i32(CSR_KIND_CODE[kind]);
      if (kind === "rw") f.i32(CSR_WRITE_FLAG);
      else {
        this.rs1Field();
        f.i32(0).op(Op.i32_ne).i32(2).op(Op.i32_shl);
      }
      f.op(Op.i32_or);
      if (immediate) {
        this.rs1Field();
        f.op(Op.i64_extend_i32_u);
      } else {
        this.rs1();
      }
      f.call(this.slow.csr);
      this.checkExitRequest();
    }
  }
}
