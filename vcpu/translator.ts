/**
 * The translator: one hot 4 KiB page of guest code becomes one WebAssembly function (v86-style).
 *
 * The function keeps the guest registers the page uses in wasm locals, and dispatches its entry
 * points with one br_table over the page offset: a loop whose body is a nest of blocks, one per
 * entry (leader), innermost first. Straight-line code falls from one leader's code into the next;
 * a forward static jump branches straight out to its target's block; loops laid out in address
 * order become wasm `loop`s (structuredLoops) whose back edges check the budget and the hart's
 * EXIT_REQUEST word (interrupts, stop, pause); every other jump sets `npc` and goes round the
 * dispatch loop, which checks the same — so the latency of an interrupt is bounded by one
 * straight-line run of at most a page. Leaving the page goes on in the translation of the page
 * the hart's fetch TLB maps the target to, by a tail call through the hart's table of
 * translations (TranslationOptions.chain); reaching an offset with no translation, or a page
 * without one, returns to the host, which dispatches the next page (vcpu/jit.ts).
 *
 * What each instruction does comes from semantics.ts through WasmSem, exactly as in the
 * interpreter: operands are constants and locals instead of decoded fields, that is the only
 * difference. So the memory fast paths, the mirror instrumentation (a second store at + k·S,
 * emitted only for mirrored VMs) and the AMO/SC handling per sync strategy are the same code.
 *
 * Exact traps: a slow path that raises a trap leaves through the common epilogue with pc at the
 * faulting instruction and the retired count of the instructions before it; registers live in
 * locals and are written back there, so the host sees precise state.
 */
import { F_REGS_OFFSET, HartSlot } from "../shared-mem/layout.ts";
import { chunksOf } from "../shared-mem/code-pages.ts";
import { decode, type Decoded } from "./decoder.ts";
import { Cause, Exit } from "./exits.ts";
import { FpRegs, ILLEGAL_OP, INSTRUCTIONS } from "./isa.ts";
import { SEMANTICS } from "./semantics.ts";
import type { Expr } from "./sem.ts";
import { FunctionBody, ModuleBuilder, Op, ValType } from "./wasm/encoder.ts";
import { importSlowPaths, WasmSem, type EngineMemory, type SlowPathFunctions } from "./wasm/wasm-sem.ts";

const PAGE = 4096;

/** A FunctionBody that knows how deeply blocks are nested, so branches can name labels. */
class LabelledBody extends FunctionBody {
  depth = 0;
  override block(type?: number): this {
    this.depth++;
    return super.block(type);
  }
  override loop(type?: number): this {
    this.depth++;
    return super.loop(type);
  }
  override if(type?: number): this {
    this.depth++;
    return super.if(type);
  }
  override end(): this {
    this.depth--;
    return super.end();
  }
  /** Branch to the label opened when depth became `label`. */
  brTo(label: number): this {
    // (A bug in the block structure would otherwise surface as an invalid module.)
    if (label > this.depth) throw new Error(`translator: branch to a closed label (${label} > ${this.depth})`);
    return this.br(this.depth - label);
  }
}

/** Instructions after which execution never continues with the next one in this function. */
const NEVER_FALLS_THROUGH = new Set(["jal", "jalr", "ecall", "ebreak", "mret", "sret", "wfi", "sfence.vma", "fence.i"]);
/** Instructions that leave for the host, which resumes (or traps) after them. */
const HOST_INSTRUCTIONS = new Set(["ecall", "ebreak", "mret", "sret", "wfi", "sfence.vma", "fence.i"]);
const isBranch = (name: string) => name.startsWith("b");
/**
 * Instructions translated per page beyond the straight-line code at the wanted entries (found
 * breadth first, so the code nearest the hot entry comes first). What limits it is not translation
 * time but V8's optimising compiler (TurboFan), which the hot code waits for: its time grows
 * faster than linearly with the function. Measured on cpubound's main page (bench/compile.ts,
 * idle 2-core machine): the whole reachable page (866 instructions) took 221 ms to optimise, 512 of
 * them 110 ms, 256 of them 51 ms, 128 of them 27 ms (2–3× that on a loaded machine); whole runs
 * were a little faster at 256 than at 512, and no faster at 128. Code left out comes with the page's
 * whole translation, made in the background later (vcpu/jit.ts requestWhole), or is learnt as the
 * guest enters it (HOT_ENTRY).
 */
export const MAX_INSTRUCTIONS = 256;

export interface TranslationOptions {
  /**
   * Lockstep mode (the differential tester): every instruction is an entry and returns to the
   * dispatch loop, which checks the budget, so a call with budget 1 runs exactly one instruction.
   */
  everyInstruction?: boolean;
  /** Instructions beyond the wanted entries' straight-line code (default MAX_INSTRUCTIONS; bench/compile.ts varies it). */
  maxInstructions?: number;
  /** Offsets to translate from as well, which need not stay entries (discover). */
  optional?: number[];
  /**
   * Chaining: the host frame the page is translated from and its code generation. Control that
   * leaves the page for a page the hart's fetch TLB maps goes on there through the hart's table
   * of translations (TRANSLATION_TABLE: one function per frame, a stub where there is none) with
   * a tail call, instead of returning to the host, which costs ~8 µs a time; the callee checks
   * that its frame's code has not changed since it was translated. Needs the code map in the
   * EngineMemory. Absent: leaving the page returns to the host.
   */
  chain?: { frame: number; generation: number };
}

/** The import (module, name) of a hart's table of translations, indexed by host frame (vcpu/jit.ts). */
export const TRANSLATION_TABLE = ["chain", "pages"] as const;
/** The type of every translation's `run` function: (hart base, budget, instructions retired so far) -> Exit. */
export const RUN_TYPE = { params: [ValType.I32, ValType.I32, ValType.I32], results: [ValType.I32] };
/** exitCode meaning "continue in the frame in chainFrame" (never returned to the host). */
const CHAIN = -1;

export interface Translation {
  /** The encoded module: imports the shared memory and the slow paths, exports `run`. */
  bytes: Uint8Array<ArrayBuffer>;
  /** Page offsets the function can be entered at. */
  entries: number[];
  /** Instructions translated. */
  instructions: number;
  /** The page's 64-byte chunks the translated instructions lie in (code-pages.ts chunksOf). */
  codeChunks: [number, number];
  /** Whether reachable code was left out (DiscoveredCode.truncated). */
  truncated: boolean;
}

interface Instruction {
  offset: number;
  d: Decoded;
}

/** Read the instruction at `offset`, or undefined when it is not in the page or not valid. */
function decodeAt(page: Uint8Array, offset: number): Decoded | undefined {
  if (offset < 0 || offset + 2 > PAGE || offset % 2 !== 0) return undefined;
  const low = page[offset]! | (page[offset + 1]! << 8);
  let raw = low;
  if ((low & 3) === 3) {
    if (offset + 4 > PAGE) return undefined; // crosses into the next page: the interpreter's job
    raw = (low | (page[offset + 2]! << 16) | (page[offset + 3]! << 24)) >>> 0;
  }
  const d = decode(raw);
  return d.op === ILLEGAL_OP ? undefined : d;
}

/** The code of a page that discover() found, and where it can be entered. */
export interface DiscoveredCode {
  code: Map<number, Decoded>;
  /** Offsets the dispatch can enter at: wanted entries, jump targets, return points, stream starts. */
  leaders: Set<number>;
  /**
   * Leaders that must stay entries whatever the loops: the wanted ones, the instructions after
   * calls and host instructions (where the guest resumes), and the starts of decode streams.
   */
  pinned: Set<number>;
  /** Static jump target → offsets of the jumps and branches to it. */
  jumpsTo: Map<number, number[]>;
  /** Whether the limit on instructions left reachable code out. */
  truncated: boolean;
}

/**
 * Find the code of the page reachable from `wanted` entries: decode forward from each until an
 * instruction that never falls through, adding the page's static branch targets and the
 * instructions after jumps and host instructions (where calls return and the host resumes).
 * The instruction after a conditional branch is not a leader: only its fall-through reaches it.
 * `optional` offsets are decoded from as the wanted ones, but are leaders a loop may absorb
 * (then they are no entries): offsets where the guest entered before without making a case for
 * an entry (translation options).
 */
export function discover(
  page: Uint8Array,
  wanted: Iterable<number>,
  everyInstruction = false,
  maxInstructions = MAX_INSTRUCTIONS,
  optional: Iterable<number> = [],
): DiscoveredCode {
  const code = new Map<number, Decoded>();
  const leaders = new Set<number>();
  const pinned = new Set<number>();
  const jumpsTo = new Map<number, number[]>();
  const work: number[] = [];
  const want = (offset: number, pin: boolean) => {
    if (offset < 0 || offset >= PAGE || offset % 2 !== 0) return;
    if (pin) pinned.add(offset);
    if (leaders.has(offset)) return;
    leaders.add(offset);
    work.push(offset);
  };
  for (const offset of wanted) want(offset, true);
  for (const offset of optional) want(offset, false);
  // The straight-line code at every wanted entry, then breadth first from there up to a limit:
  // the code near where the guest runs is what is hot, and translation time grows with size
  // (entries found later cost a recompile, or wait for the whole-page translation).
  // (The limit counts from the wanted code: a recompile for newly entered offsets also gets the
  // code their branches reach, instead of learning it one missed entry, and one recompile, at a time.)
  const wantedCount = work.length;
  let limit = Infinity;
  for (let next = 0; next < work.length && code.size < limit; next++) {
    if (next === wantedCount) limit = code.size + maxInstructions;
    for (let offset = work[next]!; !code.has(offset) && code.size < limit; ) {
      const d = decodeAt(page, offset);
      if (!d) break;
      code.set(offset, d);
      const next = offset + d.length;
      if (everyInstruction) leaders.add(offset);
      if (d.name === "jal" || isBranch(d.name)) {
        const target = offset + d.imm;
        want(target, false);
        const sources = jumpsTo.get(target);
        if (sources) sources.push(offset);
        else jumpsTo.set(target, [offset]);
      }
      // After a call the callee returns there (pinned); after a plain jump or a return, the next
      // instruction is often another function's start (an entry, but one a loop may absorb).
      if (d.name === "jal" || d.name === "jalr") want(next, d.rd !== 0);
      if (HOST_INSTRUCTIONS.has(d.name)) want(next, true);
      if (NEVER_FALLS_THROUGH.has(d.name)) break;
      offset = next;
    }
  }
  // A leader whose bits do not decode stays out: the dispatch reports it untranslated.
  for (const offset of leaders) if (!code.has(offset)) leaders.delete(offset);
  // Code is emitted in address order; an instruction that does not follow on from the one emitted
  // before it (decode streams that overlap) is reached through the dispatch, so it is a leader.
  // (After a jump, the next instruction is a leader already: only jumps reach it.)
  let expected = -1;
  for (const offset of [...code.keys()].sort((a, b) => a - b)) {
    if (offset !== expected) {
      if (expected !== -1 || !leaders.has(offset)) pinned.add(offset);
      leaders.add(offset);
    }
    const d = code.get(offset)!;
    expected = NEVER_FALLS_THROUGH.has(d.name) ? -1 : offset + d.length;
  }
  return { code, leaders, pinned, jumpsTo, truncated: code.size >= limit };
}

/** A loop the translator makes a wasm `loop`: head..back straight in address order. */
interface StructuredLoop {
  /** Offset of the last backward jump to the head (the loop ends after it). */
  back: number;
  /** Targets of forward jumps inside the loop, given blocks inside it instead of dispatch entries. */
  innerTargets: number[];
}

/**
 * Loops: a backward static jump or branch at B to a leader H, where H..B is code laid out in
 * address order, each instruction falling through to the next or being a plain jump (`j`, over an
 * else) — no call, no indirect jump — and every other leader inside is a target only of forward
 * jumps from inside the loop. Such a loop becomes a wasm `loop` whose inner jump targets are blocks
 * within it, so its back edge and its inner branches skip the dispatch, and the compiler sees a
 * natural loop, keeping registers in machine registers. Loops found are disjoint (a nested loop's
 * head is the target of a backward jump, which disqualifies the outer one). Their inner targets
 * are removed from `leaders`: the host cannot enter there.
 */
function structuredLoops(found: DiscoveredCode): Map<number, StructuredLoop> {
  const { code, leaders, pinned, jumpsTo } = found;
  const loops = new Map<number, StructuredLoop>();
  // Outermost back edge first: for a head with several, the loop spans to the last one.
  const backEdges = [...code]
    .filter(([, d]) => (d.name === "jal" || isBranch(d.name)) && d.imm <= 0)
    .sort((a, b) => b[0] - a[0]);
  for (const [back, d] of backEdges) {
    const head = back + d.imm;
    if (!leaders.has(head) || loops.has(head)) continue;
    let offset = head;
    let ok = true;
    const innerTargets: number[] = [];
    while (ok && offset < back) {
      const inside = code.get(offset);
      // Inside, only plain jumps (`j`: the jump over an else) may not fall through.
      const jumpsAway = inside !== undefined && NEVER_FALLS_THROUGH.has(inside.name);
      if (!inside || (jumpsAway && !(inside.name === "jal" && inside.rd === 0))) ok = false;
      else {
        offset += inside.length;
        if (leaders.has(offset)) {
          const sources = jumpsTo.get(offset) ?? [];
          if (pinned.has(offset) || !sources.every((from) => from >= head && from < offset)) ok = false;
          else innerTargets.push(offset);
        } else if (jumpsAway) ok = false; // (no code reaches it: cannot happen, as it was decoded)
      }
    }
    if (!ok || offset !== back) continue;
    // Nor may code of another decode stream (overlapping instructions) lie inside: it is emitted
    // in address order, so inside the loop, and its first instruction is a (pinned) leader.
    for (const leader of leaders) if (leader > head && leader <= back && !innerTargets.includes(leader)) ok = false;
    if (!ok) continue;
    // Disjoint from the loops already chosen (an outer back edge of an inner head, or overlap).
    let overlaps = false;
    for (const [otherHead, other] of loops) if (head <= other.back && otherHead <= back) overlaps = true;
    if (overlaps) continue;
    loops.set(head, { back, innerTargets });
  }
  for (const loop of loops.values()) for (const target of loop.innerTargets) leaders.delete(target);
  return loops;
}

/**
 * The registers an instruction's fields name, x and f apart (an R4 row's rs3 is in its
 * immediate). Unused fields are counted too (an I-format's rs2 bits): a register too many costs a
 * load, never a wrong value.
 */
function registersOf(d: Decoded): { x: number[]; xWritten?: number; f: number[]; fWritten?: number } {
  const row = INSTRUCTIONS[d.op - 1];
  const fpRegs = row?.fpRegs ?? 0;
  const x: number[] = [], f: number[] = [];
  (fpRegs & FpRegs.RS1 ? f : x).push(d.rs1);
  (fpRegs & FpRegs.RS2 ? f : x).push(d.rs2);
  if (row?.format === "R4") f.push(d.imm >>> 3);
  return fpRegs & FpRegs.RD ? { x, f, fWritten: d.rd } : { x, f, xWritten: d.rd };
}

function writesFpRegister(d: Decoded): boolean {
  return ((INSTRUCTIONS[d.op - 1]?.fpRegs ?? 0) & FpRegs.RD) !== 0;
}

interface TranslatorLocals {
  budget: number;
  npc: number;
  retired: number;
  exitCode: number;
  stopAfter: number;
  /** Local of x[i], or -1 for x0 and registers the page does not use. */
  x: number[];
  /** Local of f[i], or -1 for registers the page does not use (no FP code: none at all). */
  f: number[];
}

class TranslatorSem extends WasmSem {
  /** The instruction being emitted, its guest pc, and instructions since `retired` was updated. */
  current!: Instruction;
  currentPc = 0n;
  pending = 0;
  /** Set when the current instruction's slow path may ask to stop after it (the stopAfter flag). */
  stopAfterSet = false;
  exitLabel = 0;
  dispatchLabel = 0;
  /** Entry offset → the depth its block was opened at, while that block is still open. */
  readonly openEntries = new Map<number, number>();
  /** Every instruction an entry, each returning to the dispatch (TranslationOptions.everyInstruction). */
  lockstep = false;
  /** Loop head offset → the depth its wasm loop was opened at, while the loop is open. */
  readonly openLoops = new Map<number, number>();
  /** Jump target inside the open loop → the depth of its block (opened inside the loop). */
  readonly openInnerTargets = new Map<number, number>();

  constructor(
    readonly body: LabelledBody,
    memory: EngineMemory,
    slow: SlowPathFunctions,
    hart: number,
    dataTlb: number,
    readonly l: TranslatorLocals,
  ) {
    super(body, memory, slow, hart, dataTlb);
    this.batchLocks = true;
  }

  private reg(index: number): Expr {
    return () => {
      if (index === 0) this.f.i64(0);
      else this.f.get(this.l.x[index]!);
    };
  }
  readonly rs1: Expr = () => this.reg(this.current.d.rs1)();
  readonly rs2: Expr = () => this.reg(this.current.d.rs2)();
  readonly imm: Expr = () => this.f.i64(this.current.d.imm);
  readonly pc: Expr = () => this.f.i64(this.currentPc);
  readonly nextPc: Expr = () => this.f.i64(BigInt.asIntN(64, this.currentPc + BigInt(this.current.d.length)));

  protected rs1Field(): void {
    this.f.i32(this.current.d.rs1);
  }

  // The f registers the page uses live in locals too (loaded in the prologue, the written ones
  // stored in the epilogue, which every exit passes).
  private freg(index: number): Expr {
    return () => this.f.get(this.l.f[index]!);
  }
  readonly frs1: Expr = () => this.freg(this.current.d.rs1)();
  readonly frs2: Expr = () => this.freg(this.current.d.rs2)();
  readonly frs3: Expr = () => this.freg(this.current.d.imm >>> 3)();

  protected writeFrd(value: Expr): void {
    value();
    this.f.set(this.l.f[this.current.d.rd]!);
  }

  protected override staticImmediate(): number {
    return this.current.d.imm;
  }

  setRd(value: Expr): void {
    value();
    const rd = this.current.d.rd;
    if (rd === 0) this.f.op(Op.drop);
    else this.f.set(this.l.x[rd]!);
  }

  /** retired += n (translation-time constant). */
  retire(n: number): void {
    if (n === 0) return;
    this.f.get(this.l.retired).i32(n).op(Op.i32_add).set(this.l.retired);
  }

  jump(target: Expr): void {
    // A static target further down the page is reached by branching out to its entry block,
    // skipping the dispatch: forward jumps cannot loop, so no budget check is needed.
    const { d, offset } = this.current;
    const staticTarget = d.name === "jal" || isBranch(d.name) ? offset + d.imm : undefined;
    const loop = staticTarget === undefined ? undefined : this.openLoops.get(staticTarget);
    if (loop !== undefined) {
      // A back edge of the loop being emitted: round the wasm loop, checking only budget and requests.
      const f = this.f;
      this.retire(this.pending + 1);
      f.get(this.l.retired).get(this.l.budget).op(Op.i32_ge_u);
      f.get(this.hart).mem(Op.i32_load, HartSlot.EXIT_REQUEST).op(Op.i32_or).ifHinted(false);
      f.i64(BigInt.asIntN(64, this.currentPc + BigInt(d.imm))).set(this.l.npc);
      f.i32(Exit.Budget).set(this.l.exitCode);
      this.body.brTo(this.exitLabel);
      f.end();
      this.releaseHeldLockIfWanted();
      this.body.brTo(loop);
      return;
    }
    // (Not in lockstep, where every instruction must pass the dispatch's budget check.) A target
    // inside the loop being emitted has its block there; others their entry block.
    const label =
      staticTarget === undefined || this.lockstep ? undefined : (this.openInnerTargets.get(staticTarget) ?? this.openEntries.get(staticTarget));
    if (label !== undefined) {
      this.retire(this.pending + 1);
      this.body.brTo(label);
      return;
    }
    target();
    this.f.set(this.l.npc);
    this.retire(this.pending + 1);
    this.body.brTo(this.dispatchLabel);
  }

  releaseHeld(): void {
    this.releaseHeldLock();
  }

  releaseHeldIfWanted(): void {
    this.releaseHeldLockIfWanted();
  }

  /** Leave with `code`, pc = `pc`, after `retiring` more instructions. */
  leave(code: Exit, pc: bigint, retiring: number): void {
    this.f.i64(BigInt.asIntN(64, pc)).set(this.l.npc);
    this.retire(retiring);
    this.f.i32(code).set(this.l.exitCode);
    this.body.brTo(this.exitLabel);
  }

  exitAtCurrent(code: Exit): void {
    this.leave(code, this.currentPc, this.pending);
  }

  syncForHost(): void {
    const f = this.f;
    this.releaseHeldLock();
    f.get(this.hart).i64(BigInt.asIntN(64, this.currentPc)).mem(Op.i64_store, HartSlot.PC);
    f.get(this.hart).get(this.l.retired).i32(this.pending).op(Op.i32_add).op(Op.i64_extend_i32_u).mem(Op.i64_store, HartSlot.RETIRED);
    this.flushMirroredStores();
  }

  flushMirroredStores(): void {
    if (this.memory.mirrorOffsets.length === 0) return;
    const f = this.f;
    f.get(this.hart).get(this.hart).mem(Op.i64_load, HartSlot.MIRRORED_STORES).get(this.mirroredStores).op(Op.i64_add);
    f.mem(Op.i64_store, HartSlot.MIRRORED_STORES);
    f.i64(0).set(this.mirroredStores);
  }

  protected returnAfterThisInstruction(): void {
    this.f.i32(1).set(this.l.stopAfter);
    this.stopAfterSet = true;
  }

  /**
   * A load's or store's slow path asked to return (a store into translated code, a device that
   * wants the hart, another thread's request): leave from the slow path itself, the load's result
   * written to rd first — so the fast path carries no stop-after test (plain loads and stores are
   * exactly setRd(load) and store in semantics.ts).
   */
  protected override returnAfterMemoryAccess(loadResult: number | undefined): void {
    const rd = this.current.d.rd;
    if (loadResult !== undefined && writesFpRegister(this.current.d)) {
      // flw / fld: the value goes to the f register (a single NaN-boxed).
      const boxed: Expr = () => {
        this.f.get(loadResult);
        if (this.current.d.name === "flw") this.f.i64(-(1n << 32n)).op(Op.i64_or);
      };
      this.setFrd(boxed);
    } else if (loadResult !== undefined && rd !== 0) this.f.get(loadResult).set(this.l.x[rd]!);
    this.leave(Exit.Budget, this.currentPc + BigInt(this.current.d.length), this.pending + 1);
  }

  override illegal(): void {
    this.trap(Cause.IllegalInstruction, this.const(this.current.d.raw));
  }

  override fenceI(): void {
    // The host compares this hart's translated pages with memory (vcpu/jit.ts), then resumes.
    this.exitAtCurrent(Exit.FenceI);
  }
}

/**
 * Translate the page whose bytes are `page`, mapped at guest virtual address `virtualPage`, for
 * entries at `wanted` offsets. Returns undefined when none of them holds a translatable instruction.
 */
export function translatePage(
  memory: EngineMemory,
  memoryPages: number,
  page: Uint8Array,
  virtualPage: bigint,
  wanted: Iterable<number>,
  options: TranslationOptions = {},
): Translation | undefined {
  const found = discover(page, wanted, options.everyInstruction, options.maxInstructions, options.optional);
  const { code, leaders } = found;
  if (leaders.size === 0) return undefined;
  const offsets = [...code.keys()].sort((a, b) => a - b);
  // (Before the entries are listed: a loop's inner jump targets stop being entries.)
  const loops = options.everyInstruction ? new Map<number, StructuredLoop>() : structuredLoops(found);
  const entries = [...leaders].sort((a, b) => a - b);
  const loopEnds = new Map([...loops].map(([head, loop]) => [loop.back, head]));

  const m = new ModuleBuilder();
  m.importSharedMemory("env", "memory", memoryPages);
  const chain = options.chain && !options.everyInstruction && memory.codeMapOffset !== undefined && memory.codeFrames !== undefined
    ? { ...options.chain, codeMapOffset: memory.codeMapOffset, frames: memory.codeFrames }
    : undefined;
  if (chain) m.importTable(TRANSLATION_TABLE[0], TRANSLATION_TABLE[1], chain.frames);
  const slow = importSlowPaths(m);
  const runType = m.typeIndex(RUN_TYPE);
  const f = new LabelledBody(3);
  const hart = 0;
  const used = new Set<number>();
  const written = new Set<number>();
  const usedF = new Set<number>();
  const writtenF = new Set<number>();
  for (const d of code.values()) {
    const r = registersOf(d);
    for (const x of r.x) if (x !== 0) used.add(x);
    if (r.xWritten !== undefined && r.xWritten !== 0) {
      used.add(r.xWritten);
      written.add(r.xWritten);
    }
    for (const x of r.f) usedF.add(x);
    if (r.fWritten !== undefined) {
      usedF.add(r.fWritten);
      writtenF.add(r.fWritten);
    }
  }
  const l: TranslatorLocals = {
    budget: 1,
    npc: f.local(ValType.I64),
    // (The third parameter: what the translations this call went through before retired.)
    retired: 2,
    exitCode: f.local(ValType.I32),
    stopAfter: f.local(ValType.I32),
    x: Array.from({ length: 32 }, (_, r) => (used.has(r) ? f.local(ValType.I64) : -1)),
    f: Array.from({ length: 32 }, (_, r) => (usedF.has(r) ? f.local(ValType.I64) : -1)),
  };
  const dataTlb = f.local(ValType.I32);
  const pageOffset = f.local(ValType.I64);
  const chainFrame = f.local(ValType.I32);
  const s = new TranslatorSem(f, memory, slow, hart, dataTlb, l);
  s.lockstep = options.everyInstruction === true;

  // Prologue. Entered from another translation: only while the frame holds the code this was
  // translated from (a store to it bumped the generation: the host drops this translation).
  if (chain) {
    f.i32(0).mem(Op.i32_load, chain.codeMapOffset + 4 * chain.frame).i32(1).op(Op.i32_shr_u).i32(chain.generation).op(Op.i32_ne).ifHinted(false);
    f.get(hart).get(l.retired).op(Op.i64_extend_i32_u).mem(Op.i64_store, HartSlot.RETIRED);
    f.i32(Exit.NotTranslated).op(Op.return);
    f.end();
  }
  // The data TLB set the host chose, the registers, the entry pc.
  f.get(hart).get(hart).mem(Op.i32_load, HartSlot.DATA_TLB).op(Op.i32_add).set(dataTlb);
  for (const r of used) f.get(hart).mem(Op.i64_load, HartSlot.X + 8 * r).set(l.x[r]!);
  for (const r of usedF) f.get(hart).mem(Op.i64_load, F_REGS_OFFSET + 8 * r).set(l.f[r]!);
  f.get(hart).mem(Op.i64_load, HartSlot.PC).set(l.npc);
  s.loadTlbTag();

  f.block();
  s.exitLabel = f.depth;
  f.loop();
  s.dispatchLabel = f.depth;
  {
    // Between blocks: out of budget, or another thread wants the hart (interrupt, stop, pause).
    f.get(l.retired).get(l.budget).op(Op.i32_ge_u);
    f.get(hart).mem(Op.i32_load, HartSlot.EXIT_REQUEST).op(Op.i32_or).ifHinted(false);
    // (The epilogue releases a batched mirror lock.)
    f.i32(Exit.Budget).set(l.exitCode).brTo(s.exitLabel);
    f.end();
    // A batched mirror lock another hart waits for is let go at the latest here.
    s.releaseHeldIfWanted();
    // Leaving the page: on to the translation of the page the fetch TLB maps npc to (a stub that
    // returns, where the hart has none), or the host finds the code of the next one. (Not when
    // npc maps to this very frame: it is translated for another virtual page, and would come
    // straight back here.)
    f.get(l.npc).i64(BigInt.asIntN(64, virtualPage)).op(Op.i64_sub).tee(pageOffset).i64(PAGE).op(Op.i64_ge_u).if();
    if (chain) {
      s.fetchHostPage(l.npc);
      f.tee(chainFrame).i32(-1).op(Op.i32_ne).if();
      f.get(chainFrame).i32(12).op(Op.i32_shr_u).tee(chainFrame).i32(chain.frames).op(Op.i32_lt_u);
      f.get(chainFrame).i32(chain.frame).op(Op.i32_ne).op(Op.i32_and).if();
      f.i32(CHAIN).set(l.exitCode).brTo(s.exitLabel);
      f.end();
      f.end();
    }
    f.i32(Exit.Budget).set(l.exitCode).brTo(s.exitLabel);
    f.end();

    f.block(); // $miss
    const missLabel = f.depth;
    for (let i = entries.length - 1; i >= 0; i--) {
      f.block();
      s.openEntries.set(entries[i]!, f.depth);
    }
    const labelOf = new Map(entries.map((offset, i) => [offset, i]));
    f.get(pageOffset).op(Op.i32_wrap_i64).i32(1).op(Op.i32_shr_u);
    const depths = Array.from({ length: PAGE / 2 }, (_, h) => labelOf.get(h * 2) ?? entries.length);
    f.brTable(depths, entries.length);

    for (let i = 0; i < offsets.length; i++) {
      const offset = offsets[i]!;
      if (leaders.has(offset) || s.openInnerTargets.has(offset)) {
        // Code arriving by falling through counts its instructions before the label.
        s.retire(s.pending);
        s.pending = 0;
        f.end();
        s.openEntries.delete(offset);
        s.openInnerTargets.delete(offset);
      }
      const d = code.get(offset)!;
      const loop = loops.get(offset);
      if (loop) {
        f.loop();
        s.openLoops.set(offset, f.depth);
        // Blocks for the loop's inner targets, innermost (first reached) last.
        for (const target of [...loop.innerTargets].sort((a, b) => b - a)) {
          f.block();
          s.openInnerTargets.set(target, f.depth);
        }
      }
      s.current = { offset, d };
      s.currentPc = virtualPage + BigInt(offset);
      s.stopAfterSet = false;
      s.resetTemps();
      const meaning = SEMANTICS[d.name];
      if (!meaning) throw new Error(`no semantics for instruction ${d.name}`);
      meaning(s);
      const next = offset + d.length;
      const nextPc = s.currentPc + BigInt(d.length);
      if (s.stopAfterSet) {
        // A slow path asked to return after this instruction (CSR write, MMIO, stop request).
        f.get(l.stopAfter).ifHinted(false);
        s.leave(Exit.Budget, nextPc, s.pending + 1);
        f.end();
      }
      const endingLoop = loopEnds.get(offset);
      if (endingLoop !== undefined && s.openLoops.has(endingLoop)) {
        f.end(); // the loop: falling out of it is the branch not taken
        s.openLoops.delete(endingLoop);
      }
      if (NEVER_FALLS_THROUGH.has(d.name)) continue;
      s.pending++;
      if (offsets[i + 1] !== next || options.everyInstruction) {
        // The next instruction is not the next code emitted: go round the dispatch loop.
        f.i64(BigInt.asIntN(64, nextPc)).set(l.npc);
        s.retire(s.pending);
        s.pending = 0;
        f.brTo(s.dispatchLabel);
      }
    }
    // Any entry not closed above (none: every leader is in `code`) would unbalance the nest.
    if (f.depth !== missLabel) throw new Error("translator: unbalanced entry blocks");
    f.end(); // $miss: the dispatch found no translation at npc
    f.i32(Exit.NotTranslated).set(l.exitCode).brTo(s.exitLabel);
  }
  f.end(); // loop
  f.end(); // $exit

  // Epilogue: registers, pc, retired count, mirrored-store count back to the hart's slots.
  s.releaseHeld();
  for (const r of written) f.get(hart).get(l.x[r]!).mem(Op.i64_store, HartSlot.X + 8 * r);
  for (const r of writtenF) f.get(hart).get(l.f[r]!).mem(Op.i64_store, F_REGS_OFFSET + 8 * r);
  f.get(hart).get(l.npc).mem(Op.i64_store, HartSlot.PC);
  f.get(hart).get(l.retired).op(Op.i64_extend_i32_u).mem(Op.i64_store, HartSlot.RETIRED);
  s.flushMirroredStores();
  if (chain) {
    f.get(l.exitCode).i32(CHAIN).op(Op.i32_eq).if();
    f.get(hart).get(l.budget).get(l.retired).get(chainFrame).returnCallIndirect(runType);
    f.end();
  }
  f.get(l.exitCode);

  m.defineFunction(RUN_TYPE, f, "run");
  const codeChunks: [number, number] = [0, 0];
  for (const [offset, d] of code) {
    const [low, high] = chunksOf(offset, d.length);
    codeChunks[0] |= low;
    codeChunks[1] |= high;
  }
  return { bytes: m.encode(), entries, instructions: code.size, codeChunks, truncated: found.truncated };
}
