/**
 * The interpreter engine: a WebAssembly function generated at start-up from the instruction
 * table and its semantics. It fetches, looks the raw bits up in the decode cache and dispatches
 * with br_table to the code semantics.ts defines for each operation, with i64 arithmetic native.
 * Everything rare (decoding, CSRs, MMIO, traps, system instructions) returns to or calls the host.
 *
 * Why wasm and not a JavaScript switch: RV64 needs 64-bit integers, and in JavaScript those are
 * either BigInt (15–40× slower) or int32 pairs (3–7× slower and fragile under V8's optimiser).
 */
import { DECODE_CACHE_OFFSET, F_REGS_OFFSET, HartSlot, WASM_PAGE } from "../shared-mem/layout.ts";
import { DECODE_HASH_MULTIPLIER, DECODE_HASH_SHIFT, DecodeEntry } from "./decode-cache.ts";
import { Cause, Exit, ExitRequest } from "./exits.ts";
import { INSTRUCTIONS, ILLEGAL_OP } from "./isa.ts";
import { SEMANTICS } from "./semantics.ts";
import type { Expr } from "./sem.ts";
import { FunctionBody, ModuleBuilder, Op, ValType } from "./wasm/encoder.ts";
import { importSlowPaths, WasmSem, type EngineMemory, type SlowPathFunctions } from "./wasm/wasm-sem.ts";

/**
 * XORed into pc: a "cached fetch page" no fetch can fall within 4 KiB of (bit 63 flipped is
 * non-canonical under Sv39 and above every physical address), so the next fetch looks it up.
 */
const NO_FETCH_PAGE = -(1n << 63n);

const X = HartSlot.X;

/** What the interpreter does for the translator (vcpu/jit.ts) when the VM runs `--engine jit`. */
export interface HeatOptions {
  /** Host offset of the heat table (one i32 per host frame, layout.heatOffset). */
  heatOffset: number;
  /** Jumps within a frame after which the interpreter returns so that the host compiles it. */
  threshold: number;
}

interface InterpreterLocals {
  budget: number;
  /** Host address of the page being fetched from, or -1 when the host fetched (no frame known). */
  fetchHost: number;
  /** Guest virtual address of that page. */
  fetchPage: number;
  retired: number;
  pc: number;
  npc: number;
  length: number;
  raw: number;
  rdAddr: number;
  rs1Addr: number;
  rs2Addr: number;
  imm: number;
  heatAddr: number;
  heatValue: number;
}

class InterpreterSem extends WasmSem {
  constructor(
    f: FunctionBody,
    memory: EngineMemory,
    slow: SlowPathFunctions,
    hart: number,
    dataTlb: number,
    private readonly l: InterpreterLocals,
    private readonly heat: HeatOptions | undefined,
  ) {
    super(f, memory, slow, hart, dataTlb);
  }

  get hostAddressLocal(): number {
    return this.hostAddr;
  }

  readonly rs1: Expr = () => this.f.get(this.l.rs1Addr).mem(Op.i64_load, X);
  readonly rs2: Expr = () => this.f.get(this.l.rs2Addr).mem(Op.i64_load, X);
  readonly imm: Expr = () => this.f.get(this.l.imm);
  readonly pc: Expr = () => this.f.get(this.l.pc);
  readonly nextPc: Expr = () => this.f.get(this.l.pc).get(this.l.length).op(Op.i64_add);

  // The f registers: the same register-address locals (hart + 8·index) at the f block's offset.
  readonly frs1: Expr = () => this.f.get(this.l.rs1Addr).mem(Op.i64_load, F_REGS_OFFSET);
  readonly frs2: Expr = () => this.f.get(this.l.rs2Addr).mem(Op.i64_load, F_REGS_OFFSET);
  /** rs3 is in the immediate (R4 format: rm | rs3 << 3), so imm & ~7 is 8·rs3. */
  readonly frs3: Expr = () =>
    this.f.get(this.l.imm).op(Op.i32_wrap_i64).i32(0xf8).op(Op.i32_and).get(this.hart).op(Op.i32_add).mem(Op.i64_load, F_REGS_OFFSET);

  protected writeFrd(value: Expr): void {
    this.f.get(this.l.rdAddr);
    value();
    this.f.mem(Op.i64_store, F_REGS_OFFSET);
  }

  protected rs1Field(): void {
    this.f.get(this.l.rs1Addr).get(this.hart).op(Op.i32_sub).i32(3).op(Op.i32_shr_u);
  }

  setRd(value: Expr): void {
    this.f.get(this.l.rdAddr);
    value();
    this.f.mem(Op.i64_store, X);
    // x0 is hard-wired to zero: storing unconditionally and re-zeroing is cheaper than a branch.
    this.f.get(this.hart).i64(0).mem(Op.i64_store, X);
  }

  jump(target: Expr): void {
    target();
    this.f.set(this.l.npc);
    if (!this.heat) return;
    // Count a jump within the page against its frame; when the frame is hot, return after this
    // instruction so that the host runs (or compiles) its translation — with pc in that frame. A
    // jump to another page is counted against the target when the fetch enters it (countHeat).
    const f = this.f;
    f.get(this.l.npc).get(this.l.fetchPage).op(Op.i64_sub).i64(4096).op(Op.i64_lt_u);
    f.get(this.l.fetchHost).i32(0).op(Op.i32_ge_s).op(Op.i32_and).if();
    this.countHeat(() => this.returnAfterThisInstruction());
    f.end();
  }

  /** heat[frame of fetchHost] += 1; run `hot` when it reaches the threshold. */
  countHeat(hot: () => void): void {
    if (!this.heat) return;
    const f = this.f;
    f.get(this.l.fetchHost).i32(10).op(Op.i32_shr_u).i32(this.heat.heatOffset).op(Op.i32_add).tee(this.l.heatAddr);
    f.get(this.l.heatAddr).mem(Op.i32_load).i32(1).op(Op.i32_add).tee(this.l.heatValue).mem(Op.i32_store);
    f.get(this.l.heatValue).i32(this.heat.threshold).op(Op.i32_ge_s).if();
    hot();
    f.end();
  }

  /** Fetching entered a new page (fetchHost set): count it, and leave before running its code if hot. */
  enteredPage(): void {
    this.countHeat(() => this.exitAtCurrent(Exit.Budget));
  }

  override fenceI(): void {
    // Under the translator the host checks the hart's translated pages against memory.
    if (this.heat) this.exitAtCurrent(Exit.FenceI);
  }

  syncForHost(): void {
    const f = this.f;
    f.get(this.hart).get(this.l.pc).mem(Op.i64_store, HartSlot.PC);
    f.get(this.hart).get(this.l.retired).op(Op.i64_extend_i32_u).mem(Op.i64_store, HartSlot.RETIRED);
    if (this.memory.mirrorOffsets.length > 0) {
      f.get(this.hart).get(this.hart).mem(Op.i64_load, HartSlot.MIRRORED_STORES).get(this.mirroredStores).op(Op.i64_add);
      f.mem(Op.i64_store, HartSlot.MIRRORED_STORES);
      f.i64(0).set(this.mirroredStores);
    }
  }

  override tlbHit(a: Expr, width: number, setBase: number, extra: number): void {
    super.tlbHit(a, width, setBase, extra);
  }

  override hostAddressFromTlb(a: Expr, extra: number): void {
    super.hostAddressFromTlb(a, extra);
  }

  exitAtCurrent(code: Exit): void {
    this.syncForHost();
    this.f.i32(code).op(Op.return);
  }

  protected returnAfterThisInstruction(): void {
    this.f.i32(0).set(this.l.budget);
  }

  override illegal(): void {
    this.trap(Cause.IllegalInstruction, () => this.f.get(this.l.raw).op(Op.i64_extend_i32_u));
  }

}

/** Generate the interpreter module for a VM with this RAM placement. */
export function buildInterpreterModule(memory: EngineMemory, memoryPages: number, heat?: HeatOptions): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  m.importSharedMemory("env", "memory", memoryPages);
  const slow = importSlowPaths(m);


  const f = new FunctionBody(2);
  const hart = 0;
  const l: InterpreterLocals = {
    budget: 1,
    retired: f.local(ValType.I32),
    pc: f.local(ValType.I64),
    npc: f.local(ValType.I64),
    length: f.local(ValType.I64),
    raw: f.local(ValType.I32),
    rdAddr: f.local(ValType.I32),
    rs1Addr: f.local(ValType.I32),
    rs2Addr: f.local(ValType.I32),
    imm: f.local(ValType.I64),
    fetchHost: f.local(ValType.I32),
    fetchPage: f.local(ValType.I64),
    heatAddr: f.local(ValType.I32),
    heatValue: f.local(ValType.I32),
  };
  const entry = f.local(ValType.I32);
  const fetchTlb = f.local(ValType.I32);
  const dataTlb = f.local(ValType.I32);
  const fetchPage = l.fetchPage;
  const fetchOffset = f.local(ValType.I64);
  const fetchHost = l.fetchHost;
  const s = new InterpreterSem(f, memory, slow, hart, dataTlb, l, heat);

  f.get(hart).mem(Op.i64_load, HartSlot.PC).set(l.pc);
  s.loadTlbTag();
  // The host chose the TLB sets for the current privilege before this call (vcpu/tlb.ts).
  f.get(hart).get(hart).mem(Op.i32_load, HartSlot.FETCH_TLB).op(Op.i32_add).set(fetchTlb);
  f.get(hart).get(hart).mem(Op.i32_load, HartSlot.DATA_TLB).op(Op.i32_add).set(dataTlb);
  // No cached fetch page yet: see NO_FETCH_PAGE. Afterwards the locals hold either that or a
  // valid mapping (only host code flushes, between calls).
  f.get(l.pc).i64(NO_FETCH_PAGE).op(Op.i64_xor).set(fetchPage);
  f.i32(-1).set(fetchHost);
  f.loop();
  {
    // Budget: leave between instructions with nothing pending.
    f.get(l.retired).get(l.budget).op(Op.i32_ge_u).if();
    s.exitAtCurrent(Exit.Budget);
    f.end();

    // Fetch. The page of the last fetch is kept in locals (its guest address and host address),
    // so straight-line code costs one compare; on leaving the page, consult the fetch TLB, and on
    // a TLB miss (or an instruction that may cross into the next page) ask the host, which
    // translates, fills the TLB and returns the bits. The locals die with this call, so TLB
    // flushes (always made by host code between calls) cannot leave them stale.
    f.get(l.pc).get(fetchPage).op(Op.i64_sub).tee(fetchOffset).i64(4096 - 4).op(Op.i64_le_u).if(ValType.I32);
    f.get(fetchOffset).op(Op.i32_wrap_i64).get(fetchHost).op(Op.i32_add).mem(Op.i32_load);
    f.else();
    s.tlbHit(s.pc, 4, fetchTlb, 0);
    f.if(ValType.I32);
    s.hostAddressFromTlb(s.pc, 0);
    f.get(l.pc).i64(-4096).op(Op.i64_and).set(fetchPage);
    f.get(s.hostAddressLocal).i32(-4096).op(Op.i32_and).set(fetchHost);
    s.enteredPage();
    f.get(s.hostAddressLocal).mem(Op.i32_load);
    f.else();
    s.syncForHost();
    // The host fetched (MMIO, a page-crossing instruction): no frame to count heat against, and
    // the cached fetch page must not be used with it.
    f.i32(-1).set(fetchHost);
    f.get(l.pc).i64(NO_FETCH_PAGE).op(Op.i64_xor).set(fetchPage);
    f.get(hart).get(l.pc).call(slow.fetch).op(Op.i32_wrap_i64);
    f.get(hart).mem(Op.i32_load, HartSlot.EXIT_REQUEST).i32(ExitRequest.Trap).op(Op.i32_eq).if();
    s.exitAtCurrent(Exit.Trap);
    f.end();
    f.end();
    f.end();
    f.tee(l.raw);
    f.i32(3).op(Op.i32_and).i32(3).op(Op.i32_eq).if();
    f.i64(4).set(l.length);
    f.else();
    f.get(l.raw).i32(0xffff).op(Op.i32_and).set(l.raw);
    f.i64(2).set(l.length);
    f.end();

    // Decode-cache lookup (see decode-cache.ts for the entry layout).
    f.get(hart).get(l.raw).i32(DECODE_HASH_MULTIPLIER).op(Op.i32_mul).i32(DECODE_HASH_SHIFT).op(Op.i32_shr_u);
    f.i32(4).op(Op.i32_shl).op(Op.i32_add).i32(DECODE_CACHE_OFFSET).op(Op.i32_add).tee(entry);
    f.mem(Op.i32_load, DecodeEntry.RAW).get(l.raw).op(Op.i32_ne).if();
    f.get(hart).get(l.raw).mem(Op.i32_store, HartSlot.MISS_RAW);
    s.exitAtCurrent(Exit.DecodeMiss);
    f.end();
    f.get(entry).mem(Op.i64_load32_s, DecodeEntry.IMM).set(l.imm);
    for (const [field, local] of [[DecodeEntry.RD, l.rdAddr], [DecodeEntry.RS1, l.rs1Addr], [DecodeEntry.RS2, l.rs2Addr]] as const) {
      f.get(hart).get(entry).mem(Op.i32_load8_u, field).op(Op.i32_add).set(local);
    }
    f.get(l.pc).get(l.length).op(Op.i64_add).set(l.npc);

    // Dispatch: block $done, then one block per operation, innermost = op 0.
    const opCount = INSTRUCTIONS.length + 1;
    f.block();
    for (let i = 0; i < opCount; i++) f.block();
    f.get(entry).mem(Op.i32_load16_u, DecodeEntry.OP);
    f.brTable(Array.from({ length: opCount }, (_, i) => i), ILLEGAL_OP);
    for (let op = 0; op < opCount; op++) {
      f.end();
      s.resetTemps();
      if (op === ILLEGAL_OP) s.illegal();
      else {
        const name = INSTRUCTIONS[op - 1]!.name;
        const meaning = SEMANTICS[name];
        if (!meaning) throw new Error(`no semantics for instruction ${name}`);
        meaning(s);
      }
      // Branch to $done: after closing blocks 0..op, (opCount - 1 - op) op-blocks remain inside it.
      f.br(opCount - 1 - op);
    }
    f.end(); // $done
    f.get(l.npc).set(l.pc);
    f.get(l.retired).i32(1).op(Op.i32_add).set(l.retired);
    f.br(0);
  }
  f.end(); // loop
  f.op(Op.unreachable);

  m.defineFunction({ params: [ValType.I32, ValType.I32], results: [ValType.I32] }, f, "run");
  return m.encode();
}

export function memoryPages(memory: WebAssembly.Memory): number {
  return memory.buffer.byteLength / WASM_PAGE;
}
