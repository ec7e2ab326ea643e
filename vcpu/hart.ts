/**
 * One hart: its state in shared memory, its CSRs, and the host side of its engine — the slow
 * paths the engine calls (MMIO, CSRs), trap and interrupt entry, system instructions.
 */
import { F_REGS_OFFSET, HartSlot, mirrorOffsetsOf, type MemoryLayout } from "../shared-mem/layout.ts";
import { MachineCheck, type PhysicalMap } from "../shared-mem/p2m.ts";
import { CsrFile, IllegalCsrAccess, Irq, MStatus, Priv, CsrNumber } from "./csr.ts";
import { decode } from "./decoder.ts";
import { fpImport } from "./fpu.ts";
import { fillDecodeCache } from "./decode-cache.ts";
import { Cause, Exit, ExitRequest } from "./exits.ts";
import { CSR_WRITE_FLAG, LOAD_SIGNED_FLAG } from "./wasm/wasm-sem.ts";
import { ACCESS_FAULT, ramPhysicalMemory, translate, type PhysicalMemory } from "./mmu.ts";
import { AccessKind, Tlb } from "./tlb.ts";
import { requestEngineReturn, setPendingInterrupts } from "../sync/hart-signals.ts";
import type { AccessWidth } from "../shared-mem/access.ts";
import { lockWordContended } from "../sync/mutex.ts";
import { MirrorLocks } from "../sync/stripes.ts";
import { CodeMap } from "../shared-mem/code-pages.ts";
import { Jit, type JitOptions } from "./jit.ts";
import { WorldHold } from "../sync/shootdown.ts";
import { engineMemoryOf } from "./wasm/wasm-sem.ts";
import type { MessagePort } from "node:worker_threads";

/**
 * Which engine runs the hart: the interpreter alone, or the translator for hot pages with the
 * interpreter for the rest (vcpu/jit.ts). The interpreter module must have been built to match
 * (with heat counting for the translator).
 */
export type EngineChoice = { kind: "interp" } | ({ kind: "jit" } & JitOptions);

/** What a hart needs from the machine around it. */
export interface HartEnvironment {
  readonly memory: WebAssembly.Memory;
  readonly layout: MemoryLayout;
  /** Compiled interpreter module for this layout (see interpreter.ts). */
  readonly interpreter: WebAssembly.Module;
  mmioRead(addr: number, width: AccessWidth): bigint | undefined;
  mmioWrite(addr: number, width: AccessWidth, value: bigint): boolean;
  mtime(): bigint;
  /** Guest page → host frame map and poison marks, shared by every thread of the VM. */
  readonly physicalMap: PhysicalMap;
  /**
   * An access hit a poisoned frame: recover the page (or throw GuestFault when it cannot be).
   * `who` names the accessor for the report.
   */
  recoverPage(page: number, who: string): void;
  /**
   * The hypervisor's own ecall interface (mirror/policy.ts): given a0..a7, the results for
   * a0.. when the call is the hypervisor's, or undefined for an ordinary ecall.
   */
  hypercall?(args: readonly bigint[]): bigint[] | undefined;
  /** The engine tests a per-page mirror bit in store TLB entries (see EngineMemory). */
  readonly perPageProtection: boolean;
  /** Default: the interpreter alone. */
  readonly engine?: EngineChoice;
  /** Under `--engine jit`: this hart's port to the VM's translator thread, asked for when its first page gets hot (none: translate inline). */
  connectTranslator?(): MessagePort | undefined;
}

/** Raised when the guest cannot make progress: the VM stops and reports it. */
export class GuestFault extends Error {}

const INTERRUPT_BIT = 1n << 63n;
/** Engine calls in a row that retire nothing (traps, decode misses) before run() returns anyway. */
const STALL_LIMIT = 10_000;
const MASK64 = (1n << 64n) - 1n;
/** CSRs whose writes can make an interrupt takeable. */
const INTERRUPT_CSRS = new Set<number>([
  CsrNumber.mstatus, CsrNumber.sstatus, CsrNumber.mie, CsrNumber.sie, CsrNumber.mip, CsrNumber.sip, CsrNumber.mideleg,
]);
/** Priority order of interrupts (privileged spec 3.1.9): MEI, MSI, MTI, SEI, SSI, STI. */
const INTERRUPT_PRIORITY = [Irq.MEI, Irq.MSI, Irq.MTI, Irq.SEI, Irq.SSI, Irq.STI];

interface EngineExports {
  run(hart: number, budget: number): number;
}

export class Hart {
  readonly base: number;
  readonly csrs: CsrFile;
  private readonly view: DataView;
  private readonly words: Int32Array;
  private readonly engine: EngineExports;
  /** The translator's host side, under `--engine jit`. */
  readonly jit: Jit | undefined;
  /** Frames holding translated code (shared by every hart of the VM), under `--engine jit`. */
  private readonly codeMap: CodeMap | undefined;
  private readonly tlb: Tlb;
  /** The VM's synchronous-shootdown handshake: this hart says when it is in its engine. */
  private readonly world: WorldHold;
  /** Runs a wait without memory ownership (sync/owner.ts) when this hart has it. */
  private readonly asideFromMemory = (wait: () => void): void => {
    const owner = this.mirrorLocks.owner;
    if (owner) owner.setAside(wait);
    else wait();
  };
  private readonly physical: PhysicalMemory;
  /** Host distance to each mirror copy (empty when unmirrored). */
  private readonly mirrorOffsets: readonly number[];
  /** The VM's mirror locks, which the slow paths hold as the engine's fast paths do. */
  private readonly mirrorLocks: MirrorLocks;
  /** Instructions retired, as a JS number (exact below 2^53) for speed; minstret derives from it. */
  retired = 0;
  /** Store instructions that also wrote the mirror copies (protected pages only). */
  get mirroredStores(): number {
    return Number(this.view.getBigUint64(this.base + HartSlot.MIRRORED_STORES, true)) + this.slowMirroredStores;
  }
  /** Times this hart found a mirror lock held and had to spin or sleep for it (sync/mutex.ts). */
  contendedLocks = 0;
  /** Mirrored stores made by the host slow paths (the engine counts its own in shared memory). */
  private slowMirroredStores = 0;
  /** Set by access() for stores: whether the page is protected (its stores reach the mirrors). */
  private lastStoreMirrored = false;
  /** Host milliseconds spent waiting in WFI. */
  wfiMilliseconds = 0;
  /** Set when WFI found nothing pending: the machine should wait for an interrupt. */
  waitingForInterrupt = false;
  /** The last exception taken, for the report when the trap handler itself cannot be reached. */
  private lastException: { cause: number; pc: bigint; tval: bigint } | undefined;

  constructor(readonly id: number, private readonly env: HartEnvironment) {
    this.base = env.layout.hartOffset(id);
    this.view = new DataView(env.memory.buffer);
    this.words = new Int32Array(env.memory.buffer);
    this.mirrorOffsets = mirrorOffsetsOf(env.layout);
    this.mirrorLocks = new MirrorLocks(env.memory.buffer, env.layout);
    this.physical = ramPhysicalMemory(env.memory.buffer, env.physicalMap, this.mirrorOffsets, this.mirrorLocks);
    this.tlb = new Tlb(this.view, this.words, this.base);
    this.world = new WorldHold(this.words, env.layout);
    this.csrs = new CsrFile({
      priv: () => this.priv,
      hartId: id,
      instret: () => BigInt(this.retired + Number(this.view.getBigUint64(this.base + HartSlot.RETIRED, true))),
      mtime: () => env.mtime(),
      readMip: () => Atomics.load(this.words, (this.base + HartSlot.MIP) >>> 2),
      updateMip: (mask, value) => this.updateMip(mask, value),
      timerChanged: () => {
        this.updateSupervisorTimer();
        this.requestReturn();
      },
      fs: () => this.view.getInt32(this.base + HartSlot.FS, true),
      setFs: (value) => this.view.setInt32(this.base + HartSlot.FS, value, true),
      fcsr: () => this.view.getInt32(this.base + HartSlot.FCSR, true),
      setFcsr: (value) => this.view.setInt32(this.base + HartSlot.FCSR, value, true),
    });
    const imports = {
      env: { memory: env.memory },
      host: {
        load: (_hart: number, addr: bigint, widthAndSign: number) => this.slowLoad(addr, widthAndSign),
        store: (_hart: number, addr: bigint, width: number, value: bigint) => this.slowStore(addr, width, value),
        csr: (_hart: number, csr: number, kind: number, value: bigint) => this.csrAccess(csr, kind, value),
        translate: (_hart: number, addr: bigint, kind: number) => this.translateForAtomic(addr, kind as AccessKind),
        fetch: (_hart: number, pc: bigint) => this.slowFetch(pc),
        lockContended: (lockAddress: number) => {
          this.contendedLocks++;
          lockWordContended(this.words, lockAddress >>> 2);
        },
        wakeSleeper: (lockAddress: number) => void Atomics.notify(this.words, lockAddress >>> 2, 1),
        fp: fpImport(this.view, this.base, HartSlot.FCSR, HartSlot.FS),
      },
    };
    const instance = new WebAssembly.Instance(env.interpreter, imports);
    this.engine = instance.exports as unknown as EngineExports;
    const engine = env.engine ?? { kind: "interp" };
    if (engine.kind === "jit") {
      this.codeMap = new CodeMap(env.memory.buffer, env.layout);
      this.jit = new Jit(
        {
          memory: env.memory,
          layout: env.layout,
          engineMemory: engineMemoryOf(env.layout, env.perPageProtection),
          imports,
          hartBase: this.base,
          codeMap: this.codeMap,
          flushOwnTlb: () => this.tlb.flushAll(),
          connectTranslator: engine.synchronous || engine.lockstep ? undefined : env.connectTranslator?.bind(env),
        },
        engine,
      );
    }
    this.setSlot(HartSlot.RES_ADDR, -1n);
    this.priv = Priv.M;
  }

  // --- state accessors ---------------------------------------------------------------------
  get pc(): bigint {
    return this.view.getBigUint64(this.base + HartSlot.PC, true);
  }
  set pc(value: bigint) {
    this.view.setBigUint64(this.base + HartSlot.PC, value & MASK64, true);
  }
  get priv(): Priv {
    return this.view.getInt32(this.base + HartSlot.PRIV, true) as Priv;
  }
  set priv(value: Priv) {
    this.view.setInt32(this.base + HartSlot.PRIV, value, true);
  }
  x(index: number): bigint {
    return this.view.getBigUint64(this.base + HartSlot.X + index * 8, true);
  }
  /** f register `index` (raw 64 bits; singles NaN-boxed). */
  f(index: number): bigint {
    return this.view.getBigUint64(this.base + F_REGS_OFFSET + index * 8, true);
  }
  setX(index: number, value: bigint): void {
    if (index !== 0) this.view.setBigUint64(this.base + HartSlot.X + index * 8, value & MASK64, true);
  }
  private slot(offset: number): bigint {
    return this.view.getBigInt64(this.base + offset, true);
  }
  private setSlot(offset: number, value: bigint): void {
    this.view.setBigInt64(this.base + offset, BigInt.asIntN(64, value), true);
  }
  get mip(): number {
    return Atomics.load(this.words, this.mipIndex);
  }
  /** Index of the mip word in an Int32Array over the shared memory (WFI sleeps on it). */
  get mipIndex(): number {
    return (this.base + HartSlot.MIP) >>> 2;
  }
  /** Set or clear interrupt-pending bits; safe from any thread. */
  updateMip(mask: number, value: number): void {
    setPendingInterrupts(this.words, this.base, mask, value);
  }

  /** Ask the engine to return at the next instruction boundary (stop, interrupt). */
  requestReturn(): void {
    requestEngineReturn(this.words, this.base);
  }

  reset(entry: bigint, a0: bigint, a1: bigint): void {
    this.pc = entry;
    this.setX(10, a0);
    this.setX(11, a1);
    this.priv = Priv.M;
  }

  // --- the run loop ------------------------------------------------------------------------
  /**
   * Run up to `budget` instructions (fewer if an exit needs the machine: WFI, stop request).
   * Returns the number retired. A mirrored one-hart VM's hart owns guest memory meanwhile
   * (sync/owner.ts): host writers wait for the run to end, and its stores take no mirror lock.
   */
  run(budget: number): number {
    const owner = this.mirrorLocks.owner;
    return owner ? owner.whileRunning(() => this.runOwning(budget)) : this.runOwning(budget);
  }

  private runOwning(budget: number): number {
    const start = this.retired;
    this.waitingForInterrupt = false;
    let stalled = 0;
    while (this.retired - start < budget) {
      const before = this.retired;
      this.updateSupervisorTimer();
      this.takePendingInterrupt();
      // Announced before the flush flag is read: a synchronous shootdown (sync/shootdown.ts) then
      // either sees this hart in its engine and waits, or this hart sees its hold and its flag.
      this.world.enterEngine(this.base, this.asideFromMemory);
      let exit: number;
      try {
        if (Atomics.exchange(this.words, (this.base + HartSlot.TLB_SHOOTDOWN) >>> 2, 0) !== 0) this.tlb.flushAll();
        this.selectTlbSets();
        const remaining = budget - (this.retired - start);
        const translated = this.jit?.lookup();
        exit = translated ? translated(this.base, remaining, 0) : this.engine.run(this.base, remaining);
      } finally {
        this.world.leaveEngine(this.base);
      }
      this.retired += Number(this.view.getBigUint64(this.base + HartSlot.RETIRED, true));
      this.view.setBigUint64(this.base + HartSlot.RETIRED, 0n, true);
      const request = Atomics.exchange(this.words, (this.base + HartSlot.EXIT_REQUEST) >>> 2, ExitRequest.None);
      switch (exit) {
        case Exit.Budget:
          if (request !== ExitRequest.None) return this.retired - start;
          break;
        case Exit.DecodeMiss:
          fillDecodeCache(this.view, this.base, decode(this.view.getUint32(this.base + HartSlot.MISS_RAW, true)));
          break;
        case Exit.Trap:
          this.trap(this.slot(HartSlot.TRAP_CAUSE), this.slot(HartSlot.TRAP_TVAL));
          break;
        case Exit.NotTranslated:
          // The next lookup (at the top of the loop) learns the entry, or the interpreter runs.
          break;
        case Exit.FenceI:
          this.jit?.fenceI();
          this.pc = this.pc + 4n; // FENCE.I has no compressed form
          this.retireHostInstruction();
          break;
        default:
          this.system(exit);
          if (this.waitingForInterrupt) return this.retired - start;
      }
      // A stop, pause or interrupt request that came with another exit (a trap) ends the call too,
      // and so do engine calls that keep retiring nothing (a trap handler that traps at once): else
      // such a guest would keep run() from ever returning, past every timeout and stop request.
      if (request === ExitRequest.Return) return this.retired - start;
      if (this.retired !== before) stalled = 0;
      else if (++stalled >= STALL_LIMIT) return this.retired - start;
    }
    return this.retired - start;
  }

  /** Carry out a system instruction the engine left to the host. */
  private system(exit: number): void {
    const pc = this.pc;
    const priv = this.priv;
    const mstatus = this.csrs.mstatus;
    switch (exit) {
      case Exit.Ecall: {
        // Calls to the hypervisor from S and M mode are served before the guest's own trap
        // handler sees them; from U-mode an ecall is the guest kernel's business (a user program
        // must not change its kernel's mirroring, e.g. release all of RAM).
        const results = priv === Priv.U ? undefined : this.env.hypercall?.(Array.from({ length: 8 }, (_, i) => this.x(10 + i)));
        if (results === undefined) return this.trap(BigInt(Cause.EcallFromU + priv), 0n);
        results.forEach((value, i) => this.setX(10 + i, value));
        this.pc = pc + 4n;
        return this.retireHostInstruction();
      }
      case Exit.Ebreak:
        return this.trap(BigInt(Cause.Breakpoint), 0n); // tval 0, as QEMU (the spec allows pc or 0)
      case Exit.Mret: {
        if (priv < Priv.M) return this.illegalInstruction();
        const mpp = ((mstatus & MStatus.MPP) >>> MStatus.MPP_SHIFT) as Priv;
        let next = mstatus & ~(MStatus.MIE | MStatus.MPP);
        if (mstatus & MStatus.MPIE) next |= MStatus.MIE;
        next |= MStatus.MPIE;
        if (mpp !== Priv.M) next &= ~MStatus.MPRV;
        this.csrs.mstatus = next;
        this.priv = mpp;
        this.setSlot(HartSlot.RES_ADDR, -1n); // xRET clears the LR reservation (as QEMU)
        this.pc = this.csrs.mepc;
        return this.retireHostInstruction();
      }
      case Exit.Sret: {
        if (priv < Priv.S || (priv === Priv.S && mstatus & MStatus.TSR)) return this.illegalInstruction();
        const spp = mstatus & MStatus.SPP ? Priv.S : Priv.U;
        let next = mstatus & ~(MStatus.SIE | MStatus.SPP);
        if (mstatus & MStatus.SPIE) next |= MStatus.SIE;
        next |= MStatus.SPIE;
        next &= ~MStatus.MPRV;
        this.csrs.mstatus = next;
        this.priv = spp;
        this.setSlot(HartSlot.RES_ADDR, -1n);
        this.pc = this.csrs.sepc;
        return this.retireHostInstruction();
      }
      case Exit.Wfi:
        // U-mode may never wait (QEMU traps it); S-mode may not when mstatus.TW is set.
        if (priv === Priv.U || (priv === Priv.S && mstatus & MStatus.TW)) return this.illegalInstruction();
        this.pc = pc + 4n;
        this.retireHostInstruction();
        if ((this.mip & this.csrs.mie) === 0) this.waitingForInterrupt = true;
        return;
      case Exit.SfenceVma: {
        if (priv === Priv.U || (priv === Priv.S && mstatus & MStatus.TVM)) return this.illegalInstruction();
        // rs1 = x0: every address; else only the page of x[rs1] (Linux's flush_tlb_page, on each
        // PTE it changes), whatever rs2 (ASID) says, since dropping more than asked is allowed.
        const raw = this.readInstruction(pc);
        const rs1 = typeof raw === "bigint" ? Number((raw >> 15n) & 31n) : 0;
        if (rs1 === 0) this.tlb.flushAll();
        else this.tlb.flushPage(this.x(rs1));
        this.pc = pc + 4n;
        return this.retireHostInstruction();
      }
      default:
        throw new GuestFault(`hart ${this.id}: engine returned unknown exit ${exit} at pc 0x${pc.toString(16)}`);
    }
  }

  private retireHostInstruction(): void {
    this.retired++;
  }

  /** The bits of the instruction at pc (for mtval on illegal instructions); 0 if unreadable. */
  private rawInstructionAtPc(): bigint {
    const raw = this.readInstruction(this.pc);
    return typeof raw === "bigint" ? raw : 0n;
  }
  private illegalInstruction(): void {
    this.trap(BigInt(Cause.IllegalInstruction), this.rawInstructionAtPc());
  }

  // --- traps and interrupts ----------------------------------------------------------------
  /** Enter the trap handler for `cause` (bit 63 set for interrupts) at the current pc. */
  trap(cause: bigint, tval: bigint): void {
    const csrs = this.csrs;
    const priv = this.priv;
    const pc = this.pc;
    const isInterrupt = (cause & INTERRUPT_BIT) !== 0n;
    const code = Number(cause & 0xffn);
    const delegated = priv <= Priv.S && ((isInterrupt ? csrs.mideleg : csrs.medeleg) >>> code) & 1;
    this.setSlot(HartSlot.RES_ADDR, -1n);
    let vector: bigint;
    if (delegated) {
      csrs.sepc = pc;
      csrs.scause = cause & MASK64;
      csrs.stval = tval & MASK64;
      let s = csrs.mstatus & ~(MStatus.SPP | MStatus.SPIE | MStatus.SIE);
      if (csrs.mstatus & MStatus.SIE) s |= MStatus.SPIE;
      if (priv === Priv.S) s |= MStatus.SPP;
      csrs.mstatus = s;
      this.priv = Priv.S;
      vector = csrs.stvec;
    } else {
      csrs.mepc = pc;
      csrs.mcause = cause & MASK64;
      csrs.mtval = tval & MASK64;
      let m = csrs.mstatus & ~(MStatus.MPP | MStatus.MPIE | MStatus.MIE);
      if (csrs.mstatus & MStatus.MIE) m |= MStatus.MPIE;
      m |= priv << MStatus.MPP_SHIFT;
      csrs.mstatus = m;
      this.priv = Priv.M;
      vector = csrs.mtvec;
    }
    const base = vector & ~3n;
    const target = isInterrupt && (vector & 1n) === 1n ? base + 4n * BigInt(code) : base;
    if (!isInterrupt && (code === Cause.InstructionAccessFault || code === Cause.InstructionPageFault) && pc === target) {
      const first = this.lastException;
      const before = first && first.pc !== pc
        ? `after ${causeName(first.cause)} at pc 0x${first.pc.toString(16)} (tval 0x${first.tval.toString(16)}), `
        : "";
      throw new GuestFault(
        `hart ${this.id}: ${before}the trap vector ${delegated ? "stvec" : "mtvec"}=0x${vector.toString(16)} cannot be ` +
          `fetched (${causeName(code)}): the guest has no usable trap handler`,
      );
    }
    if (!isInterrupt) this.lastException = { cause: code, pc, tval: tval & MASK64 };
    this.pc = target;
  }

  /** Sstc: STIP mirrors time >= stimecmp while menvcfg.STCE is set. */
  updateSupervisorTimer(): void {
    if (!this.csrs.sstcEnabled) return;
    const due = this.env.mtime() >= this.csrs.stimecmp;
    this.updateMip(1 << Irq.STI, due ? 1 << Irq.STI : 0);
  }

  /** Host nanoseconds until this hart's supervisor timer (Sstc) is due, or undefined if none. */
  nanosUntilSupervisorTimer(): bigint | undefined {
    if (!this.csrs.sstcEnabled) return undefined;
    const now = this.env.mtime();
    return now >= this.csrs.stimecmp ? 0n : (this.csrs.stimecmp - now) * 100n; // 10 MHz timebase
  }

  /** The pending interrupts the hart would take now (privileged spec 3.1.6.1), M-level ones if any. */
  private takeableInterrupts(): number {
    const pending = this.mip & this.csrs.mie;
    if (pending === 0) return 0;
    const priv = this.priv;
    const mstatus = this.csrs.mstatus;
    const mEnabled = priv < Priv.M || (mstatus & MStatus.MIE) !== 0;
    const sEnabled = priv < Priv.S || (priv === Priv.S && (mstatus & MStatus.SIE) !== 0);
    const toM = mEnabled ? pending & ~this.csrs.mideleg : 0;
    const toS = sEnabled ? pending & this.csrs.mideleg : 0;
    return toM !== 0 ? toM : toS;
  }

  /** Take the highest-priority pending, enabled interrupt, if any. */
  private takePendingInterrupt(): void {
    const candidates = this.takeableInterrupts();
    if (candidates === 0) return;
    for (const irq of INTERRUPT_PRIORITY) {
      if (candidates & (1 << irq)) {
        this.trap(INTERRUPT_BIT | BigInt(irq), 0n);
        return;
      }
    }
  }

  /** True when an enabled interrupt is pending (WFI wakes on pending & mie regardless of MIE). */
  interruptPending(): boolean {
    return (this.mip & this.csrs.mie) !== 0;
  }

  // --- slow paths called from the engine -----------------------------------------------------
  private raise(cause: number, tval: bigint): void {
    this.setSlot(HartSlot.TRAP_CAUSE, BigInt(cause));
    this.setSlot(HartSlot.TRAP_TVAL, tval);
    Atomics.store(this.words, (this.base + HartSlot.EXIT_REQUEST) >>> 2, ExitRequest.Trap);
  }

  // --- address translation and slow-path memory ----------------------------------------------
  /** Privilege that data accesses use: MPP when M-mode sets MPRV. */
  private dataPriv(): Priv {
    const priv = this.priv;
    const mstatus = this.csrs.mstatus;
    if (priv === Priv.M && mstatus & MStatus.MPRV) return ((mstatus & MStatus.MPP) >>> MStatus.MPP_SHIFT) as Priv;
    return priv;
  }

  private selectTlbSets(): void {
    this.tlb.select(this.priv, this.dataPriv());
  }

  /** Drop all cached translations (satp, SUM/MXR changes, sfence.vma, page remapping). */
  flushTlb(): void {
    this.tlb.flushAll();
  }

  /**
   * Translate and, when the page is RAM, fill the TLB. Returns the host offset (RAM), or the
   * physical address as a bigint (not RAM: MMIO), or a fault cause as { fault }.
   */
  private access(vaddr: bigint, kind: AccessKind): number | bigint | { fault: number } {
    const priv = kind === AccessKind.Fetch ? this.priv : this.dataPriv();
    for (;;) {
      try {
        const t = translate(vaddr, kind, priv, this.csrs.satp, this.csrs.mstatus, this.physical);
        if (t.fault !== undefined) return { fault: t.fault };
        const host = this.physical.hostOffset(t.paddr);
        if (host < 0) return t.paddr;
        let cacheable = true;
        // A frame with translated code stays out of the store TLB, so that every store to it
        // comes here and its caller can invalidate the code (storedTo, or before an atomic).
        if (kind === AccessKind.Store && this.codeMap) cacheable = !this.codeMap.hasCode(host >>> 12);
        const mirrored = kind === AccessKind.Store && this.isProtected(t.paddr);
        if (cacheable) this.tlb.fill(priv, kind, vaddr, host & ~0xfff, mirrored && this.env.perPageProtection, t.leafLevel);
        // Without per-page protection the engine mirrors every page it stores to, and so do we.
        this.lastStoreMirrored = kind === AccessKind.Store && (mirrored || (this.mirrorOffsets.length > 0 && !this.env.perPageProtection));
        return host;
      } catch (e) {
        // A DUE in the page (or in a page table on the way): the hypervisor recovers it from a
        // mirror, then the access is retried, invisibly to the guest.
        if (!(e instanceof MachineCheck)) throw e;
        const guestSeconds = (Number(this.env.mtime()) / 10_000_000).toFixed(3);
        this.env.recoverPage(e.page, `hart ${this.id} at pc 0x${this.pc.toString(16)}, guest time ${guestSeconds} s`);
      }
    }
  }

  private countMirroredStore(): void {
    this.slowMirroredStores++;
  }

  /** Whether stores to this guest-physical RAM address must reach the mirror copies. */
  private isProtected(paddr: bigint): boolean {
    return this.mirrorOffsets.length > 0 && this.env.physicalMap.isProtected(this.env.physicalMap.pageOf(Number(paddr)));
  }

  /** Read `width` bytes at a virtual address, byte by byte when the access crosses a page. */
  private readData(vaddr: bigint, width: AccessWidth, kind: AccessKind): bigint | { fault: number; tval: bigint } {
    if ((Number(vaddr & 0xfffn) + width) > 4096) {
      let value = 0n;
      for (let i = 0; i < width; i++) {
        const byte = this.readData(vaddr + BigInt(i), 1, kind);
        if (typeof byte !== "bigint") return byte;
        value |= byte << BigInt(8 * i);
      }
      return value;
    }
    const where = this.access(vaddr, kind);
    if (typeof where === "number") return readLittleEndian(this.view, where, width);
    if (typeof where === "bigint") {
      const value = where < 0x1_0000_0000n ? this.env.mmioRead(Number(where), width) : undefined;
      return value ?? { fault: ACCESS_FAULT[kind], tval: vaddr };
    }
    return { fault: where.fault, tval: vaddr };
  }

  private slowLoad(addr: bigint, widthAndSign: number): bigint {
    const width = (widthAndSign & 15) as AccessWidth;
    const value = this.readData(BigInt.asUintN(64, addr), width, AccessKind.Load);
    if (typeof value !== "bigint") {
      this.raise(value.fault, value.tval);
      return 0n;
    }
    return widthAndSign & LOAD_SIGNED_FLAG ? BigInt.asIntN(width * 8, value) : value;
  }

  private slowStore(addr: bigint, width: number, value: bigint, counted = true): void {
    const va = BigInt.asUintN(64, addr);
    if ((Number(va & 0xfffn) + width) > 4096) {
      // Translate every byte first, so that a fault on the second page leaves memory untouched.
      for (let i = 0; i < width; i++) {
        const where = this.access(va + BigInt(i), AccessKind.Store);
        if (typeof where === "object") return this.raise(where.fault, va + BigInt(i));
        if (typeof where === "bigint") return this.raise(Cause.StoreAccessFault, va + BigInt(i));
      }
      for (let i = 0; i < width; i++) this.slowStore(va + BigInt(i), 1, value >> BigInt(8 * i), false);
      if (this.lastStoreMirrored) this.countMirroredStore();
      return;
    }
    const where = this.access(va, AccessKind.Store);
    if (typeof where === "number") {
      if (!this.lastStoreMirrored) writeLittleEndian(this.view, where, width, value);
      else {
        this.mirrorLocks.forStore(where, width, () => {
          writeLittleEndian(this.view, where, width, value);
          for (const offset of this.mirrorOffsets) writeLittleEndian(this.view, where + offset, width, value);
        });
        if (counted) this.countMirroredStore();
      }
      return this.storedTo(where, width);
    }
    if (typeof where === "object") return this.raise(where.fault, va);
    const masked = BigInt.asUintN(width * 8, value);
    if (where >= 0x1_0000_0000n || !this.env.mmioWrite(Number(where), width as AccessWidth, masked)) {
      this.raise(Cause.StoreAccessFault, va);
    }
  }

  /**
   * A store of `width` bytes at host offset `host` has landed (code-pages.ts: checked after the
   * write). If it reached translated code, every hart's translation of the page is now stale: leave
   * the engine after this instruction, which may be running that very code.
   */
  private storedTo(host: number, width: number): void {
    if (this.codeMap?.invalidateWrite(host >>> 12, host & 0xfff, width)) this.requestReturn();
  }

  /**
   * Atomics on a TLB miss: the host address (bit 0 set when a store must reach the mirrors), or
   * -1 with the fault raised (MMIO gets none).
   */
  private translateForAtomic(addr: bigint, kind: AccessKind): number {
    const va = BigInt.asUintN(64, addr);
    const where = this.access(va, kind);
    if (typeof where === "number") {
      // The engine writes after this returns, so code is invalidated before the write (code-pages.ts).
      if (kind === AccessKind.Store && this.codeMap?.invalidateBeforeWrite(where >>> 12, where & 0xfff, 8)) this.requestReturn();
      return kind === AccessKind.Store && this.env.perPageProtection && this.lastStoreMirrored ? where | 1 : where;
    }
    this.raise(typeof where === "object" ? where.fault : ACCESS_FAULT[kind], va);
    return -1;
  }

  /** Instruction bits at `pc` (16 or 32 of them), or the fault that fetching them raises. */
  private readInstruction(pc: bigint): bigint | { fault: number; tval: bigint } {
    const low = this.readData(pc, 2, AccessKind.Fetch);
    if (typeof low !== "bigint" || (low & 3n) !== 3n) return low;
    const high = this.readData(pc + 2n, 2, AccessKind.Fetch);
    if (typeof high !== "bigint") return high;
    return low | (high << 16n);
  }

  private slowFetch(pc: bigint): bigint {
    const raw = this.readInstruction(BigInt.asUintN(64, pc));
    if (typeof raw === "bigint") return raw;
    this.raise(raw.fault, raw.tval);
    return 0n;
  }

  /**
   * What a CSR write changes beyond the CSR: cached translations, the TLB sets the engine uses,
   * whether an interrupt is now to be taken. Only those make the engine return (and a translated
   * page be left): a kernel saves and restores sstatus around every critical section and trap,
   * and when each such write flushed the TLB and returned, Linux made ~3 M page walks in one boot.
   */
  private afterCsrWrite(csr: number, statusBefore: number, satpBefore: bigint): void {
    let leave = false;
    // Entries hold SUM's and MXR's permissions baked in: a change drops them all. They are tagged
    // with their address space (satp: vcpu/tlb.ts switchSpace). (The engine loaded the TLB
    // generation when it was entered, so it returns to take the new one.)
    const statusChanged = this.csrs.mstatus ^ statusBefore;
    if (statusChanged & (MStatus.SUM | MStatus.MXR)) {
      this.tlb.flushAll();
      leave = true;
    }
    if (csr === CsrNumber.satp && this.csrs.satp !== satpBefore) {
      this.tlb.switchSpace(this.csrs.satp);
      leave = true;
    }
    // The data TLB set follows MPRV and, while MPRV is set, MPP in M-mode (selectTlbSets, chosen
    // before each engine call).
    const mprv = (this.csrs.mstatus | statusBefore) & MStatus.MPRV;
    if (this.priv === Priv.M && (statusChanged & MStatus.MPRV || (mprv && statusChanged & MStatus.MPP))) leave = true;
    // An interrupt that the write enabled (mie, mideleg, the global enables) or made pending
    // (mip) is taken between engine calls; a write that disables, or enables nothing pending,
    // needs none.
    // (The Sstc timer's STIP is brought up to date first: it is otherwise updated between engine calls.)
    if (INTERRUPT_CSRS.has(csr)) {
      this.updateSupervisorTimer();
      if (this.takeableInterrupts() !== 0) leave = true;
    }
    if (leave) this.requestReturn();
  }

  private csrAccess(csr: number, kindAndWrite: number, value: bigint): bigint {
    const kind = kindAndWrite & 3;
    const writes = (kindAndWrite & CSR_WRITE_FLAG) !== 0;
    try {
      const old = this.csrs.read(csr);
      if (writes) {
        const next = kind === 1 ? value : kind === 2 ? old | value : old & ~value;
        const statusBefore = this.csrs.mstatus;
        const satpBefore = this.csrs.satp;
        this.csrs.write(csr, BigInt.asUintN(64, next));
        this.afterCsrWrite(csr, statusBefore, satpBefore);
      }
      return old;
    } catch (e) {
      if (!(e instanceof IllegalCsrAccess)) throw e;
      this.raise(Cause.IllegalInstruction, this.rawInstructionAtPc());
      return 0n;
    }
  }
}

const CAUSE_NAMES: Record<number, string> = {
  [Cause.InstructionMisaligned]: "instruction address misaligned",
  [Cause.InstructionAccessFault]: "instruction access fault",
  [Cause.IllegalInstruction]: "illegal instruction",
  [Cause.Breakpoint]: "breakpoint",
  [Cause.LoadMisaligned]: "load address misaligned",
  [Cause.LoadAccessFault]: "load access fault",
  [Cause.StoreMisaligned]: "store/AMO address misaligned",
  [Cause.StoreAccessFault]: "store/AMO access fault",
  [Cause.EcallFromU]: "ecall from U-mode",
  [Cause.EcallFromS]: "ecall from S-mode",
  [Cause.EcallFromM]: "ecall from M-mode",
  [Cause.InstructionPageFault]: "instruction page fault",
  [Cause.LoadPageFault]: "load page fault",
  [Cause.StorePageFault]: "store/AMO page fault",
};

export function causeName(cause: number): string {
  return CAUSE_NAMES[cause] ?? `exception ${cause}`;
}

function readLittleEndian(view: DataView, offset: number, width: AccessWidth): bigint {
  switch (width) {
    case 1: return BigInt(view.getUint8(offset));
    case 2: return BigInt(view.getUint16(offset, true));
    case 4: return BigInt(view.getUint32(offset, true));
    case 8: return view.getBigUint64(offset, true);
  }
}

function writeLittleEndian(view: DataView, offset: number, width: number, value: bigint): void {
  switch (width) {
    case 1: return view.setUint8(offset, Number(value & 0xffn));
    case 2: return view.setUint16(offset, Number(value & 0xffffn), true);
    case 4: return view.setUint32(offset, Number(value & 0xffffffffn), true);
    default: return view.setBigUint64(offset, BigInt.asUintN(64, value), true);
  }
}
