/**
 * Random loop-shaped programs for the differential tester (host/difftest.ts), the fuzzer of the
 * translator's structured loops: run through its coarse mode they exercise the code shape real
 * runs get (wasm loops, direct forward branches, if/else inside loops), with chunk boundaries
 * landing mid-loop.
 *
 * A program is a random nest of statements (`LoopProgramGenerator.statement`):
 * - counted loops, nested up to three deep, each with its own counter register (s0, s2, s3) that the
 *   random code never writes, in three shapes: tested at the top (`beqz; addi -1; body; j head`),
 *   at the bottom (`addi -1; body; bnez head`), and rotated (`j test; body; test: addi -1; bgez
 *   body`, entered at its latch). Trip counts are bounded (32, 8, 4 by depth), so programs end.
 *   70% of the loops are clean (see Context): the translator can make the innermost of those wasm
 *   loops (a rotated loop never: it is entered from outside);
 * - if/else inside them: a forward branch to the else part, `j` over it (conditions on random
 *   registers, the counter's low bits, the counter against a constant);
 * - early exits (a branch to the exit of the loop or of an enclosing one) and `continue`s: extra
 *   back edges to a loop head (its counter is tested and decremented there, so they terminate;
 *   bottom-tested loops continue only while their counter is not zero) or forward to a rotated
 *   loop's latch;
 * - the straight random code of the streams (StreamGenerator: ALU, M, loads/stores, AMOs, LR/SC,
 *   compressed parcels, CSRs, fences, traps), data accesses strided by a loop counter, crossing a
 *   page, a store then an overlapping load, AMOs; traps on purpose (illegal instructions, misaligned
 *   AMOs, loads from addresses outside RAM, ecall/ebreak), which the handler skips;
 * - reads of the clock and instret inside loops; calls (`jal ra`) to random leaf subroutines after
 *   the program, some with a loop of their own (counter s4), returning with `c.jr ra`/`jalr`;
 *   writes of mstatus or mie with their own value and, once at most, a patch of the code ahead
 *   (`sideExit`): exits from translated code mid-loop that are no trap.
 * - loop heads that straddle a page boundary (c.nops up to the page's last halfword when it is
 *   near, then a 4-byte head), the back edge jumping to them from the next page: the translator
 *   hands such an instruction to the interpreter (as Linux's devtmpfs_work_loop can have it).
 * Compressed branches and jumps (c.beqz/c.bnez/c.j) are used where they reach, else the 32-bit
 * forms, else an inverted branch over a `jal`. Half the programs also enable the machine timer: the
 * handler sets the next interrupt ahead, so interrupts land inside loops and the translator is
 * re-entered mid-loop. The body runs 2 to 4 times (an outer loop), from the start of the second page,
 * a little into it (so that long bodies cross into a third), or near its end.
 *
 * The layout, handler and scratch area are a stream's (see `randomStream`).
 */
import * as A from "../test/helpers/asm.ts";
import {
  AMOS_D, AMOS_W, CODE, LOADS, LOOPS, Random, RESERVED, STORES, StreamGenerator, WRITABLE, INTERESTING, cBranch, cJump,
  halves, sizeOf, streamHandler, streamPrologue, streamSegments, words, type Code, type RandomStream,
} from "./difftest.ts";
import { CLINT_BASE } from "../hypervisor/devices/clint.ts";
import { PAGE_SIZE } from "../shared-mem/layout.ts";
import { decode, type Decoded } from "../vcpu/decoder.ts";
import { ILLEGAL_OP } from "../vcpu/isa.ts";

/** Loop counters, one per nesting depth (s0 is x8: c.beqz/c.bnez can test it). */
const COUNTERS = [A.R.s0, A.R.s2, A.R.s3];
/** The counter of a loop inside a subroutine (called from any depth). */
const SUB_COUNTER = A.R.s4;
/** Largest trip count of a loop at each depth, and in a subroutine. */
const MAX_TRIPS = [32, 8, 4];
const SUB_TRIPS = 4;
/** Share of top- and bottom-tested loops whose head is made to straddle a page boundary, when one is this near (bytes). */
const STRADDLE_CHANCE = 0.5;
const STRADDLE_WINDOW = 1024;
/** c.nop */
const C_NOP = 0x0001;
/** Largest body of a loop (static instructions) at each depth. */
const MAX_BODY = [90, 45, 20];
const LOOP_RESERVED: ReadonlySet<number> = new Set([...RESERVED, ...COUNTERS, SUB_COUNTER]);
/** Subroutines keep ra too (their return address). */
const SUB_RESERVED: ReadonlySet<number> = new Set([...LOOP_RESERVED, A.R.ra]);
const TEMPS = WRITABLE.filter((r) => !SUB_RESERVED.has(r));
const COMPRESSED_TEMPS = TEMPS.filter((r) => r >= 8 && r <= 15);
/** Bases into the scratch area (see difftest.ts): s10 = +0x800, s11 = +0x1000 (a page boundary), t3 = +0x2800. */
const DATA_BASES = [A.R.s10, A.R.s11, A.R.t3];
/** Addresses outside RAM (and, as far as the machine's map goes, every device): loads there fault. */
const NOWHERE = [0x1234_5678_0000n, 0x4000_0000n, 0x8000_0000n - 0x1000n];

type BranchName = "beq" | "bne" | "blt" | "bge" | "bltu" | "bgeu";
const BRANCH_NAMES: readonly BranchName[] = ["beq", "bne", "blt", "bge", "bltu", "bgeu"];
const BRANCH_OPS: Record<BranchName, (rs1: number, rs2: number, offset: number) => number> = {
  beq: A.beq, bne: A.bne, blt: A.blt, bge: A.bge, bltu: A.bltu, bgeu: A.bgeu,
};
const INVERSE: Record<BranchName, BranchName> = { beq: "bne", bne: "beq", blt: "bge", bge: "blt", bltu: "bgeu", bgeu: "bltu" };

/** The form of a branch or jump: compressed (c.beqz/c.bnez, c.j), 32-bit, or long (an inverted branch over a jal). */
const COMPRESSED = 0;
const NORMAL = 1;
const LONG = 2;

type Item =
  | { kind: "code"; code: Code }
  | { kind: "label"; label: number }
  | { kind: "pad"; to: number }
  | { kind: "straddle"; window: number }
  | { kind: "branch"; op: BranchName; rs1: number; rs2: number; label: number; form: number }
  | { kind: "jump"; rd: number; label: number; form: number };

/** Code with labels, and branches and jumps that take the shortest form that reaches. */
class Assembler {
  private readonly items: Item[] = [];
  private labels = 0;
  private placed: number[] = [];

  label(): number {
    return this.labels++;
  }
  place(label: number): void {
    this.items.push({ kind: "label", label });
  }
  code(code: Code): void {
    if (code.length > 0) this.items.push({ kind: "code", code });
  }
  /** Zeros up to offset `to` (all before must be of fixed size: no branch or jump). */
  padTo(to: number): void {
    this.items.push({ kind: "pad", to });
  }
  /**
   * c.nops up to the last halfword of the page when that is at most `window` bytes ahead (else
   * nothing): a 4-byte instruction placed next then straddles the page boundary.
   */
  straddle(window: number): void {
    this.items.push({ kind: "straddle", window });
  }
  /** `op rs1, rs2, label`; compressed (c.beqz/c.bnez) when asked and possible. */
  branch(op: BranchName, rs1: number, rs2: number, label: number, compressed: boolean): void {
    const can = compressed && rs2 === 0 && rs1 >= 8 && rs1 <= 15 && (op === "beq" || op === "bne");
    this.items.push({ kind: "branch", op, rs1, rs2, label, form: can ? COMPRESSED : NORMAL });
  }
  /** `jal rd, label`; c.j when asked and rd is zero. */
  jump(label: number, compressed: boolean, rd = 0): void {
    this.items.push({ kind: "jump", rd, label, form: compressed && rd === 0 ? COMPRESSED : NORMAL });
  }

  /** Offset of a label from the start (once assembled). */
  offsetOf(label: number): number {
    return this.placed[label]!;
  }

  private static size(item: Item, at: number): number {
    if (item.kind === "code") return sizeOf(item.code);
    if (item.kind === "label") return 0;
    if (item.kind === "pad") {
      if (at > item.to) throw new RangeError(`padding to ${item.to} from ${at}`);
      return item.to - at;
    }
    if (item.kind === "straddle") {
      const toEnd = PAGE_SIZE - 2 - (at % PAGE_SIZE);
      return toEnd >= 0 && toEnd <= item.window ? toEnd : 0;
    }
    return item.form === COMPRESSED ? 2 : item.form === NORMAL ? 4 : 8;
  }

  /** Lay the items out, widening the branches and jumps that do not reach, and encode them. */
  assemble(): Uint8Array {
    let at: number[] = [];
    for (let widened = true; widened; ) {
      widened = false;
      at = [];
      let offset = 0;
      for (const item of this.items) {
        at.push(offset);
        if (item.kind === "label") this.placed[item.label] = offset;
        offset += Assembler.size(item, offset);
      }
      this.items.forEach((item, i) => {
        if (item.kind !== "branch" && item.kind !== "jump") return;
        const distance = this.placed[item.label]! - at[i]!;
        const reach = item.form === COMPRESSED ? (item.kind === "jump" ? 2048 : 256) : item.kind === "branch" && item.form === NORMAL ? 4096 : Infinity;
        if (distance < -reach || distance > reach - 2) {
          item.form++;
          widened = true;
        }
      });
    }
    const total = at.length === 0 ? 0 : at.at(-1)! + Assembler.size(this.items.at(-1)!, at.at(-1)!);
    const out = new Uint8Array(total);
    const view = new DataView(out.buffer);
    let offset = 0;
    const word = (w: number) => (view.setUint32(offset, w >>> 0, true), (offset += 4));
    const half = (h: number) => (view.setUint16(offset, h & 0xffff, true), (offset += 2));
    for (const item of this.items) {
      if (item.kind === "pad") {
        offset = item.to;
      } else if (item.kind === "straddle") {
        for (let end = offset + Assembler.size(item, offset); offset < end; ) half(C_NOP);
      } else if (item.kind === "code") {
        for (const part of item.code) (part.half ? half : word)(part.bits);
      } else if (item.kind === "branch") {
        const distance = this.placed[item.label]! - offset;
        if (item.form === COMPRESSED) half(cBranch(item.op === "bne", item.rs1, distance));
        else if (item.form === NORMAL) word(BRANCH_OPS[item.op](item.rs1, item.rs2, distance));
        else word(BRANCH_OPS[INVERSE[item.op]](item.rs1, item.rs2, 8)), word(A.jal(0, distance - 4));
      } else if (item.kind === "jump") {
        const distance = this.placed[item.label]! - offset;
        if (item.form === COMPRESSED) half(cJump(distance));
        else word(A.jal(item.rd, distance));
      }
    }
    return out;
  }
}

interface Loop {
  /** Where `continue` goes: the head (top- and bottom-tested loops) or the latch (rotated loops). */
  next: number;
  exit: number;
  counter: number;
  shape: "top" | "bottom" | "rotated";
}

/**
 * Where a statement goes: its loops (innermost last), the weight of one instruction there, in a
 * subroutine or not, and whether its loop is clean: without the instructions that keep the
 * translator from making a loop a wasm loop (calls, ecall/ebreak/wfi/fence.i, encodings that do not
 * decode), and without traps (the guest resuming after one enters the page mid-loop, which soon
 * makes the translator pin an entry there): the random code is then ALU and M only, memory accesses
 * are the data accesses (aligned AMOs; misaligned plain accesses do not trap), CSR accesses clock
 * reads.
 */
interface Context {
  loops: readonly Loop[];
  weight: number;
  inSub: boolean;
  clean: boolean;
}

class LoopProgramGenerator {
  readonly asm = new Assembler();
  /** Static instructions generated, and a bound on the instructions run (each weighted by its loops' trips). */
  count = 0;
  dynamic = 0;
  private readonly gen: StreamGenerator;
  private readonly subGen: StreamGenerator;
  /** Labels of the subroutines, and the summed weight of the calls to them. */
  readonly subs: number[];
  callWeight = 0;
  /** Whether the program has patched its own code (once at most: the translator gives up on a page rewritten too often). */
  private patched = false;

  constructor(private readonly rng: Random) {
    this.gen = new StreamGenerator(rng, LOOP_RESERVED);
    this.subGen = new StreamGenerator(rng, SUB_RESERVED);
    this.subs = Array.from({ length: rng.between(1, 3) }, () => this.asm.label());
  }

  emit(code: Code, weight: number): void {
    this.asm.code(code);
    this.count += code.length;
    this.dynamic += code.length * weight;
  }
  private branch(op: BranchName, rs1: number, rs2: number, label: number, weight: number): void {
    this.asm.branch(op, rs1, rs2, label, this.rng.chance(0.6));
    this.count++;
    this.dynamic += weight;
  }
  private jump(label: number, weight: number, rd = 0): void {
    this.asm.jump(label, this.rng.chance(0.5), rd);
    this.count++;
    this.dynamic += weight;
  }
  /** A piece of the streams' random code; in a clean loop, one without what would spoil it (see Context). */
  private piece(at: Context): Code {
    for (;;) {
      const code = this.generator(at).piece(true);
      if (!at.clean || code.every((part) => quiet(decode(part.bits)))) return code;
    }
  }

  /** The random code's generator: subroutines keep their return address. */
  private generator({ inSub }: Pick<Context, "inSub">): StreamGenerator {
    return inSub ? this.subGen : this.gen;
  }
  private temp(): number {
    return this.rng.pick(TEMPS);
  }

  /** Statements until `budget` static instructions were generated. */
  block(budget: number, depth: number, at: Context): void {
    const end = this.count + budget;
    while (this.count < end) this.statement(end - this.count, depth, at);
  }

  statement(budget: number, depth: number, at: Context): void {
    const r = this.rng;
    const k = r.below(100);
    const innermost = at.loops.at(-1);
    if (k < 30) {
      for (let n = r.between(1, 3); n > 0; n--) this.emit(this.piece(at), at.weight);
    } else if (k < 42) {
      this.dataAccess(innermost, at);
    } else if (k < 54 && budget >= 10 && depth < (at.inSub ? 1 : COUNTERS.length)) {
      this.loop(budget, depth, at);
    } else if (k < 72 && budget >= 5) {
      this.ifElse(budget, depth, at);
    } else if (k < 78 && innermost) {
      // An early exit: out of this loop, or out of an enclosing one too.
      const loop = r.chance(0.6) ? innermost : r.pick(at.loops);
      this.condition(loop.exit, at, true);
    } else if (k < 85 && innermost) {
      this.continueStatement(r.chance(0.7) ? innermost : r.pick(at.loops), at);
    } else if (k < 91 && !at.clean) {
      this.trap(at);
    } else if (k < 94 && !at.inSub && !at.clean) {
      this.jump(r.pick(this.subs), at.weight, A.R.ra);
      this.callWeight += at.weight;
    } else if (k < 96 && !at.clean) {
      this.sideExit(at);
    } else {
      // The clock and instret inside loops: the translator must count what it retired exactly.
      const csr = r.pick([A.CSR.time, A.CSR.instret, A.CSR.cycle, A.CSR.minstret, A.CSR.mcycle]);
      this.emit(words(A.csrr(this.temp(), csr)), at.weight);
    }
  }

  private loop(budget: number, depth: number, at: Context): void {
    const r = this.rng;
    const counter = at.inSub ? SUB_COUNTER : COUNTERS[depth]!;
    // (Rotated loops are entered at their latch, from outside: never a wasm loop, so fewer of them.)
    const shape = r.pick(["top", "top", "bottom", "bottom", "rotated"] as const);
    const trips = r.between(shape === "bottom" ? 1 : 0, at.inSub ? SUB_TRIPS : MAX_TRIPS[depth]!);
    const head = this.asm.label();
    const exit = this.asm.label();
    const latch = this.asm.label();
    const loop: Loop = { next: shape === "rotated" ? latch : head, exit, counter, shape };
    const inner: Context = { loops: [...at.loops, loop], weight: at.weight * (trips + 1), inSub: at.inSub, clean: r.chance(0.7) };
    const body = r.between(3, Math.max(3, Math.min(budget - 5, MAX_BODY[depth]!)));
    // Some heads straddle a page boundary when one is near: the translator leaves such an
    // instruction to the interpreter, and the loop's back edge jumps to it from the next page.
    const straddle = shape !== "rotated" && r.chance(STRADDLE_CHANCE);
    const decrement = (wide = false) =>
      this.emit(!wide && r.chance(0.5) ? halves(cAddi(counter, -1)) : words(A.addi(counter, counter, -1)), inner.weight);
    this.emit(words(A.li(counter, trips)), at.weight);
    if (straddle) {
      this.asm.straddle(STRADDLE_WINDOW);
      this.dynamic += (STRADDLE_WINDOW / 2) * at.weight;
    }
    if (shape === "top") {
      this.asm.place(head);
      if (straddle) {
        this.asm.branch("beq", counter, 0, exit, false);
        this.count++;
        this.dynamic += inner.weight;
      } else this.branch("beq", counter, 0, exit, inner.weight);
      decrement();
      this.block(body, depth + 1, inner);
      this.jump(head, inner.weight);
    } else if (shape === "bottom") {
      this.asm.place(head);
      decrement(straddle);
      this.block(body, depth + 1, inner);
      if (r.chance(0.5)) this.branch("bne", counter, 0, head, inner.weight);
      else this.branch("blt", 0, counter, head, inner.weight);
    } else {
      this.jump(latch, at.weight);
      this.asm.place(head);
      this.block(body, depth + 1, inner);
      this.asm.place(latch);
      decrement();
      this.branch("bge", counter, 0, head, inner.weight);
    }
    this.asm.place(exit);
  }

  /** A forward branch to the else part, the then part, and (usually) `j` over the else part. */
  private ifElse(budget: number, depth: number, at: Context): void {
    const r = this.rng;
    const otherwise = this.asm.label();
    const end = this.asm.label();
    // Both parts within the budget (else nested if/else could grow the program exponentially).
    const room = Math.max(2, Math.min(budget - 3, 60));
    const then = r.between(1, room - 1);
    this.condition(otherwise, at);
    this.block(then, depth, at);
    if (r.chance(0.7)) {
      this.jump(end, at.weight);
      this.asm.place(otherwise);
      this.block(r.between(1, room - then), depth, at);
    } else {
      this.asm.place(otherwise);
    }
    this.asm.place(end);
  }

  /**
   * A conditional branch to `label`: on random registers, the counter's low bits, or the counter
   * against a constant. A `rare` one (early exits) is seldom taken: registers equal, the low four
   * bits of a counter zero, a counter equal to a constant.
   */
  private condition(label: number, at: Context, rare = false): void {
    const r = this.rng;
    const loop = at.loops.length > 0 ? r.pick(at.loops) : undefined;
    const k = r.below(3);
    if (k === 1 && loop) {
      const t = r.chance(0.6) ? r.pick(COMPRESSED_TEMPS) : this.temp();
      this.emit(words(A.andi(t, loop.counter, rare ? 15 : r.pick([1, 2, 3, 4, 7]))), at.weight);
      this.branch(rare || r.chance(0.5) ? "beq" : "bne", t, 0, label, at.weight);
    } else if (k === 2 && loop) {
      const t = this.temp();
      this.emit(words(A.addi(t, 0, r.between(0, 8))), at.weight);
      this.branch(rare ? "beq" : r.pick(BRANCH_NAMES), loop.counter, t, label, at.weight);
    } else if (rare) {
      this.branch("beq", r.below(32), r.below(32), label, at.weight);
    } else if (r.chance(0.3)) {
      this.branch(r.chance(0.5) ? "beq" : "bne", r.pick([...COMPRESSED_TEMPS, r.below(32)]), 0, label, at.weight);
    } else {
      this.branch(r.pick(BRANCH_NAMES), r.below(32), r.below(32), label, at.weight);
    }
  }

  /**
   * Back to the head of `loop` (a back edge that is not its latch) or forward to its latch (rotated).
   * The head of a top-tested loop tests its counter, so any condition will do; a bottom-tested loop's
   * does not, so there the counter must be non-zero (sometimes under a random condition as well).
   */
  private continueStatement(loop: Loop, at: Context): void {
    const r = this.rng;
    if (loop.shape === "bottom") {
      const skip = this.asm.label();
      const guarded = r.chance(0.5);
      if (guarded) this.condition(skip, at);
      this.branch("bne", loop.counter, 0, loop.next, at.weight);
      if (guarded) this.asm.place(skip);
    } else if (r.chance(0.1)) {
      this.jump(loop.next, at.weight);
    } else {
      this.condition(loop.next, at);
    }
  }

  /** Loads and stores into the scratch area, shaped like a loop's. */
  private dataAccess(loop: Loop | undefined, { weight, inSub }: Context): void {
    const r = this.rng;
    const k = r.below(6);
    const base = r.pick(DATA_BASES);
    const t = this.temp();
    const access = (via: number, offset: number, loads = r.chance(0.5)) => {
      const [op] = loads ? r.pick(LOADS) : r.pick(STORES);
      return loads ? op(this.temp(), offset, via) : op(r.below(32), offset, via);
    };
    if (k <= 1 && loop) {
      // Strided by the counter: base + (counter << shift), aligned or not.
      const out = [A.slli(t, loop.counter, r.between(0, 4)), A.add(t, t, base)];
      for (let n = r.between(1, 3); n > 0; n--) out.push(access(t, r.between(-64, 64) & (r.chance(0.8) ? ~7 : ~0)));
      this.emit(words(out), weight);
    } else if (k === 2) {
      // Across a page boundary: s11 points at one, t3 is 0x800 below one.
      const [via, boundary] = r.chance(0.5) ? [A.R.s11, 0] : [A.R.t3, 0x800];
      const width = r.pick([2, 4, 8]);
      this.emit(words(access(via, boundary - r.between(1, width - 1))), weight);
    } else if (k === 3) {
      // A store, then an overlapping load of another width.
      const offset = r.between(-200, 200) * 8;
      const [store] = r.pick(STORES);
      const [load] = r.pick(LOADS);
      this.emit(words(store(r.below(32), offset, base), load(this.temp(), offset + r.between(-7, 7), base)), weight);
    } else if (k === 4) {
      const double = r.chance(0.5);
      const op = r.pick(double ? AMOS_D : AMOS_W);
      this.emit(words(A.addi(t, base, r.between(-200, 200) * 8), op(this.temp(), r.below(32), t)), weight);
    } else {
      this.emit(this.generator({ inSub }).compressedMemory(), weight);
    }
  }

  /**
   * Leave translated code after an instruction that does not trap: rewrite mstatus or mie with its
   * own value (the host then looks for an interrupt to take), or, once per program, patch the
   * instruction ahead (a store into translated code, then FENCE.I).
   */
  private sideExit(at: Context): void {
    if (!this.patched && this.rng.chance(0.2)) {
      this.patched = true;
      this.emit(this.generator(at).selfModifying(), at.weight);
      return;
    }
    const t = this.temp();
    const csr = this.rng.pick([A.CSR.mstatus, A.CSR.mie]);
    this.emit(words(A.csrr(t, csr), A.csrw(csr, t)), at.weight);
  }

  /** An instruction that traps on purpose (the handler skips it). */
  private trap({ weight, inSub }: Context): void {
    const r = this.rng;
    const t = this.temp();
    const k = r.below(7);
    if (k === 0) this.emit(halves(0), weight); // the defined illegal parcel
    else if (k === 1) this.emit(words(A.csrw(A.CSR.mhartid, t)), weight); // read-only CSR: illegal
    else if (k === 2) {
      const op = r.pick(r.chance(0.5) ? AMOS_D : AMOS_W);
      this.emit(words(A.addi(t, r.pick(DATA_BASES), r.between(-200, 200) * 8 + r.pick([1, 2, 3, 5, 6, 7])), op(this.temp(), r.below(32), t)), weight);
    } else if (k === 3) {
      const [load] = r.pick(LOADS);
      this.emit(words(A.li(t, r.pick(NOWHERE)), load(this.temp(), r.between(-64, 64), t)), weight);
    } else if (k === 4) this.emit(words(A.ecall()), weight);
    else if (k === 5) this.emit(r.chance(0.5) ? words(A.ebreak()) : halves(0x9002), weight); // c.ebreak
    else this.emit(this.generator({ inSub }).illegalish(), weight);
  }

  /** The subroutines: random code (some with a loop), then a return. */
  subroutines(): void {
    let largest = 0;
    for (const label of this.subs) {
      const before = this.dynamic;
      this.asm.place(label);
      this.block(this.rng.between(3, 30), 0, { loops: [], weight: 1, inSub: true, clean: false });
      this.emit(this.rng.chance(0.5) ? halves(0x8082) : words(A.jalr(0, A.R.ra, 0)), 1); // c.jr ra / jalr zero, 0(ra)
      largest = Math.max(largest, this.dynamic - before);
    }
    this.dynamic += largest * this.callWeight;
  }
}

/** Whether an instruction may be in a clean loop (see Context): no jump, host instruction, memory or CSR access. */
function quiet(d: Decoded): boolean {
  return d.op !== ILLEGAL_OP && !/^(jalr?|ecall|ebreak|mret|sret|wfi|sfence\.vma|fence\.i|l[bhwd]u?|s[bhwd]|amo.*|lr\..|sc\..|csr.*)$/.test(d.name);
}

/** c.addi rd, imm (CI format; imm in -32..31, not 0). */
export function cAddi(rd: number, imm: number): number {
  if (rd === 0 || imm === 0 || imm < -32 || imm > 31) throw new RangeError(`c.addi x${rd}, ${imm}`);
  const i = imm & 0x3f;
  return (((i >> 5) & 1) << 12) | (rd << 7) | ((i & 0x1f) << 2) | 1;
}

/**
 * One random loop-shaped program of about `length` static instructions (see the header), as a
 * RandomStream (`loops` 1; `maxSteps` bounds what it runs, traps included, should it overwrite its
 * own code and never end).
 */
export function randomLoopProgram(seed: number, length: number): RandomStream {
  const rng = new Random(seed);
  const g = new LoopProgramGenerator(rng);
  const top: Context = { loops: [], weight: 1, inSub: false, clean: false };
  const timer = rng.chance(0.5) ? rng.between(300, 5000) : undefined;
  g.emit(words(streamPrologue()), 1);
  for (const r of WRITABLE) g.emit(words(A.li(r, rng.chance(0.3) ? rng.pick(INTERESTING) : rng.u64())), 1);
  if (timer !== undefined) {
    // mtimecmp = timer (mtime counts instructions here), MTIE, MIE.
    g.emit(words(A.li(A.R.t6, CLINT_BASE + 0x4000), A.li(A.R.t5, timer), A.sd(A.R.t5, 0, A.R.t6)), 1);
    g.emit(words(A.li(A.R.t5, 1 << 7), A.csrrs(0, A.CSR.mie, A.R.t5), A.csrrsi(0, A.CSR.mstatus, 8)), 1);
  }
  // The body starts the next page, or a little into it (then long bodies cross into a third): the
  // translator's first translation of that page starts at the body, so it sees the loops whole (up
  // to its instruction limit) before it pins entries it learns while the interpreter runs there.
  const body = g.asm.label();
  g.asm.jump(body, false);
  // (Or near its end, so that short bodies cross into the next page too, some of their loop heads
  // straddling the boundary.)
  const into = rng.below(4);
  g.asm.padTo(PAGE_SIZE + (into === 0 ? 0 : into === 1 ? PAGE_SIZE - 2 - 2 * rng.below(0x100) : 2 * rng.below(0x400)));
  g.asm.place(body);
  // The body runs `rounds` times (counted in t4, as the streams' loops), all of it hot.
  const rounds = rng.between(2, 4);
  g.emit(words(A.li(LOOPS, rounds)), 1);
  const round = g.asm.label();
  g.asm.place(round);
  const start = g.count;
  g.block(length, 0, { ...top, weight: rounds });
  const instructions = g.count - start;
  g.emit(words(A.addi(LOOPS, LOOPS, -1)), rounds);
  g.asm.branch("bne", LOOPS, 0, round, false);
  const done = g.asm.label();
  g.asm.place(done);
  g.emit(words(A.li(A.R.t6, A.FINISHER), A.li(A.R.t5, 0x5555), A.sw(A.R.t5, 0, A.R.t6)), 1);
  const spin = g.asm.label();
  g.asm.place(spin);
  g.asm.jump(spin, false);
  g.subroutines();
  const code = g.asm.assemble();
  if (code.length > Number(0x4_0000)) throw new RangeError(`loop program of seed ${seed} is too long (${code.length} bytes)`);
  const handler = streamHandler(CODE + BigInt(code.length), CODE + BigInt(g.asm.offsetOf(done)), timer);
  return {
    seed,
    segments: streamSegments(code, handler, rng),
    entry: CODE,
    instructions,
    loops: 1,
    // A trap costs about 16 instructions of the handler.
    maxSteps: 16 * g.dynamic + 50_000,
  };
}
