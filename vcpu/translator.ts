/**
 * The translator: one hot 4 KiB page of guest code becomes one WebAssembly function (v86-style).
 *
 * The function keeps the guest registers the page uses in wasm locals, and dispatches its entry
 * points with one br_table over the page offset: a loop whose body is a nest of blocks, one per
 * entry (leader), innermost first. Straight-line code falls from one leader's code into the next;
 * every taken jump sets `npc` and branches back to the dispatch loop, which checks the budget and
 * the hart's EXIT_REQUEST word (interrupts, stop, pause) — so the latency of an interrupt is
 * bounded by one straight-line run of at most a page. Leaving the page, or reaching an offset with
 * no translation, returns to the host, which dispatches the next page (vcpu/jit.ts).
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
import { HartSlot } from "../shared-mem/layout.ts";
import { decode, type Decoded } from "./decoder.ts";
import { Cause, Exit } from "./exits.ts";
import { ILLEGAL_OP } from "./isa.ts";
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
    return this.br(this.depth - label);
  }
}

/** Instructions after which execution never continues with the next one in this function. */
const NEVER_FALLS_THROUGH = new Set(["jal", "jalr", "ecall", "ebreak", "mret", "sret", "wfi", "sfence.vma", "fence.i"]);
/** Instructions that leave for the host, which resumes (or traps) after them. */
const HOST_INSTRUCTIONS = new Set(["ecall", "ebreak", "mret", "sret", "wfi", "sfence.vma", "fence.i"]);
const isBranch = (name: string) => name.startsWith("b");
/**
 * Instructions translated per page beyond the straight-line code at the wanted entries. Measured:
 * capping it lower (384) saved little translation time and cost many recompilations, as loops
 * left out are soon entered; so by default the whole reachable page is taken.
 */
export const MAX_INSTRUCTIONS = 2048;

export interface TranslationOptions {
  /**
   * Lockstep mode (the differential tester): every instruction is an entry and returns to the
   * dispatch loop, which checks the budget, so a call with budget 1 runs exactly one instruction.
   */
  everyInstruction?: boolean;
}

export interface Translation {
  /** The encoded module: imports the shared memory and the slow paths, exports `run`. */
  bytes: Uint8Array<ArrayBuffer>;
  /** Page offsets the function can be entered at. */
  entries: number[];
  /** Instructions translated. */
  instructions: number;
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

/**
 * Find the code of the page reachable from `wanted` entries: decode forward from each until an
 * instruction that never falls through, adding the page's static branch targets and the
 * instructions after jumps and host instructions (where calls return and the host resumes).
 */
export function discover(
  page: Uint8Array,
  wanted: Iterable<number>,
  everyInstruction = false,
  maxInstructions = MAX_INSTRUCTIONS,
): { code: Map<number, Decoded>; leaders: Set<number> } {
  const code = new Map<number, Decoded>();
  const leaders = new Set<number>();
  const work: number[] = [];
  const want = (offset: number) => {
    if (offset < 0 || offset >= PAGE || offset % 2 !== 0 || leaders.has(offset)) return;
    leaders.add(offset);
    work.push(offset);
  };
  for (const offset of wanted) want(offset);
  // The straight-line code at every wanted entry, then breadth first from there up to a limit:
  // the code near where the guest runs is what is hot, and translation time grows with size
  // (entries found later cost a recompile).
  const wantedCount = work.length;
  for (let next = 0; next < work.length && (next < wantedCount || code.size < maxInstructions); next++) {
    for (let offset = work[next]!; !code.has(offset) && (next < wantedCount || code.size < maxInstructions); ) {
      const d = decodeAt(page, offset);
      if (!d) break;
      code.set(offset, d);
      const next = offset + d.length;
      if (everyInstruction) leaders.add(offset);
      if (d.name === "jal" || isBranch(d.name)) want(offset + d.imm);
      if (d.name === "jal" || d.name === "jalr" || isBranch(d.name) || HOST_INSTRUCTIONS.has(d.name)) want(next);
      if (NEVER_FALLS_THROUGH.has(d.name)) break;
      offset = next;
    }
  }
  // A leader whose bits do not decode stays out: the dispatch reports it untranslated.
  for (const offset of leaders) if (!code.has(offset)) leaders.delete(offset);
  // Code is emitted in address order; an instruction that does not follow on from the one emitted
  // before it (decode streams that overlap) is reached through the dispatch, so it is a leader.
  let expected = -1;
  for (const offset of [...code.keys()].sort((a, b) => a - b)) {
    if (offset !== expected) leaders.add(offset);
    const d = code.get(offset)!;
    expected = NEVER_FALLS_THROUGH.has(d.name) ? -1 : offset + d.length;
  }
  return { code, leaders };
}

/**
 * Simple loops: a backward static jump or branch at B to a leader T, where T..B is straight-line
 * code with no other entry inside. Such a loop becomes a wasm `loop`, so its back edge skips the
 * dispatch (and the compiler sees a natural loop, keeping registers in machine registers).
 * Returns loop head → offset of the back-edge instruction.
 */
function simpleLoops(code: Map<number, Decoded>, leaders: Set<number>): Map<number, number> {
  const loops = new Map<number, number>();
  for (const [back, d] of code) {
    if (!(d.name === "jal" || isBranch(d.name)) || d.imm > 0) continue;
    const head = back + d.imm;
    if (!leaders.has(head) || loops.has(head)) continue;
    // Every instruction after the head, the back edge included, must be reached only by falling
    // through: an entry block's end inside the wasm loop would close the loop instead.
    let offset = head;
    let straight = true;
    while (straight && offset < back) {
      const inside = code.get(offset);
      if (!inside || NEVER_FALLS_THROUGH.has(inside.name)) straight = false;
      else {
        offset += inside.length;
        if (leaders.has(offset)) straight = false;
      }
    }
    // Nor may code of another decode stream (overlapping instructions) lie between them: it is
    // emitted in address order, so inside the loop; the first such instruction is always a leader.
    for (const leader of leaders) if (leader > head && leader <= back) straight = false;
    if (straight && offset === back) loops.set(head, back);
  }
  return loops;
}

interface TranslatorLocals {
  budget: number;
  npc: number;
  retired: number;
  exitCode: number;
  stopAfter: number;
  /** Local of x[i], or -1 for x0 and registers the page does not use. */
  x: number[];
}

class TranslatorSem extends WasmSem {
  /** The instruction being emitted, its guest pc, and instructions since `retired` was updated. */
  current!: Instruction;
  currentPc = 0n;
  pending = 0;
  /** Set when the current instruction called a slow path (it may have asked to stop after it). */
  calledHost = false;
  exitLabel = 0;
  dispatchLabel = 0;
  /** Entry offset → the depth its block was opened at, while that block is still open. */
  readonly openEntries = new Map<number, number>();
  /** Every instruction an entry, each returning to the dispatch (TranslationOptions.everyInstruction). */
  lockstep = false;
  /** Loop head offset → the depth its wasm loop was opened at, while the loop is open. */
  readonly openLoops = new Map<number, number>();

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
      // The back edge of a simple loop: round the wasm loop, checking only budget and requests.
      const f = this.f;
      this.retire(this.pending + 1);
      f.get(this.l.retired).get(this.l.budget).op(Op.i32_ge_u);
      f.get(this.hart).mem(Op.i32_load, HartSlot.EXIT_REQUEST).op(Op.i32_or).if();
      f.i64(BigInt.asIntN(64, this.currentPc + BigInt(d.imm))).set(this.l.npc);
      f.i32(Exit.Budget).set(this.l.exitCode);
      this.body.brTo(this.exitLabel);
      f.end();
      this.releaseHeldLockIfWanted();
      this.body.brTo(loop);
      return;
    }
    // (Not in lockstep, where every instruction must pass the dispatch's budget check.)
    const label = staticTarget === undefined || this.lockstep ? undefined : this.openEntries.get(staticTarget);
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
    this.calledHost = true;
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
  const { code, leaders } = discover(page, wanted, options.everyInstruction);
  if (leaders.size === 0) return undefined;
  const offsets = [...code.keys()].sort((a, b) => a - b);
  const entries = [...leaders].sort((a, b) => a - b);
  const loops = options.everyInstruction ? new Map<number, number>() : simpleLoops(code, leaders);

  const m = new ModuleBuilder();
  m.importSharedMemory("env", "memory", memoryPages);
  const slow = importSlowPaths(m);
  const f = new LabelledBody(2);
  const hart = 0;
  const used = new Set<number>();
  for (const d of code.values()) for (const r of [d.rd, d.rs1, d.rs2]) if (r !== 0) used.add(r);
  const written = new Set([...code.values()].map((d) => d.rd).filter((r) => r !== 0));
  const l: TranslatorLocals = {
    budget: 1,
    npc: f.local(ValType.I64),
    retired: f.local(ValType.I32),
    exitCode: f.local(ValType.I32),
    stopAfter: f.local(ValType.I32),
    x: Array.from({ length: 32 }, (_, r) => (used.has(r) ? f.local(ValType.I64) : -1)),
  };
  const dataTlb = f.local(ValType.I32);
  const pageOffset = f.local(ValType.I64);
  const s = new TranslatorSem(f, memory, slow, hart, dataTlb, l);
  s.lockstep = options.everyInstruction === true;

  // Prologue: the data TLB set the host chose, the registers, the entry pc.
  f.get(hart).get(hart).mem(Op.i32_load, HartSlot.DATA_TLB).op(Op.i32_add).set(dataTlb);
  for (const r of used) f.get(hart).mem(Op.i64_load, HartSlot.X + 8 * r).set(l.x[r]!);
  f.get(hart).mem(Op.i64_load, HartSlot.PC).set(l.npc);
  s.loadTlbTag();

  f.block();
  s.exitLabel = f.depth;
  f.loop();
  s.dispatchLabel = f.depth;
  {
    // Between blocks: out of budget, or another thread wants the hart (interrupt, stop, pause).
    f.get(l.retired).get(l.budget).op(Op.i32_ge_u);
    f.get(hart).mem(Op.i32_load, HartSlot.EXIT_REQUEST).op(Op.i32_or).if();
    // (The epilogue releases a batched mirror lock.)
    f.i32(Exit.Budget).set(l.exitCode).brTo(s.exitLabel);
    f.end();
    // A batched mirror lock another hart waits for is let go at the latest here.
    s.releaseHeldIfWanted();
    // Leaving the page: the host finds the code of the next one.
    f.get(l.npc).i64(BigInt.asIntN(64, virtualPage)).op(Op.i64_sub).tee(pageOffset).i64(PAGE).op(Op.i64_ge_u).if();
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
      if (leaders.has(offset)) {
        // Code arriving by falling through counts its instructions before the label.
        s.retire(s.pending);
        s.pending = 0;
        f.end();
        s.openEntries.delete(offset);
      }
      const d = code.get(offset)!;
      const loopEnd = loops.get(offset);
      if (loopEnd !== undefined) {
        f.loop();
        s.openLoops.set(offset, f.depth);
      }
      s.current = { offset, d };
      s.currentPc = virtualPage + BigInt(offset);
      s.calledHost = false;
      s.resetTemps();
      const meaning = SEMANTICS[d.name];
      if (!meaning) throw new Error(`no semantics for instruction ${d.name}`);
      meaning(s);
      const next = offset + d.length;
      const nextPc = s.currentPc + BigInt(d.length);
      if (s.calledHost) {
        // A slow path asked to return after this instruction (CSR write, MMIO, stop request).
        f.get(l.stopAfter).if();
        s.leave(Exit.Budget, nextPc, s.pending + 1);
        f.end();
      }
      for (const [head, end] of loops) {
        if (end === offset && s.openLoops.has(head)) {
          f.end(); // the loop: falling out of it is the branch not taken
          s.openLoops.delete(head);
        }
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
  f.get(hart).get(l.npc).mem(Op.i64_store, HartSlot.PC);
  f.get(hart).get(l.retired).op(Op.i64_extend_i32_u).mem(Op.i64_store, HartSlot.RETIRED);
  s.flushMirroredStores();
  f.get(l.exitCode);

  m.defineFunction({ params: [ValType.I32, ValType.I32], results: [ValType.I32] }, f, "run");
  return { bytes: m.encode(), entries, instructions: code.size };
}
