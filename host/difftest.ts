/**
 * The lockstep differential tester (`kmemvisor difftest`): the same guest runs on two machines,
 * one with the interpreter alone and one with the translator (`--engine jit`, threshold 0, lockstep
 * translations in which every instruction is an entry), stepped one instruction at a time. After
 * every step pc, privilege and x1..x31 are compared; RAM and the main CSRs every
 * `memoryCheckEvery` steps and at the end. The first divergence is reported with its step, the
 * instruction and what differs. A memory or CSR divergence found at a checkpoint is narrowed down
 * to its exact step by running both machines again from the start (they are deterministic, see
 * below) and comparing more and more often inside the failing interval.
 *
 * Determinism: the guest clock is virtual while stepping. mtime (CLINT register and `time` CSR)
 * reads as the number of instructions the hart has retired, one 100 ns tick per instruction, and
 * devices (CLINT timer, UART) are ticked every `tickEvery` steps on both machines at the same step,
 * so timer interrupts arrive at the same instruction on both engines and a run can be replayed.
 * HTIF guests are not supported (their host side is polled by Machine.run, which is not used).
 *
 * A step is `hart.run(1)` on each machine; a trap taken counts as part of the step (run(1) loops
 * until one instruction retired). Lockstep translations make that exactly one instruction on the
 * translator too, so a step in which either engine retires more than one is a divergence — unless
 * `resync` is set: then the other engine is stepped until both have retired as many, the states are
 * compared there, and such "resynchronised" steps are only counted (a way to look for wrong values
 * past a translator whose lockstep is not exact).
 *
 * Coarse mode (`coarse`): lockstep translations never show the code shape real runs use (direct
 * forward branches, wasm loops, loops with if/else inside). So the translator's machine runs normal
 * translations (threshold `jitThreshold`, default 1; compiled synchronously, so a run repeats) in
 * chunks: hart.run(budget) with a budget drawn log-uniformly from 1..maxChunk by a generator seeded
 * with `chunkSeed`, so that chunk boundaries land everywhere, mid-loop included. It may retire more
 * than its budget (translated code checks it only at loop back edges and its dispatch); then the
 * interpreter's machine, whose run(n) is exact, runs to the same instruction count and pc,
 * privilege, x1..x31, the CSRs and mip are compared, RAM every `memoryCheckEvery` instructions and
 * at the end. Devices tick when the count passes a multiple of `tickEvery`, between chunks, on both.
 * A chunk may end with the translator having taken a trap past its budget (a trap retires nothing)
 * where the interpreter stands before the trapping instruction: one more run(1) settles that. A
 * divergence is narrowed down by replays from the start: the first chunk after which anything
 * differs, then the smallest budget for it that still differs (a bisection), then the interpreter
 * alone through the instructions the translator ran between the last two budgets' ends, naming the
 * last one that writes what differs (see ChunkInfo).
 * Interrupts: the CLINT raises mip only when ticked (between chunks) or at the store to mtimecmp
 * (both engines return after it), so both take an interrupt at the same instruction. The Sstc timer
 * (stimecmp), though, is evaluated by the hart at each of its engine exits, which differ between the
 * engines: a guest that uses it may show interrupt-timing differences that are no translator bug
 * (none of guests/bin does).
 *
 * `randomStreams` generates random RV64IMAC instruction streams (see `randomStream`), each run
 * through the same comparison by `difftestStreams`; host/difftest-loops.ts generates loop-shaped
 * programs of the same form (`StreamOptions.generator`), the fuzzer of the translator's loops.
 */
import type { EngineChoice, Hart } from "../vcpu/hart.ts";
import { Machine } from "../hypervisor/machine.ts";
import { planBoot, type BootImages } from "../hypervisor/boot.ts";
import { ControlSlot, F_REGS_OFFSET, HartSlot, PAGE_SIZE, RAM_BASE } from "../shared-mem/layout.ts";
import { decode, type Decoded } from "../vcpu/decoder.ts";
import { FpRegs, ILLEGAL_OP, INSTRUCTIONS, type InstructionRow } from "../vcpu/isa.ts";
import { CsrNumber } from "../vcpu/csr.ts";
import { CLINT_BASE } from "../hypervisor/devices/clint.ts";
import * as A from "../test/helpers/asm.ts";

// --- comparing two machines ---------------------------------------------------------------------

export interface MachinePair {
  interp: Machine;
  jit: Machine;
}

export interface DifftestOptions {
  /** Stop after this many steps (default 10 000 000). */
  maxSteps?: number;
  /** Compare RAM and CSRs every this many steps (default 100 000; always at the end). */
  memoryCheckEvery?: number;
  /** Guest RAM of both machines (default 128 MiB for guests, 2 MiB for random streams). */
  ramSize?: number;
  /** Tick the devices (CLINT timer, UART) every this many steps (default 1000). */
  tickEvery?: number;
  /**
   * A step in which one engine retires more than one instruction is not a divergence: the other
   * catches up and they are compared there (see the header). Default: it is a divergence.
   */
  resync?: boolean;
  /**
   * Called after every step (and again at the same step when a divergence is narrowed down), before
   * the comparison: tests corrupt the jit machine here to check that the detector works.
   */
  onStep?: (step: number, machines: MachinePair) => void;
  /** Called every PROGRESS_EVERY steps with the steps run so far (a progress bar; coarse: instructions). */
  progress?: (steps: number) => void;

  /**
   * Coarse mode (see the header): the translator's machine runs normal translations (direct
   * forward branches, wasm loops) in chunks of random size, the interpreter's catches up to the
   * same instruction count after each, and the states are compared there. `maxSteps` and
   * `memoryCheckEvery` then count instructions, and `tickEvery` too.
   */
  coarse?: boolean;
  /** Coarse: seed of the chunk sizes (default 1; random streams: the stream's seed). */
  chunkSeed?: number;
  /**
   * Coarse: the guest clock (mtime, `time`) stands still during a chunk and is set to the
   * instructions retired between chunks. The Sstc timer (stimecmp) is evaluated by the hart at its
   * engine exits, which differ between the engines; with a clock that changes only between chunks
   * (and stimecmp only by a CSR write, after which both engines return) it fires at the same
   * instruction on both, so guests that use it (Linux) can be compared.
   */
  chunkClock?: boolean;
  /**
   * Coarse: translations are made by the VM's translator thread while the hart interprets on, as
   * in real runs (installed whenever they arrive), instead of at once on the hart's thread. Runs no
   * longer repeat exactly, so a divergence found may not narrow down.
   */
  asyncTranslation?: boolean;
  /** Coarse: the largest chunk, in instructions; sizes are log-uniform in 1..maxChunk (default 4096). */
  maxChunk?: number;
  /** Coarse: the translator's threshold (JitOptions.threshold, default 1: nearly every page translated). */
  jitThreshold?: number;
  /**
   * Coarse: JitOptions.extraEntries percent (seeded by chunkSeed): translations get entries at
   * random offsets too, as a long run learns them (inside loops, on back edges). Default 0.
   */
  extraEntries?: number;
  /**
   * Coarse: called after every chunk (1 = the first), once both machines retired as many
   * instructions, before the comparison; again at the same chunk whenever a divergence is narrowed
   * down (replays), also for the shortened probes of the failing chunk. Tests corrupt the jit
   * machine here to check that the detector works.
   */
  onChunk?: (chunk: number, machines: MachinePair) => void;
}

export type DivergenceKind = "pc" | "priv" | "register" | "fregister" | "csr" | "memory" | "exit" | "retired";

export interface Divergence {
  /**
   * The step that diverged (1 = the first instruction). Coarse: the instructions retired when the
   * difference was seen (the end of `chunk.spanStart..step`).
   */
  step: number;
  /** What differs: pc, priv, a register (x1..x31, f0..f31), a CSR, a RAM byte, the exit, instructions retired. */
  kind: DivergenceKind;
  /** Register number (kinds "register", "fregister"), CSR name (kind "csr"), guest-physical address (kind "memory"). */
  register?: number;
  csr?: string;
  address?: number;
  /** The differing values: interpreter, translator (for memory: the byte; word: the aligned 8 bytes). */
  interp: bigint;
  jit: bigint;
  word?: { address: number; interp: bigint; jit: bigint };
  /** pc and privilege of the instruction the step ran (as the interpreter saw it). */
  pc: bigint;
  priv: number;
  /** That instruction, disassembled ("sd s1, 8(s10)"). */
  instruction: string;
  /** The instructions of the steps before it, oldest first ("0x80000010: addi a0, a0, 1"). */
  recent: string[];
  /** The instruction read the guest clock, which is virtual and identical on both engines here. */
  note?: string;
  /** True when the step was narrowed down exactly (memory/CSR divergences found at a checkpoint). */
  exact: boolean;
  /** Coarse mode: where it was found and how far it was narrowed down (see ChunkInfo). */
  chunk?: ChunkInfo;
}

/**
 * Where a coarse divergence was found. The states agreed after chunk `chunk - 1` (`start`
 * instructions, at `startPc`) and differed after chunk `chunk`. Rerun from the start with shorter
 * budgets for that chunk, they still differ with `narrowedBudget` and agree with one less: so the
 * difference arose among the instructions spanStart+1..step, which the translator ran without
 * returning in between (a straight run or one round of a loop). `pc`/`instruction` of the
 * Divergence name the suspect: the last instruction of that span (as the interpreter ran it) that
 * writes what differs, else the span's last instruction; `recent` lists the span before it.
 */
export interface ChunkInfo {
  chunk: number;
  /** The chunk's budget in the run (`budget` of the translator's hart.run), and the narrowed one. */
  budget: number;
  narrowedBudget: number;
  /** Instructions retired before the chunk, and where it began. */
  start: number;
  startPc: bigint;
  startPriv: number;
  spanStart: number;
  /** False when the replays did not repeat the divergence (not narrowed: reported as first seen). */
  narrowed: boolean;
  /** The seed of the chunk sizes (DifftestOptions.chunkSeed), to repeat the run. */
  chunkSeed: number;
}

export interface DifftestResult {
  /** Steps compared (coarse: chunks). */
  steps: number;
  /** Instructions retired by the interpreter's hart. */
  instructions: number;
  /** Why the comparison ended. */
  end: "exit" | "max-steps" | "divergence";
  /** The guest's exit code (finisher), when it exited on both. */
  exitCode?: number;
  divergence?: Divergence;
  /**
   * With `resync`: steps in which one engine retired more than one instruction (see the header).
   * Coarse: chunks that ended on a trap the translator took past its budget, settled by one more step.
   */
  resyncs: number;
  milliseconds: number;
}

const DEFAULT_MAX_STEPS = 10_000_000;
const DEFAULT_CHECK_EVERY = 100_000;
const DEFAULT_TICK_EVERY = 1000;
const RECENT = 8;
const PROGRESS_EVERY = 1 << 16;
/** Steps after a resynchronised step in which the machines may still differ (see Lockstep.advance). */
const SETTLE_STEPS = 4;
/** Compares made per replay pass when narrowing a checkpoint divergence down on a large RAM. */
const NARROWING_POINTS = 32;

/** The CSRs compared at checkpoints (they live in host objects, not in the hart's shared slots). */
const CSRS = [
  "mstatus", "medeleg", "mideleg", "mie", "mtvec", "mscratch", "mepc", "mcause", "mtval", "menvcfg",
  "stvec", "sscratch", "sepc", "scause", "stval", "satp", "stimecmp",
] as const;

const ABI = [
  "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
  "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
];

/** What differs, before it is placed (step, instruction) by Lockstep.report. */
type Found = Omit<Divergence, "step" | "pc" | "priv" | "instruction" | "recent" | "exact">;

/** Loads the guest into a fresh machine and sets its harts at the entry. */
type Setup = (machine: Machine) => void;

const hex = (v: bigint | number) => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;

const IMMEDIATE_FORMS = new Set([
  "addi", "slti", "sltiu", "xori", "ori", "andi", "addiw", "slli", "srli", "srai", "slliw", "srliw", "sraiw",
]);

/** An instruction in assembly-like syntax (operands of compressed ones are shown expanded). */
export function disassemble(d: Decoded, pc?: bigint): string {
  const name = (d.length === 2 ? "c." : "") + d.name;
  const row = INSTRUCTIONS[d.op - 1];
  const fp = row?.fpRegs ?? 0;
  const reg = (index: number, bit: number) => (fp & bit ? `f${index}` : ABI[index]);
  const [rd, rs1, rs2] = [reg(d.rd, FpRegs.RD), reg(d.rs1, FpRegs.RS1), reg(d.rs2, FpRegs.RS2)];
  const n = d.name;
  if (d.op === ILLEGAL_OP) return `illegal (${hex(d.raw)})`;
  if (/^fl[wd]$/.test(n)) return `${name} ${rd}, ${d.imm}(${rs1})`;
  if (/^fs[wd]$/.test(n)) return `${name} ${rs2}, ${d.imm}(${rs1})`;
  if (row?.format === "R4") return `${name} ${rd}, ${rs1}, ${rs2}, f${d.imm >>> 3}, rm ${d.imm & 7}`;
  if (row?.format === "RM") return `${name} ${rd}, ${rs1}${fp & FpRegs.RS2 ? `, ${rs2}` : ""}, rm ${d.imm}`;
  if (n.startsWith("lr.")) return `${name} ${rd}, (${rs1})`;
  if (n.startsWith("sc.") || n.startsWith("amo")) return `${name} ${rd}, ${rs2}, (${rs1})`;
  if (/^l[bhwd]u?$/.test(n)) return `${name} ${rd}, ${d.imm}(${rs1})`;
  if (/^s[bhwd]$/.test(n)) return `${name} ${rs2}, ${d.imm}(${rs1})`;
  const target = (offset: number) => (pc === undefined ? `pc${offset < 0 ? "" : "+"}${offset}` : hex(pc + BigInt(offset)));
  if (/^b(eq|ne|lt|ge|ltu|geu)$/.test(n)) return `${name} ${rs1}, ${rs2}, ${target(d.imm)}`;
  if (n === "jal") return `${name} ${rd}, ${target(d.imm)}`;
  if (n === "jalr") return `${name} ${rd}, ${d.imm}(${rs1})`;
  if (n === "lui" || n === "auipc") return `${name} ${rd}, ${hex((d.imm >>> 12) & 0xfffff)}`;
  if (n.startsWith("csr")) return `${name} ${rd}, ${hex(d.imm)}, ${n.endsWith("i") ? d.rs1 : rs1}`;
  if (["fence", "fence.i", "ecall", "ebreak", "mret", "sret", "wfi"].includes(n)) return name;
  if (n === "sfence.vma") return `${name} ${rs1}, ${rs2}`;
  if (IMMEDIATE_FORMS.has(n)) return `${name} ${rd}, ${rs1}, ${d.imm}`;
  return `${name} ${rd}, ${rs1}, ${rs2}`;
}

/** Guest-physical address of a fetch at `pc` (read-only Sv39 walk, no A/D updates), if mapped. */
function fetchAddress(machine: Machine, hart: Hart, pc: bigint, priv: number): bigint | undefined {
  const satp = hart.csrs.satp;
  if (priv === 3 || satp >> 60n === 0n) return pc;
  const ppnMask = (1n << 44n) - 1n;
  let table = (satp & ppnMask) << 12n;
  for (let level = 2; level >= 0; level--) {
    const pte = readU64(machine, table + ((pc >> BigInt(12 + 9 * level)) & 0x1ffn) * 8n);
    if (pte === undefined || (pte & 1n) === 0n) return undefined;
    const next = ((pte >> 10n) & ppnMask) << 12n;
    if (pte & 0xan) {
      const within = (1n << BigInt(12 + 9 * level)) - 1n;
      return (next & ~within) | (pc & within);
    }
    table = next;
  }
  return undefined;
}

function readU64(machine: Machine, gpa: bigint): bigint | undefined {
  try {
    const b = machine.readRam(Number(gpa), 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  } catch {
    return undefined;
  }
}

/** The instruction at pc as the hart would fetch it, decoded, or undefined when unreadable. */
function instructionAt(machine: Machine, hart: Hart, pc: bigint, priv: number): Decoded | undefined {
  const low = fetchAddress(machine, hart, pc, priv);
  if (low === undefined) return undefined;
  try {
    let raw = machine.readRam(Number(low), 2);
    let bits = raw[0]! | (raw[1]! << 8);
    if ((bits & 3) === 3) {
      const high = fetchAddress(machine, hart, pc + 2n, priv);
      if (high === undefined) return undefined;
      raw = machine.readRam(Number(high), 2);
      bits = (bits | (raw[0]! << 16) | (raw[1]! << 24)) >>> 0;
    }
    return decode(bits);
  } catch {
    return undefined;
  }
}

const CLOCK_CSRS = new Set([0xc00, 0xc01, 0xb00]); // cycle, time, mcycle

/** RAM of `machine` through the p2m: the host bytes of each guest page. */
function ramPage(machine: Machine, page: number): Uint8Array {
  const frame = machine.physicalMap.frameOf(page);
  return new Uint8Array(machine.memory.buffer, frame * PAGE_SIZE, PAGE_SIZE);
}

/** The first guest-physical address whose byte differs between the two machines' RAM, if any. */
export function firstRamDifference(a: Machine, b: Machine): number | undefined {
  const pages = a.layout.ramSize / PAGE_SIZE;
  const identity = (m: Machine) => {
    for (let page = 0; page < pages; page++) if (m.physicalMap.frameOf(page) !== page) return false;
    return true;
  };
  if (identity(a) && identity(b)) {
    // One comparison of the whole RAM (the usual case: no page was ever remapped).
    const whole = (m: Machine) => Buffer.from(m.memory.buffer, m.layout.ramOffset, m.layout.ramSize);
    if (whole(a).equals(whole(b))) return undefined;
  }
  for (let page = 0; page < pages; page++) {
    const x = ramPage(a, page);
    const y = ramPage(b, page);
    if (Buffer.compare(x, y) === 0) continue;
    for (let i = 0; i < PAGE_SIZE; i++) if (x[i] !== y[i]) return RAM_BASE + page * PAGE_SIZE + i;
  }
  return undefined;
}

/** The interpreter's machine and the translator's, loaded with the same guest, and comparisons of their state. */
class Pair {
  readonly machines: MachinePair;
  protected readonly a: Hart;
  protected readonly b: Hart;
  protected readonly wa: Int32Array;
  protected readonly wb: Int32Array;
  protected readonly baseA: number;
  protected readonly baseB: number;
  private readonly stopA: number;
  private readonly stopB: number;

  constructor(setup: Setup, ramSize: number, jitEngine: EngineChoice) {
    const make = (engine: EngineChoice) => {
      const machine = new Machine({ ramSize, harts: 1, engine, output: () => {} });
      setup(machine);
      const hart = machine.harts[0]!;
      // The virtual clock: one tick per instruction retired before the one reading it (see the
      // header), counting those the engine retired in the current call (as instret does).
      const view = new DataView(machine.memory.buffer);
      machine.clint.mtime = () => BigInt(hart.retired) + view.getBigUint64(hart.base + HartSlot.RETIRED, true);
      return machine;
    };
    this.machines = { interp: make({ kind: "interp" }), jit: make(jitEngine) };
    this.a = this.machines.interp.harts[0]!;
    this.b = this.machines.jit.harts[0]!;
    this.wa = new Int32Array(this.machines.interp.memory.buffer);
    this.wb = new Int32Array(this.machines.jit.memory.buffer);
    this.baseA = this.a.base >>> 2;
    this.baseB = this.b.base >>> 2;
    this.stopA = (this.machines.interp.layout.controlOffset + ControlSlot.STOP) >>> 2;
    this.stopB = (this.machines.jit.layout.controlOffset + ControlSlot.STOP) >>> 2;
  }

  /** Instructions retired by the interpreter's hart. */
  get instructions(): number {
    return this.a.retired;
  }

  /** Compare pc, x1..x31 and priv, and whether the guest exited. */
  compareHarts(): Found | "exit" | undefined {
    const { wa, wb, baseA, baseB, a, b } = this;
    // pc (two words), then x1..x31, then priv: the words are compared before any BigInt is made.
    const pc = HartSlot.PC >> 2;
    if (wa[baseA + pc] !== wb[baseB + pc] || wa[baseA + pc + 1] !== wb[baseB + pc + 1]) {
      return { kind: "pc", interp: a.pc, jit: b.pc };
    }
    for (let w = 2; w < 64; w++) {
      if (wa[baseA + w] !== wb[baseB + w]) {
        const register = w >> 1;
        return { kind: "register", register, interp: a.x(register), jit: b.x(register) };
      }
    }
    // f0..f31, then fcsr and mstatus.FS (kept in the hart's slots, where the engines update them).
    for (let w = 0; w < 64; w++) {
      const at = (F_REGS_OFFSET >> 2) + w;
      if (wa[baseA + at] !== wb[baseB + at]) {
        const register = w >> 1;
        return { kind: "fregister", register, interp: a.f(register), jit: b.f(register) };
      }
    }
    for (const [slot, csr] of [[HartSlot.FCSR, "fcsr"], [HartSlot.FS, "mstatus.FS"]] as const) {
      if (wa[baseA + (slot >> 2)] !== wb[baseB + (slot >> 2)]) {
        return { kind: "csr", csr, interp: BigInt(wa[baseA + (slot >> 2)]!), jit: BigInt(wb[baseB + (slot >> 2)]!) };
      }
    }
    const priv = HartSlot.PRIV >> 2;
    if (wa[baseA + priv] !== wb[baseB + priv]) return { kind: "priv", interp: BigInt(a.priv), jit: BigInt(b.priv) };
    const stopped = wa[this.stopA]! | wb[this.stopB]!;
    if (stopped !== 0) {
      const code = (w: Int32Array, stop: number) => (w[stop] ? w[stop + (ControlSlot.EXIT_CODE >> 2)]! : -1);
      const [x, y] = [code(wa, this.stopA), code(wb, this.stopB)];
      if (x !== y) return { kind: "exit", interp: BigInt(x), jit: BigInt(y) };
      return "exit";
    }
    return undefined;
  }

  /** The guest's exit code (once stopped). */
  exitCode(): number {
    return this.wa[this.stopA + (ControlSlot.EXIT_CODE >> 2)]!;
  }

  /** Compare the CSRs (they live in host objects, not in the hart's shared slots) and mip. */
  compareCsrs(): Found | undefined {
    const ca = this.a.csrs;
    const cb = this.b.csrs;
    for (const csr of CSRS) {
      if (ca[csr] !== cb[csr]) return { kind: "csr", csr, interp: BigInt(ca[csr]), jit: BigInt(cb[csr]) };
    }
    const mip = HartSlot.MIP >> 2;
    if (this.wa[this.baseA + mip] !== this.wb[this.baseB + mip]) {
      return { kind: "csr", csr: "mip", interp: BigInt(this.a.mip), jit: BigInt(this.b.mip) };
    }
    return undefined;
  }

  /** Compare all of RAM. */
  compareRam(): Found | undefined {
    const address = firstRamDifference(this.machines.interp, this.machines.jit);
    if (address === undefined) return undefined;
    const aligned = address - (address % 8);
    const word = (m: Machine) => {
      const bytes = m.readRam(aligned, Math.min(8, RAM_BASE + m.layout.ramSize - aligned));
      let v = 0n;
      bytes.forEach((byte, i) => (v |= BigInt(byte) << BigInt(8 * i)));
      return v;
    };
    return {
      kind: "memory",
      address,
      interp: BigInt(this.machines.interp.readRam(address, 1)[0]!),
      jit: BigInt(this.machines.jit.readRam(address, 1)[0]!),
      word: { address: aligned, interp: word(this.machines.interp), jit: word(this.machines.jit) },
    };
  }

  /** Compare CSRs and RAM (the expensive part of the state). */
  compareCheckpoint(): Found | undefined {
    return this.compareCsrs() ?? this.compareRam();
  }

  /** An instruction as the interpreter's hart would fetch it, disassembled, and decoded. */
  protected describe(pc: bigint, priv: number): { d: Decoded | undefined; text: string } {
    const d = instructionAt(this.machines.interp, this.a, pc, priv);
    return { d, text: d ? disassemble(d, pc) : "(unreadable)" };
  }
}

/** One pair of machines stepped in lockstep. */
class Lockstep extends Pair {
  /** pc (two words) and privilege before each of the last RECENT steps. */
  private readonly ring = new Int32Array(RECENT * 3);
  step = 0;
  resyncs = 0;

  constructor(setup: Setup, private readonly options: Required<Pick<DifftestOptions, "ramSize" | "tickEvery">> & DifftestOptions) {
    super(setup, options.ramSize, { kind: "jit", threshold: 0, lockstep: true });
  }

  /** Steps left in which a difference is tolerated after a resynchronised step (see `advance`). */
  private grace = 0;

  /** False while the two machines may still be catching up with each other after a resync. */
  get settled(): boolean {
    return this.grace === 0;
  }

  /**
   * Run one step on both machines; returns a register-level divergence, "exit", or undefined.
   *
   * When one engine retired more than one instruction, the other is stepped until both retired as
   * many. They can still differ for a few steps: the faster one may have taken a trap (which
   * retires nothing) that the other takes only with its next instruction. So after a resync, or
   * when one machine stands at its trap vector and the other does not, differences are tolerated
   * for SETTLE_STEPS steps, until the states agree again (only with `resync`).
   */
  advance(): Found | "exit" | undefined {
    const { wa, baseA, a, b } = this;
    const slot = (this.step % RECENT) * 3;
    this.ring[slot] = wa[baseA + (HartSlot.PC >> 2)]!;
    this.ring[slot + 1] = wa[baseA + (HartSlot.PC >> 2) + 1]!;
    this.ring[slot + 2] = wa[baseA + (HartSlot.PRIV >> 2)]!;
    this.step++;
    stepHart(a);
    stepHart(b);
    this.options.onStep?.(this.step, this.machines);
    if (a.retired !== b.retired) {
      if (!this.options.resync) return { kind: "retired", interp: BigInt(a.retired), jit: BigInt(b.retired) };
      this.resyncs++;
      this.grace = SETTLE_STEPS;
      for (let guard = 0; a.retired !== b.retired && guard < 64; guard++) stepHart(a.retired < b.retired ? a : b);
      if (a.retired !== b.retired) return { kind: "retired", interp: BigInt(a.retired), jit: BigInt(b.retired) };
    }
    if (this.step % this.options.tickEvery === 0) {
      this.machines.interp.bus.tick();
      this.machines.jit.bus.tick();
    }
    const found = this.compareHarts();
    if (found === undefined || found === "exit") {
      this.grace = 0;
      return found;
    }
    if (this.grace > 0) {
      this.grace--;
      return undefined;
    }
    if (this.options.resync && found.kind === "pc" && (atTrapVector(a) || atTrapVector(b))) {
      // One engine ran on into an instruction that trapped (retiring nothing) within the step.
      this.resyncs++;
      this.grace = SETTLE_STEPS - 1;
      return undefined;
    }
    return found;
  }

  /** Describe the divergence found at the current step. */
  report(found: Found, exact: boolean): Divergence {
    const entries: { pc: bigint; priv: number }[] = [];
    for (let i = Math.max(0, this.step - RECENT); i < this.step; i++) {
      const slot = (i % RECENT) * 3;
      const pc = (BigInt(this.ring[slot + 1]! >>> 0) << 32n) | BigInt(this.ring[slot]! >>> 0);
      entries.push({ pc, priv: this.ring[slot + 2]! });
    }
    const describe = (e: { pc: bigint; priv: number }) => this.describe(e.pc, e.priv);
    const last = entries.at(-1) ?? { pc: this.a.pc, priv: this.a.priv };
    const { d, text } = describe(last);
    const readsClock = d?.name.startsWith("csr") && CLOCK_CSRS.has(d.imm);
    return {
      ...found,
      step: this.step,
      pc: last.pc,
      priv: last.priv,
      instruction: text,
      recent: entries.slice(0, -1).map((e) => `${hex(e.pc)}: ${describe(e).text}`),
      note: readsClock ? "the instruction read the guest clock (virtual here: instructions retired, identical on both engines)" : undefined,
      exact,
    };
  }
}

/** Whether the hart stands at the entry of its M- or S-mode trap handler. */
function atTrapVector(hart: Hart): boolean {
  const pc = hart.pc;
  return pc === (hart.csrs.mtvec & ~3n) || pc === (hart.csrs.stvec & ~3n);
}

/** One instruction (a trap taken on the way is part of it); a few tries when a host request intervenes. */
function stepHart(hart: Hart): void {
  for (let i = 0; i < 4; i++) if (hart.run(1) > 0) return;
}

function resolved(options: DifftestOptions, ramSize: number) {
  return {
    ...options,
    ramSize: options.ramSize ?? ramSize,
    tickEvery: options.tickEvery ?? DEFAULT_TICK_EVERY,
    maxSteps: options.maxSteps ?? DEFAULT_MAX_STEPS,
    memoryCheckEvery: options.memoryCheckEvery ?? DEFAULT_CHECK_EVERY,
  };
}

/** Run `setup`'s guest on both engines in lockstep until it exits, diverges, or maxSteps. */
function compare(setup: Setup, options: ReturnType<typeof resolved>): { result: DifftestResult; machines: MachinePair } {
  if (options.coarse) return compareCoarse(setup, options);
  const started = performance.now();
  const run = new Lockstep(setup, options);
  let lastGood = 0;
  let end: DifftestResult["end"] = "max-steps";
  let divergence: Divergence | undefined;
  let checkpointDue = false;
  const checkpoint = (): Divergence | undefined => {
    const found = run.compareCheckpoint();
    if (!found) {
      lastGood = run.step;
      return undefined;
    }
    return narrow(setup, options, lastGood, run.step) ?? run.report(found, lastGood === run.step - 1);
  };
  while (run.step < options.maxSteps) {
    const found = run.advance();
    if (found === "exit") {
      end = "exit";
      break;
    }
    if (found) {
      divergence = run.report(found, true);
      // A memory or CSR difference may have come first, unseen since the last checkpoint.
      if (run.step - 1 > lastGood && run.compareCheckpoint()) {
        const earlier = narrow(setup, options, lastGood, run.step);
        if (earlier && earlier.step < divergence.step) divergence = earlier;
      }
      break;
    }
    if (run.step % PROGRESS_EVERY === 0) options.progress?.(run.step);
    if (run.step % options.memoryCheckEvery === 0) checkpointDue = true;
    if (checkpointDue && run.settled) {
      checkpointDue = false;
      if ((divergence = checkpoint())) break;
    }
  }
  if (!divergence && run.step !== lastGood) divergence = checkpoint();
  if (divergence) end = "divergence";
  const result: DifftestResult = {
    steps: run.step,
    instructions: run.instructions,
    end,
    exitCode: end === "exit" ? run.exitCode() : undefined,
    divergence,
    resyncs: run.resyncs,
    milliseconds: performance.now() - started,
  };
  return { result, machines: run.machines };
}

/**
 * The state (CSRs, RAM) agreed after step `good` and differed after step `bad`: run again from the
 * start and compare more often inside (good, bad] until the first differing step is found.
 */
function narrow(setup: Setup, options: ReturnType<typeof resolved>, good: number, bad: number): Divergence | undefined {
  // Per-step comparisons are cheap on a small RAM; on a large one, NARROWING_POINTS per pass.
  const points = options.ramSize <= 8 << 20 ? Infinity : NARROWING_POINTS;
  for (;;) {
    const run = new Lockstep(setup, options);
    // Steps before `bad` ran without incident the first time; if one does not now, the run is not
    // reproducible and the caller reports what it saw. At `bad` itself the registers may differ too.
    const advance = (to: number) => {
      while (run.step < to) if (run.advance() && run.step < bad) return false;
      return true;
    };
    if (!advance(good)) return undefined;
    const stride = Math.max(1, Math.ceil((bad - good) / points));
    for (;;) {
      if (!advance(Math.min(bad, run.step + stride))) return undefined;
      // Compare only where the machines agree on the instruction boundary (see Lockstep.advance).
      while (!run.settled && run.step < bad) if (!advance(run.step + 1)) return undefined;
      const found = run.compareCheckpoint();
      if (found && stride === 1) return run.report(found, true);
      if (found) {
        bad = run.step;
        break;
      }
      good = run.step;
      if (run.step >= bad) return undefined; // it did not happen again
    }
  }
}

// --- coarse mode ----------------------------------------------------------------------------------

export const DEFAULT_MAX_CHUNK = 4096;
export const DEFAULT_COARSE_THRESHOLD = 1;
/** Instructions of a narrowed span listed in a coarse report (the last ones before the suspect). */
const SPAN_LISTED = 12;
/** Chunks in a row in which neither machine retires anything before a coarse run gives up. */
const IDLE_CHUNKS = 1000;

type Resolved = ReturnType<typeof resolved>;

/** The two machines of coarse mode: the translator's runs chunks, the interpreter's catches up. */
class Coarse extends Pair {
  /** Chunks run. */
  chunk = 0;
  /** Chunks that ended on a trap the translator took past its budget, settled (see `advance`). */
  settles = 0;
  private readonly sizes: Random;
  private readonly chunkBits: number;
  /** The guest clock under `chunkClock`. */
  private clock = 0n;

  constructor(setup: Setup, private readonly options: Resolved) {
    const percent = options.extraEntries ?? 0;
    super(setup, options.ramSize, {
      kind: "jit",
      threshold: options.jitThreshold ?? DEFAULT_COARSE_THRESHOLD,
      synchronous: options.asyncTranslation !== true,
      ...(percent > 0 ? { extraEntries: { seed: options.chunkSeed ?? 1, percent } } : {}),
    });
    if (options.chunkClock) for (const machine of [this.machines.interp, this.machines.jit]) machine.clint.mtime = () => this.clock;
    this.sizes = new Random(options.chunkSeed ?? 1);
    this.chunkBits = Math.log2((options.maxChunk ?? DEFAULT_MAX_CHUNK) + 1);
  }

  /** Budget of the next chunk: log-uniform in 1..maxChunk, so that boundaries land everywhere. */
  private nextBudget(): number {
    return Math.floor(2 ** ((this.sizes.u32() / 2 ** 32) * this.chunkBits));
  }

  /**
   * Run the next chunk: the translator's hart.run(budget) (it may retire more: translated code checks
   * its budget only at loop back edges and its dispatch), then the interpreter's, whose run(n) is
   * exact, until it retired as many. `budget` replaces the chunk's own (narrowing), which is still
   * drawn so that the chunks after it keep theirs. A "retired" difference when the interpreter
   * cannot catch up.
   */
  advance(budget?: number): { found?: Found; budget: number } {
    const drawn = this.nextBudget();
    const { a, b } = this;
    const before = b.retired;
    this.clock = BigInt(before);
    b.run(budget ?? drawn);
    this.catchUp();
    // Past its budget, the translator may have run into an instruction that traps (a trap retires
    // nothing) and taken the trap, where the interpreter stopped before it: both are right at this
    // count. Settle by one more run(1) of the translator (the interpreter then takes the trap too).
    for (let i = 0; i < SETTLE_STEPS && a.retired === b.retired && !this.samePc() && atTrapVector(b) && !atTrapVector(a); i++) {
      this.settles++;
      b.run(1);
      this.catchUp();
    }
    // (A catch-up that ran nothing left the interpreter's timer unevaluated at this clock.)
    if (this.options.chunkClock) for (const hart of [a, b]) hart.updateSupervisorTimer();
    const target = b.retired;
    this.chunk++;
    const tickEvery = this.options.tickEvery;
    if (Math.floor(target / tickEvery) !== Math.floor(before / tickEvery)) {
      this.machines.interp.bus.tick();
      this.machines.jit.bus.tick();
    }
    this.options.onChunk?.(this.chunk, this.machines);
    if (a.retired !== b.retired) return { found: { kind: "retired", interp: BigInt(a.retired), jit: BigInt(b.retired) }, budget: drawn };
    return { budget: drawn };
  }

  /** Run the interpreter's hart (whose run(n) is exact) until it retired as many as the translator's. */
  private catchUp(): void {
    const { a, b } = this;
    for (let idle = 0; a.retired < b.retired && idle < 2; ) if (a.run(b.retired - a.retired) === 0) idle++;
  }

  private samePc(): boolean {
    const pc = HartSlot.PC >> 2;
    return this.wa[this.baseA + pc] === this.wb[this.baseB + pc] && this.wa[this.baseA + pc + 1] === this.wb[this.baseB + pc + 1];
  }

  /** Run chunks (not compared) until `chunk` have run: a replay of a deterministic run. */
  replayTo(chunk: number): void {
    while (this.chunk < chunk) this.advance();
  }

  /** Compare pc, registers, priv, CSRs, and RAM when `ram`; "exit" when both stopped alike. */
  compare(ram: boolean): Found | "exit" | undefined {
    const harts = this.compareHarts();
    if (harts !== undefined && harts !== "exit") return harts;
    return this.compareCsrs() ?? (ram || harts === "exit" ? this.compareRam() : undefined) ?? harts;
  }

  /** Where the interpreter's hart stands. */
  position(): { retired: number; pc: bigint; priv: number } {
    return { retired: this.a.retired, pc: this.a.pc, priv: this.a.priv };
  }

  /**
   * Step the interpreter's hart alone from here to `end` instructions and describe the last
   * instructions from `from` on: the span of a narrowed divergence. The suspect is the last
   * instruction of the span that writes what differs (a register, CSR, or the RAM byte), else the
   * last one.
   */
  traceSpan(from: number, end: number, found: Found): { suspect: SpanEntry; recent: SpanEntry[]; note?: string } {
    const span: SpanEntry[] = [];
    let suspect: SpanEntry | undefined;
    const a = this.a;
    // (Each step retires one instruction, a few tries when a host request intervenes: bounded.)
    for (let guard = 4 * (end - a.retired) + 16; a.retired < end && guard > 0; guard--) {
      const at = a.retired;
      const pc = a.pc;
      const priv = a.priv;
      const { d, text } = at >= from ? this.describe(pc, priv) : { d: undefined, text: "" };
      const writes = at >= from && d !== undefined && this.writes(d, found, priv);
      stepHart(a);
      if (at < from) continue;
      const entry = { pc, priv, text };
      span.push(entry);
      if (writes) suspect = entry;
    }
    const chosen = suspect ?? span.at(-1) ?? { pc: a.pc, priv: a.priv, text: this.describe(a.pc, a.priv).text };
    const index = span.lastIndexOf(chosen);
    const recent = (index < 0 ? span : span.slice(0, index)).slice(-SPAN_LISTED);
    const what = found.kind === "register" ? `x${found.register}` : found.kind === "fregister" ? `f${found.register}`
      : found.kind === "csr" ? found.csr : found.kind === "memory" ? "that byte" : undefined;
    const note =
      suspect ? `the last instruction of the span that writes ${what} (the span has ${span.length})`
      : what ? `no instruction of the span writes ${what} (as the interpreter ran it): its last one is shown`
      : undefined;
    return { suspect: chosen, recent, note };
  }

  /** Whether instruction `d`, about to run on the interpreter's hart, writes what `found` names. */
  private writes(d: Decoded, found: Found, priv: number): boolean {
    const n = d.name;
    if (d.op === ILLEGAL_OP) return false;
    const fpRd = ((INSTRUCTIONS[d.op - 1]?.fpRegs ?? 0) & FpRegs.RD) !== 0;
    if (found.kind === "register") {
      if (d.rd !== found.register || fpRd || /^(s[bhwd]|fs[wd]|b.*|fence.*|ecall|ebreak|mret|sret|wfi|sfence\.vma)$/.test(n)) return false;
      return true;
    }
    if (found.kind === "fregister") return fpRd && d.rd === found.register;
    if (found.kind === "csr") return n.startsWith("csr") && CSR_NUMBERS.get(found.csr!) === d.imm;
    if (found.kind !== "memory") return false;
    const width = /^s[bhwd]$/.test(n) ? ({ b: 1, h: 2, w: 4, d: 8 } as const)[n[1] as "b"] : /^(amo|sc)/.test(n) ? (n.endsWith(".d") ? 8 : 4) : 0;
    if (width === 0) return false;
    const address = BigInt.asUintN(64, this.a.x(d.rs1) + BigInt(n.startsWith("s") && !n.startsWith("sc") ? d.imm : 0));
    // Where the bytes land: through a read-only Sv39 walk (as fetches; MPRV not considered).
    for (let i = 0; i < width; i++) {
      const physical = fetchAddress(this.machines.interp, this.a, address + BigInt(i), priv);
      if (physical !== undefined && Number(physical) === found.address) return true;
    }
    return false;
  }
}

interface SpanEntry {
  pc: bigint;
  priv: number;
  text: string;
}

const CSR_NUMBERS = new Map<string, number>(Object.entries(CsrNumber));

/** Run `setup`'s guest in coarse mode until it exits, diverges, or maxSteps instructions. */
function compareCoarse(setup: Setup, options: Resolved): { result: DifftestResult; machines: MachinePair } {
  const started = performance.now();
  const run = new Coarse(setup, options);
  /** The last chunk after which the whole state, RAM included, agreed. */
  let lastFull = 0;
  let nextRam = options.memoryCheckEvery;
  let nextProgress = PROGRESS_EVERY;
  let idle = 0;
  let end: DifftestResult["end"] = "max-steps";
  let found: Found | undefined;
  while (run.instructions < options.maxSteps && idle < IDLE_CHUNKS) {
    const before = run.instructions;
    const chunk = run.advance();
    const ram = run.instructions >= nextRam || run.instructions >= options.maxSteps;
    const compared = chunk.found ?? run.compare(ram);
    if (compared === "exit") {
      lastFull = run.chunk;
      end = "exit";
      break;
    }
    if (compared) {
      found = compared;
      break;
    }
    if (ram) {
      lastFull = run.chunk;
      nextRam = run.instructions + options.memoryCheckEvery;
    }
    idle = run.instructions === before ? idle + 1 : 0;
    if (run.instructions >= nextProgress) {
      options.progress?.(run.instructions);
      nextProgress = run.instructions + PROGRESS_EVERY;
    }
  }
  if (!found && lastFull !== run.chunk) found = run.compareCheckpoint();
  const divergence = found && narrowCoarse(setup, options, lastFull, run, found);
  const result: DifftestResult = {
    steps: run.chunk,
    instructions: run.instructions,
    end: divergence ? "divergence" : end,
    exitCode: !divergence && end === "exit" ? run.exitCode() : undefined,
    divergence,
    resyncs: run.settles,
    milliseconds: performance.now() - started,
  };
  return { result, machines: run.machines };
}

/**
 * The whole state agreed after chunk `good` and `found` differed after chunk `bad.chunk`: find the
 * first chunk after which anything differs (replaying from the start, comparing everything after
 * each chunk from `good` on), then the smallest budget for that chunk with which the states still
 * differ (a bisection, each probe a replay), then trace the interpreter through the span between
 * the two budgets' ends (see ChunkInfo). The runs are deterministic (virtual clock, synchronous
 * translation), so the replays repeat the original run; when one does not, the divergence is
 * reported as found.
 */
function narrowCoarse(setup: Setup, options: Resolved, good: number, bad: Coarse, found: Found): Divergence {
  const seen = bad.position();
  const unnarrowed = (chunk: number, budget: number): Divergence => ({
    ...found, step: seen.retired, pc: seen.pc, priv: seen.priv, instruction: "(after the chunk: not narrowed)", recent: [],
    exact: false,
    chunk: {
      chunk, budget, narrowedBudget: budget, start: seen.retired, startPc: seen.pc, startPriv: seen.priv,
      spanStart: seen.retired, narrowed: false, chunkSeed: options.chunkSeed ?? 1,
    },
  });
  // The first chunk after which the state differs, its budget and the difference.
  let first = bad.chunk;
  let budget = 0;
  let difference: Found | undefined;
  {
    const replay = new Coarse(setup, options);
    replay.replayTo(good);
    while (replay.chunk < bad.chunk) {
      const chunk = replay.advance();
      const compared = chunk.found ?? replay.compare(true);
      if (compared && compared !== "exit") {
        first = replay.chunk;
        budget = chunk.budget;
        difference = compared;
        break;
      }
    }
    if (!difference) return unnarrowed(bad.chunk, budget);
  }
  // Probes: chunk `first` with a shorter budget, from a replay of the chunks before it.
  // (Only what the report needs is kept: two machines with a guest's RAM each are large.)
  const probes = new Map<number, { start: ReturnType<Coarse["position"]>; end: number; found?: Found }>();
  const probe = (b: number) => {
    const known = probes.get(b);
    if (known) return known;
    const replay = new Coarse(setup, options);
    replay.replayTo(first - 1);
    const start = replay.position();
    const chunk = replay.advance(b);
    const compared = chunk.found ?? replay.compare(true);
    const result = { start, end: replay.instructions, found: compared === "exit" ? undefined : compared };
    probes.set(b, result);
    return result;
  };
  let lo = 0;
  let hi = budget;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (probe(mid).found) hi = mid;
    else lo = mid;
  }
  const low = probe(lo);
  const high = probe(hi);
  if (!high.found) return unnarrowed(first, budget);
  difference = high.found;
  const spanStart = low.found ? low.start.retired : low.end;
  const end = high.end;
  // The interpreter alone through the span, from the start of the chunk.
  const tracer = new Coarse(setup, options);
  tracer.replayTo(first - 1);
  const { suspect, recent, note } = tracer.traceSpan(spanStart, end, difference);
  return {
    ...difference,
    step: end,
    pc: suspect.pc,
    priv: suspect.priv,
    instruction: suspect.text,
    recent: recent.map((e) => `${hex(e.pc)}: ${e.text}`),
    note,
    exact: end - spanStart === 1,
    chunk: {
      chunk: first, budget, narrowedBudget: hi, start: high.start.retired, startPc: high.start.pc, startPriv: high.start.priv,
      spanStart, narrowed: true, chunkSeed: options.chunkSeed ?? 1,
    },
  };
}

/** Compare an ELF guest (booted like `kmemvisor run --bios none`) on both engines. */
export function difftestGuest(elf: Uint8Array, options: DifftestOptions = {}, name = "guest"): DifftestResult {
  return difftestBoot({ bios: "none", kernel: { name, bytes: elf } }, options);
}

/** The same for any boot `run` can do: firmware (e.g. OpenSBI fw_jump), a raw kernel, a command line. */
export function difftestBoot(images: BootImages, options: DifftestOptions = {}): DifftestResult {
  const setup: Setup = (machine) => {
    const plan = planBoot(machine, images);
    machine.start(plan.start, BigInt(plan.fdtAddress), BigInt(plan.dynamicInfoAddress));
  };
  return compare(setup, resolved(options, 128 << 20)).result;
}

const priv = (p: number) => "USHM"[p] ?? String(p);

/** A human-readable report of a divergence, one line each. */
export function formatDivergence(d: Divergence): string[] {
  const what =
    d.kind === "register" ? `register x${d.register} (${ABI[d.register!]})`
    : d.kind === "fregister" ? `register f${d.register}`
    : d.kind === "csr" ? `CSR ${d.csr}`
    : d.kind === "memory" ? `memory at ${hex(d.address!)}`
    : d.kind === "exit" ? "exit code (-1 = still running)"
    : d.kind === "retired" ? "instructions retired in one step"
    : d.kind;
  const value = (v: bigint) => (d.kind === "retired" || d.kind === "exit" ? String(BigInt.asIntN(64, v)) : hex(v));
  const c = d.chunk;
  const where = c ? `after instruction ${d.step}` : `at step ${d.step}${d.exact ? "" : " (at or before)"}`;
  const lines = [`divergence ${where}: ${what}: interp ${value(d.interp)}, jit ${value(d.jit)}`];
  if (c) {
    lines.push(
      `  chunk ${c.chunk} (budget ${c.budget}, chunk seed ${c.chunkSeed}) from instruction ${c.start} at ${hex(c.startPc)} (priv ${priv(c.startPriv)})`,
      c.narrowed
        ? `  narrowed: agree with budget ${c.narrowedBudget - 1} (after instruction ${c.spanStart}), differ with ${c.narrowedBudget}: ` +
            `instructions ${c.spanStart + 1}..${d.step}, run by the translator without returning`
        : "  not narrowed: the replays did not repeat it",
    );
  }
  lines.push(`  ${c ? "suspect" : "instruction"}: ${hex(d.pc)}: ${d.instruction} (priv ${priv(d.priv)})`);
  if (d.word) lines.push(`  word at ${hex(d.word.address)}: interp ${hex(d.word.interp)}, jit ${hex(d.word.jit)}`);
  if (d.note) lines.push(`  note: ${d.note}`);
  if (d.recent.length > 0) lines.push(c ? "  the span before it:" : "  before it:", ...d.recent.map((r) => `    ${r}`));
  return lines;
}

// --- random instruction streams -------------------------------------------------------------------

/** sfc32: a small, fast, well-mixed 32-bit PRNG (deterministic from its seed). */
export class Random {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    this.s.set([0x9e3779b9, seed >>> 0, (seed / 2 ** 32) >>> 0, 0x6a09e667]);
    for (let i = 0; i < 16; i++) this.u32();
  }
  u32(): number {
    const s = this.s;
    const t = (((s[0]! + s[1]!) >>> 0) + s[3]!) >>> 0;
    s[3] = (s[3]! + 1) >>> 0;
    s[0] = s[1]! ^ (s[1]! >>> 9);
    s[1] = (s[2]! + (s[2]! << 3)) >>> 0;
    s[2] = ((s[2]! << 21) | (s[2]! >>> 11)) >>> 0;
    s[2] = (s[2]! + t) >>> 0;
    return t;
  }
  /** 0 <= n < bound */
  below(bound: number): number {
    return Math.floor((this.u32() / 2 ** 32) * bound);
  }
  /** lo <= n <= hi */
  between(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

/** Where a stream lives in guest RAM (RAM of a stream machine: STREAM_RAM bytes from RAM_BASE). */
export const STREAM_RAM = 1 << 20;
export const CODE = BigInt(RAM_BASE);
const HANDLER = BigInt(RAM_BASE + 0x4_0000);
export const SCRATCH = RAM_BASE + 0x8_0000;
export const SCRATCH_SIZE = 0x4000;

/**
 * Registers the random code never writes: sp and s10, s11, t3 point into the scratch area (bases of
 * loads, stores and atomics), s9 counts traps, t4 counts loop iterations, t5 and t6 belong to the
 * trap handler.
 */
const BASES = [A.R.sp, A.R.s10, A.R.s11, A.R.t3];
export const TRAPS = A.R.s9;
export const LOOPS = A.R.t4;
export const RESERVED = new Set<number>([0, ...BASES, TRAPS, LOOPS, A.R.t5, A.R.t6]);
export const WRITABLE = Array.from({ length: 32 }, (_, r) => r).filter((r) => !RESERVED.has(r));
/**
 * Registers that receive code addresses (return addresses of jumps, auipc for an indirect jump):
 * loads and stores "through any register" avoid them, so that the stream rarely overwrites its own
 * code (the rare case is fine: both engines must agree on self-modifying code too).
 */
const LINKS = [A.R.ra, A.R.t0];
const ANY_BASE = WRITABLE.filter((r) => !LINKS.includes(r as 1 | 5));
const COMPRESSED_REGS = [8, 9, 10, 11, 12, 13, 14, 15];

export const INTERESTING = [
  0n, 1n, 2n, -1n, -2n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn, 0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn,
  0x1_0000_0000n, -0x8000_0000n, 0x7fff_ffff_ffff_ffffn, -0x8000_0000_0000_0000n, 31n, 32n, 63n, 64n,
];

/** A piece of code: 32-bit words and 16-bit parcels, in order. */
export type Code = { bits: number; half: boolean }[];
export const words = (...ws: (number | number[])[]): Code => ws.flat().map((w) => ({ bits: w >>> 0, half: false }));
export const halves = (...hs: number[]): Code => hs.map((h) => ({ bits: h & 0xffff, half: true }));
export const sizeOf = (code: Code) => code.reduce((n, p) => n + (p.half ? 2 : 4), 0);

/** c.beqz / c.bnez rs1', offset (CB format). */
export function cBranch(nonZero: boolean, rs1: number, offset: number): number {
  if (rs1 < 8 || rs1 > 15 || offset % 2 !== 0 || offset < -256 || offset > 254) throw new RangeError(`c.b${nonZero ? "nez" : "eqz"} x${rs1}, ${offset}`);
  const o = offset & 0x1ff;
  const bit = (n: number) => (o >> n) & 1;
  return ((nonZero ? 7 : 6) << 13) | (bit(8) << 12) | (((o >> 3) & 3) << 10) | ((rs1 - 8) << 7) |
    (((o >> 6) & 3) << 5) | (((o >> 1) & 3) << 3) | (bit(5) << 2) | 1;
}

/** c.j offset (CJ format). */
export function cJump(offset: number): number {
  if (offset % 2 !== 0 || offset < -2048 || offset > 2046) throw new RangeError(`c.j ${offset}`);
  const o = offset & 0xfff;
  const bit = (n: number) => (o >> n) & 1;
  return (5 << 13) | (bit(11) << 12) | (bit(4) << 11) | (((o >> 8) & 3) << 9) | (bit(10) << 8) | (bit(6) << 7) |
    (bit(7) << 6) | (((o >> 1) & 7) << 3) | (bit(5) << 2) | 1;
}

export const ALU_R = [A.add, A.sub, A.sll, A.slt, A.sltu, A.xor, A.srl, A.sra, A.or, A.and, A.addw, A.subw, A.sllw, A.srlw, A.sraw];
const ALU_I = [A.addi, A.slti, A.sltiu, A.xori, A.ori, A.andi, A.addiw];
const SHIFTS: [typeof A.slli, number][] = [[A.slli, 63], [A.srli, 63], [A.srai, 63], [A.slliw, 31], [A.srliw, 31], [A.sraiw, 31]];
const MULDIV = [A.mul, A.mulh, A.mulhsu, A.mulhu, A.div, A.divu, A.rem, A.remu, A.mulw, A.divw, A.divuw, A.remw, A.remuw];
export const LOADS: [typeof A.ld, number][] = [[A.lb, 1], [A.lbu, 1], [A.lh, 2], [A.lhu, 2], [A.lw, 4], [A.lwu, 4], [A.ld, 8]];
export const STORES: [typeof A.sd, number][] = [[A.sb, 1], [A.sh, 2], [A.sw, 4], [A.sd, 8]];
const BRANCHES = [A.beq, A.bne, A.blt, A.bge, A.bltu, A.bgeu];
export const AMOS_W = [A.amoswap_w, A.amoadd_w, A.amoxor_w, A.amoand_w, A.amoor_w, A.amomin_w, A.amomax_w, A.amominu_w, A.amomaxu_w];
export const AMOS_D = [A.amoswap_d, A.amoadd_d, A.amoxor_d, A.amoand_d, A.amoor_d, A.amomin_d, A.amomax_d, A.amominu_d, A.amomaxu_d];
/** CSRs the stream reads (including one that does not exist: illegal instruction). */
const CSR_READS = [
  A.CSR.mscratch, A.CSR.mstatus, A.CSR.misa, A.CSR.mhartid, A.CSR.mcause, A.CSR.mepc, A.CSR.mtval, A.CSR.mtvec,
  A.CSR.minstret, A.CSR.instret, A.CSR.cycle, A.CSR.time, A.CSR.mie, A.CSR.mip, 0x7c0,
];
/** CSRs the stream writes: harmless to the handler, which rewrites mepc before mret. */
const CSR_WRITES = [A.CSR.mscratch, A.CSR.mepc, A.CSR.mcause, A.CSR.mtval, A.CSR.mhartid /* read-only: illegal */];
const CODE_CSRS: readonly number[] = [A.CSR.mtvec, A.CSR.mepc, A.CSR.mtval];
/** The F and D rows (their rs2 field is free only where the mask leaves it so: fcvt/fsqrt fix it). */
const FP_ROWS: readonly InstructionRow[] = INSTRUCTIONS.filter((row) => [0x07, 0x27, 0x43, 0x47, 0x4b, 0x4f, 0x53].includes(row.match & 0x7f));
const CSR_OPS = [A.csrrw, A.csrrs, A.csrrc];
const CSR_IMM_OPS = [A.csrrwi, A.csrrsi, A.csrrci];

/**
 * Generates the random code of one stream. `reserved` registers are never written (default: those
 * of a stream; host/difftest-loops.ts reserves its loop counters too).
 */
export class StreamGenerator {
  /** Instructions generated (an li counts each of its instructions). */
  count = 0;
  private readonly writable: number[];
  private readonly anyBase: number[];
  /** LINKS that may be written (code addresses go there). */
  private readonly links: number[];
  /** x8..x15 that may be written (bases and destinations of compressed loads). */
  private readonly compressedWritable: number[];
  constructor(private readonly rng: Random, private readonly reserved: ReadonlySet<number> = RESERVED) {
    this.writable = WRITABLE.filter((r) => !reserved.has(r));
    this.anyBase = ANY_BASE.filter((r) => !reserved.has(r));
    this.links = LINKS.filter((r) => !reserved.has(r));
    this.compressedWritable = COMPRESSED_REGS.filter((r) => !reserved.has(r));
  }

  private rd(): number {
    return this.rng.pick(this.writable);
  }
  private rs(): number {
    return this.rng.below(32);
  }
  private value(): bigint {
    return this.rng.chance(0.5) ? this.rng.pick(INTERESTING) : this.rng.chance(0.5) ? this.rng.u64() : BigInt(this.rng.between(-4096, 4096));
  }
  private imm12(): number {
    return this.rng.chance(0.3) ? this.rng.pick([0, 1, -1, 2047, -2048, 31, 32, 63]) : this.rng.between(-2048, 2047);
  }
  /** An offset from a base register that stays in the scratch area; aligned to `align` usually. */
  private offset(align: number): number {
    const misaligned = this.rng.chance(0.15);
    const o = this.rng.between(-256, 255) * 8 + (misaligned ? this.rng.below(8) : 0);
    return misaligned ? o : o & ~(align - 1);
  }
  private base(): number {
    return this.rng.pick(BASES.slice(1)); // sp is for compressed sp-relative accesses
  }
  private emit(code: Code): Code {
    this.count += code.length;
    return code;
  }

  /** One random piece of code; `nested` pieces are the bodies of forward jumps. */
  piece(nested = false): Code {
    const r = this.rng;
    const k = r.below(1000);
    if (k < 130) return this.emit(words(r.pick(ALU_R)(this.rd(), this.rs(), this.rs())));
    if (k < 240) {
      if (r.chance(0.4)) {
        const [op, max] = r.pick(SHIFTS);
        return this.emit(words(op(this.rd(), this.rs(), r.between(0, max))));
      }
      return this.emit(words(r.pick(ALU_I)(this.rd(), this.rs(), this.imm12())));
    }
    if (k < 260) {
      // lui, auipc (never near RAM: a store through the result must not hit the stream's code)
      const imm = r.between(0x200, 0xffdff);
      return this.emit(words(r.chance(0.5) ? A.lui(this.rd(), r.below(1 << 20)) : A.auipc(this.rd(), imm)));
    }
    if (k < 340) return this.mulDiv();
    if (k < 430) {
      const [op, width] = r.pick(LOADS);
      return this.emit(words(op(this.rd(), this.offset(width), this.base())));
    }
    if (k < 520) {
      const [op, width] = r.pick(STORES);
      return this.emit(words(op(this.rs(), this.offset(width), this.base())));
    }
    if (k < 545) {
      // Through a register holding anything: mostly access faults, exact traps mid-block.
      const base = r.pick(this.anyBase);
      if (r.chance(0.5)) {
        const [op] = r.pick(LOADS);
        return this.emit(words(op(this.rd(), this.imm12(), base)));
      }
      const [op] = r.pick(STORES);
      return this.emit(words(op(this.rs(), this.imm12(), base)));
    }
    if (k < 595) return this.amo();
    if (k < 635) return this.lrsc();
    if (k < 705 && !nested) return this.forwardJump();
    if (k < 800) return this.compressed();
    if (k < 830) return this.compressedMemory();
    if (k < 880) return this.csr();
    if (k < 900) return this.emit(words(A.fence(r.below(16), r.below(16))));
    if (k < 905) return this.emit(words(A.fence_i()));
    if (k < 915) return this.emit(r.chance(0.5) ? words(r.chance(0.5) ? A.ecall() : A.ebreak()) : halves(0x9002)); // c.ebreak
    if (k < 935) return this.illegalish();
    if (k < 940 && !nested) return this.selfModifying();
    if (k < 943) return this.emit(words(A.wfi()));
    if (k < 980) return this.floatingPoint();
    return this.emit(words(r.pick(ALU_I)(this.rd(), this.rs(), this.imm12())));
  }

  /**
   * A random F/D instruction: f-register fields anything, x destinations writable ones, loads and
   * stores into the scratch area; the rounding mode mostly a valid one or dyn, sometimes reserved
   * (illegal). The prologue turned FS on; a csrw to mstatus may turn it off (then all trap).
   */
  floatingPoint(): Code {
    const r = this.rng;
    const row = r.pick(FP_ROWS);
    const xOr = (bit: number, x: () => number) => (row.fpRegs & bit ? r.below(32) : x());
    if (row.format === "I" || row.format === "S") {
      const width = row.name.endsWith("w") ? 4 : 8;
      const offset = this.offset(width);
      const base = this.base();
      return this.emit(words(row.format === "I"
        ? A.iType(0x07, width === 4 ? 2 : 3, r.below(32), base, offset)
        : A.sType(0x27, width === 4 ? 2 : 3, base, r.below(32), offset)));
    }
    const rm = r.chance(0.05) ? r.pick([5, 6]) : r.pick([0, 1, 2, 3, 4, 7, 7, 7]);
    const fields = (xOr(FpRegs.RD, () => this.rd()) << 7) | (xOr(FpRegs.RS1, () => this.rs()) << 15) | (xOr(FpRegs.RS2, () => this.rs()) << 20);
    let word = row.match | fields;
    if (row.format === "RM" || row.format === "R4") word |= rm << 12;
    if (row.format === "R4") word |= r.below(32) << 27;
    return this.emit(words(word >>> 0));
  }

  mulDiv(): Code {
    const r = this.rng;
    const op = r.pick(MULDIV);
    const [rs1, rs2] = [this.rd(), this.rd()];
    const setup: number[] = [];
    const special = r.below(4);
    if (special === 0) setup.push(A.addi(rs2, 0, 0)); // divide by zero
    if (special === 1) {
      // overflow: most negative / -1 (64-bit or 32-bit)
      setup.push(...A.li(rs1, r.chance(0.5) ? -(1n << 63n) : -(1n << 31n)), A.addi(rs2, 0, -1));
    }
    return this.emit(words(setup, op(this.rd(), special < 2 ? rs1 : this.rs(), special < 2 ? rs2 : this.rs())));
  }

  amo(): Code {
    const r = this.rng;
    const double = r.chance(0.5);
    const address = this.rd();
    const op = r.pick(double ? AMOS_D : AMOS_W);
    const order = { aq: r.chance(0.3), rl: r.chance(0.3) };
    return this.emit(words(A.addi(address, this.base(), this.offset(double ? 8 : 4)), op(this.rd(), this.rs(), address, order)));
  }

  lrsc(): Code {
    const r = this.rng;
    const double = r.chance(0.5);
    const address = this.rd();
    const out: number[] = [A.addi(address, this.base(), this.offset(double ? 8 : 4))];
    if (r.chance(0.8)) out.push((double ? A.lr_d : A.lr_w)(this.rd(), address, { aq: r.chance(0.3) }));
    for (let i = r.below(3); i > 0; i--) {
      // Something in between: ALU, or a store that may hit the reserved word.
      if (r.chance(0.7)) out.push(r.pick(ALU_R)(this.rd(), this.rs(), this.rs()));
      else out.push(A.sw(this.rs(), r.chance(0.5) ? 0 : 8, address));
    }
    const scAddress = r.chance(0.8) ? address : this.rd();
    out.push((double ? A.sc_d : A.sc_w)(this.rd(), this.rs(), scAddress, { rl: r.chance(0.3) }));
    return this.emit(words(out));
  }

  /** A branch or jump over a few random pieces (never backwards: the stream cannot hang). */
  private forwardJump(): Code {
    const r = this.rng;
    const body: Code = [];
    for (let n = r.between(1, 4); n > 0; n--) body.push(...this.piece(true));
    const size = sizeOf(body);
    const kind = r.below(6);
    let jump: Code;
    if (kind === 0 && size <= 254) {
      jump = halves(cBranch(r.chance(0.5), r.pick(COMPRESSED_REGS), size + 2));
    } else if (kind === 1) {
      jump = words(A.jal(r.chance(0.3) ? 0 : r.pick(this.links), size + 4));
    } else if (kind === 2) {
      jump = halves(cJump(size + 2));
    } else if (kind === 3) {
      // auipc + jalr: an indirect jump (bit 0 of the target is ignored by jalr)
      const via = r.pick(this.links);
      jump = words(A.auipc(via, 0), A.jalr(r.chance(0.3) ? 0 : r.pick(this.links), via, size + 8 + (r.chance(0.3) ? 1 : 0)));
    } else {
      jump = words(r.pick(BRANCHES)(this.rs(), this.rs(), size + 4));
    }
    this.count += jump.length;
    return [...jump, ...body];
  }

  /** A random 16-bit parcel the decoder accepts, that neither jumps nor writes a reserved register. */
  compressed(): Code {
    for (;;) {
      const bits = this.rng.below(0x10000);
      if ((bits & 3) === 3) continue;
      const d = decode(bits);
      if (d.op === ILLEGAL_OP && this.rng.chance(0.9)) continue; // keep a few illegal ones
      if (d.op !== ILLEGAL_OP) {
        if (["jal", "jalr", "beq", "bne"].includes(d.name)) continue;
        if (!/^s[bhwd]$/.test(d.name) && d.name !== "ebreak" && this.reserved.has(d.rd)) continue;
      }
      return this.emit(halves(bits));
    }
  }

  /** Point a compressed register into the scratch area, then a random c.lw/c.ld/c.sw/c.sd through it. */
  compressedMemory(): Code {
    const r = this.rng;
    const base = r.pick(this.compressedWritable);
    const funct3 = r.pick([2, 3, 6, 7]);
    const parcel = (funct3 << 13) | (r.below(8) << 10) | ((base - 8) << 7) | (r.below(4) << 5) | (r.pick(this.compressedWritable) - 8) << 2;
    const setup = A.addi(base, this.base(), this.offset(8) & ~0xff);
    if (r.chance(0.5)) {
      // sp-relative forms too: c.lwsp / c.ldsp / c.swsp / c.sdsp (sp points into the scratch area)
      const spForm = r.pick([2, 3, 6, 7]);
      const rd = r.pick(this.writable);
      const sp = (spForm << 13) | (r.below(2) << 12) | (rd << 7) | (r.below(32) << 2) | 2;
      const d = decode(sp);
      if (d.op !== ILLEGAL_OP) return this.emit([...words(setup), ...halves(parcel, sp)]);
    }
    return this.emit([...words(setup), ...halves(parcel)]);
  }

  csr(): Code {
    const r = this.rng;
    // CSRs that hold code addresses (mtvec, mepc, mtval) go to the link registers, like jumps.
    const rdFor = (csr: number) => (CODE_CSRS.includes(csr) ? r.pick(this.links) : this.rd());
    if (r.chance(0.6)) {
      const csr = r.pick(CSR_READS);
      return this.emit(words(A.csrr(rdFor(csr), csr)));
    }
    const csr = r.pick(CSR_WRITES);
    const rd = r.chance(0.3) ? 0 : rdFor(csr);
    if (r.chance(0.5)) return this.emit(words(r.pick(CSR_IMM_OPS)(rd, csr, r.below(32))));
    return this.emit(words(r.pick(CSR_OPS)(rd, csr, this.rs())));
  }

  /** Random bits with an ALU major opcode: mostly reserved encodings (illegal), sometimes real ones. */
  illegalish(): Code {
    const r = this.rng;
    if (r.chance(0.2)) return this.emit(halves(0)); // the all-zero parcel: defined illegal
    const opcode = r.pick([0x13, 0x33, 0x1b, 0x3b, 0x73, 0x0f, 0x2f]);
    const word = (r.u32() & ~0xfff) | (this.rd() << 7) | opcode;
    const d = decode(word >>> 0);
    // A legal one must be harmless: no CSR writes, no privileged instructions, no atomics elsewhere.
    if (d.op !== ILLEGAL_OP && (opcode === 0x73 || opcode === 0x2f || opcode === 0x0f && d.name === "fence.i")) return this.emit(words(A.nop()));
    return this.emit(words(word));
  }

  /** Overwrite an instruction ahead with another, then FENCE.I: the translation must be redone. */
  selfModifying(): Code {
    const r = this.rng;
    const via = r.pick(this.links);
    const value = this.rd();
    const patched = A.addi(this.rd(), this.rs(), this.imm12());
    const load = A.li(value, BigInt.asIntN(32, BigInt(patched)));
    const offset = 4 + load.length * 4 + 8; // auipc, li, sw, fence.i, then the target
    return this.emit(words(A.auipc(via, 0), load, A.sw(value, offset, via), A.fence_i(), r.pick(ALU_I)(this.rd(), this.rs(), this.imm12())));
  }
}

export interface RandomStream {
  /** The stream's own seed (the same seed makes the same stream). */
  seed: number;
  /** Bytes to place in guest RAM, and where execution starts. */
  segments: { address: number; bytes: Uint8Array }[];
  entry: bigint;
  /** Instructions in the random body (it runs `loops` times). */
  instructions: number;
  loops: number;
  /** A bound on the instructions it runs, when the default (10 per instruction and loop) is too low. */
  maxSteps?: number;
}

/**
 * One random stream. Layout: the prologue (trap vector, registers, scratch bases, loop counter) and
 * the body at RAM_BASE, looping `loops` times through a backward jump, then an exit through the
 * sifive_test finisher; the trap handler at RAM_BASE + 256 KiB; a scratch area of random bytes at
 * RAM_BASE + 512 KiB (RAM is 1 MiB).
 *
 * The handler skips the faulting instruction (2 or 4 bytes, from the bits at mepc), counts the trap
 * in s9 and returns; a fault outside the stream's code (a jump gone wild after the code overwrote
 * itself) goes to the exit instead.
 */
export function randomStream(seed: number, length: number): RandomStream {
  const rng = new Random(seed);
  const gen = new StreamGenerator(rng);
  const loops = rng.between(3, 6);
  const p = new A.Program(CODE);
  p.emit(streamPrologue());
  p.li(LOOPS, loops);
  for (const r of WRITABLE) p.li(r, rng.chance(0.3) ? rng.pick(INTERESTING) : rng.u64());
  // The f registers from those values (fmv.d.x f, x: raw bits, so doubles and unboxed singles).
  for (let f = 0; f < 32; f++) p.emit(A.rType(0x53, 0, 0x79, f, rng.pick(WRITABLE), 0));
  p.label("top");
  while (gen.count < length) {
    for (const part of gen.piece()) {
      if (part.half) p.half(part.bits);
      else p.emit(part.bits);
    }
  }
  p.emit(A.addi(LOOPS, LOOPS, -1)).branch(A.beq, LOOPS, 0, "done").j("top");
  p.label("done").exit(0);
  return {
    seed,
    segments: streamSegments(p.code(), streamHandler(p.here, p.address("done")), rng),
    entry: CODE,
    instructions: gen.count,
    loops,
  };
}

/** The start of a stream's code: the trap vector, the scratch bases, the trap counter. */
export function streamPrologue(): number[] {
  return [
    ...A.li(A.R.t6, HANDLER), A.csrw(A.CSR.mtvec, A.R.t6),
    ...A.li(A.R.sp, SCRATCH + 0x3000), ...A.li(A.R.s10, SCRATCH + 0x800), ...A.li(A.R.s11, SCRATCH + 0x1000),
    ...A.li(A.R.t3, SCRATCH + 0x2800), ...A.li(TRAPS, 0),
    // mstatus.FS = Initial: the floating-point pieces run (F and D).
    ...A.li(A.R.t6, 1 << 13), A.csrrs(0, A.CSR.mstatus, A.R.t6),
  ];
}

/** Where a stream's code, handler and scratch area go (the scratch area's random bytes drawn last). */
export function streamSegments(code: Uint8Array, handler: Uint8Array, rng: Random): RandomStream["segments"] {
  const scratch = new Uint8Array(SCRATCH_SIZE);
  for (let i = 0; i < scratch.length; i += 4) new DataView(scratch.buffer).setUint32(i, rng.u32(), true);
  return [
    { address: Number(CODE), bytes: code },
    { address: Number(HANDLER), bytes: handler },
    { address: SCRATCH, bytes: scratch },
  ];
}

/**
 * The trap handler of a stream (at HANDLER): skips the faulting instruction (2 or 4 bytes, from the
 * bits at mepc), counts the trap in s9 and returns; a fault outside the code (CODE..codeEnd: a jump
 * gone wild after the code overwrote itself) goes to `done` instead. With `timerPeriod`, an
 * interrupt (the machine timer) sets the next one `timerPeriod` ticks of mtime ahead, counts it in
 * s9 too and returns where it interrupted. Uses t5 and t6 only.
 */
export function streamHandler(codeEnd: bigint, done: bigint, timerPeriod?: number): Uint8Array {
  const h = new A.Program(HANDLER);
  if (timerPeriod !== undefined) h.emit(A.csrr(A.R.t6, A.CSR.mcause)).branch(A.blt, A.R.t6, 0, "interrupt");
  h.emit(A.csrr(A.R.t6, A.CSR.mepc));
  h.li(A.R.t5, codeEnd).branch(A.bgeu, A.R.t6, A.R.t5, "escape");
  h.li(A.R.t5, CODE).branch(A.bltu, A.R.t6, A.R.t5, "escape");
  h.emit(A.lhu(A.R.t5, 0, A.R.t6), A.andi(A.R.t5, A.R.t5, 3), A.addi(A.R.t6, A.R.t6, 2), A.addi(A.R.t5, A.R.t5, -3));
  h.branch(A.bne, A.R.t5, 0, "short").emit(A.addi(A.R.t6, A.R.t6, 2));
  h.label("short").emit(A.csrw(A.CSR.mepc, A.R.t6), A.addi(TRAPS, TRAPS, 1), A.mret());
  h.label("escape").li(A.R.t6, done).emit(A.csrw(A.CSR.mepc, A.R.t6), A.mret());
  if (timerPeriod !== undefined) {
    h.label("interrupt").emit(A.csrr(A.R.t6, A.CSR.time)).li(A.R.t5, timerPeriod).emit(A.add(A.R.t6, A.R.t6, A.R.t5));
    h.li(A.R.t5, CLINT_BASE + 0x4000).emit(A.sd(A.R.t6, 0, A.R.t5), A.addi(TRAPS, TRAPS, 1), A.mret());
  }
  return h.code();
}

export interface StreamOptions {
  /** Seed of the first stream; stream i has seed `seed + i`. */
  seed: number;
  count: number;
  /** Random instructions per stream body (default 500). */
  length?: number;
  /** Makes the stream of a seed (default `randomStream`; host/difftest-loops.ts: `randomLoopProgram`). */
  generator?: (seed: number, length: number) => RandomStream;
}

/** `count` random streams, with seeds seed, seed + 1, ... */
export function* randomStreams(options: StreamOptions): Generator<RandomStream> {
  const generate = options.generator ?? randomStream;
  for (let i = 0; i < options.count; i++) yield generate(options.seed + i, options.length ?? 500);
}

/** Compare one random stream on both engines. */
export function difftestStream(stream: RandomStream, options: DifftestOptions = {}): DifftestResult & { traps: number } {
  const setup: Setup = (machine) => {
    for (const s of stream.segments) machine.writeRam(s.address, s.bytes);
    machine.start(stream.entry);
  };
  // A stream that overwrote its own loop may never end: bound it well above its expected length.
  const maxSteps = options.maxSteps ?? stream.maxSteps ?? (stream.instructions * 10 + 2000) * stream.loops;
  const chunkSeed = options.chunkSeed ?? stream.seed;
  const { result, machines } = compare(setup, resolved({ ...options, memoryCheckEvery: options.memoryCheckEvery ?? 2000, maxSteps, chunkSeed }, STREAM_RAM));
  // s9 counts the traps the handler served (on the interpreter's machine: the reference).
  return { ...result, traps: Number(machines.interp.harts[0]!.x(TRAPS)) };
}

export interface StreamsSummary {
  streams: number;
  steps: number;
  instructions: number;
  traps: number;
  resyncs: number;
  /** Streams that reached their step limit instead of their exit (their code overwrote its loop). */
  unfinished: number;
  milliseconds: number;
  /** The first divergence, and the seed of its stream (`--seed S --count 1` repeats it). */
  divergence?: Divergence & { seed: number };
}

/** Run `count` random streams through the lockstep comparison; stops at the first divergence. */
export function difftestStreams(
  options: StreamOptions & DifftestOptions,
  progress?: (done: number, summary: StreamsSummary) => void,
): StreamsSummary {
  const summary: StreamsSummary = { streams: 0, steps: 0, instructions: 0, traps: 0, resyncs: 0, unfinished: 0, milliseconds: 0 };
  const started = performance.now();
  for (const stream of randomStreams(options)) {
    const result = difftestStream(stream, options);
    summary.streams++;
    summary.steps += result.steps;
    summary.instructions += result.instructions;
    summary.traps += result.traps;
    summary.resyncs += result.resyncs;
    if (result.end === "max-steps") summary.unfinished++;
    summary.milliseconds = performance.now() - started;
    if (result.divergence) {
      summary.divergence = { ...result.divergence, seed: stream.seed };
      break;
    }
    progress?.(summary.streams, summary);
  }
  summary.milliseconds = performance.now() - started;
  return summary;
}
