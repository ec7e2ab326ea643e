/**
 * Failure injection specs, as given to `kmemvisor run --inject`:
 *   due@T:ADDR[:COPY]        at T seconds after the harts start, an uncorrectable error (DUE)
 *                            poisons the frame holding guest-physical ADDR in copy COPY (0 = primary);
 *   sdc@T:ADDR:BIT[:COPY]    at T seconds, a silent corruption flips bit BIT (0–7) of the byte at
 *                            ADDR in copy COPY (0 = primary); only the scrubber can notice it;
 *   due@i:N:ADDR[:COPY], sdc@i:N:ADDR:BIT[:COPY]
 *                            the same, when hart 0 has retired N instructions: hart 0 itself injects
 *                            at its first instruction boundary at or after the Nth (exact on the
 *                            interpreter; translated code checks its budget only at block ends and
 *                            loop back edges, so up to one block later). Independent of the host's
 *                            speed, and of the guest's exit racing a timer; the other harts run on
 *                            meanwhile, so on several harts their progress at that point still varies.
 */
import { PAGE_SIZE } from "../shared-mem/layout.ts";
import type { PhysicalMap } from "../shared-mem/p2m.ts";

export interface MemoryInjection {
  kind: "due" | "sdc";
  /** Milliseconds after the harts start (`due@T`); absent for an instruction-count trigger. */
  atMs?: number;
  /** Instructions hart 0 has retired (`due@i:N`); absent for a timed trigger. */
  atInstruction?: number;
  gpa: number;
  copy: number;
  /** For "sdc": the bit of the byte at gpa to flip. */
  bit: number;
}

const NUMBER = "(0x[0-9a-f]+|\\d+)";
/** `T` seconds, or `i:N` instructions. */
const WHEN = "(\\d+(?:\\.\\d+)?|i:(?:0x[0-9a-f]+|\\d+))";

function trigger(when: string): Pick<MemoryInjection, "atMs" | "atInstruction"> {
  return when.toLowerCase().startsWith("i:") ? { atInstruction: Number(when.slice(2)) } : { atMs: Number(when) * 1000 };
}

export function parseInjection(spec: string): MemoryInjection {
  const due = new RegExp(`^due@${WHEN}:${NUMBER}(?::(\\d))?$`, "i").exec(spec.trim());
  if (due) return { kind: "due", ...trigger(due[1]!), gpa: Number(due[2]), copy: Number(due[3] ?? 0), bit: 0 };
  const sdc = new RegExp(`^sdc@${WHEN}:${NUMBER}:([0-7])(?::(\\d))?$`, "i").exec(spec.trim());
  if (sdc) return { kind: "sdc", ...trigger(sdc[1]!), gpa: Number(sdc[2]), bit: Number(sdc[3]), copy: Number(sdc[4] ?? 0) };
  throw new RangeError(
    `bad --inject "${spec}": expected due@WHEN:ADDRESS[:COPY] or sdc@WHEN:ADDRESS:BIT[:COPY], WHEN being SECONDS or i:INSTRUCTIONS, e.g. due@0.5:0x80200000 or due@i:1000000:0x80200000`,
  );
}

/** Where an injection may land: guest RAM and the VM's copies of it. */
export interface InjectionTarget {
  ramBase: number;
  ramSize: number;
  copies: number;
}

/**
 * Refuse, when the flags are read, an injection that could never land: an address outside guest
 * RAM, a copy the VM does not have (a mirror copy of an unmirrored VM among them). Firing one
 * would stop the VM mid-run instead (issue 16, item 10).
 */
export function checkInjection(spec: string, injection: MemoryInjection, target: InjectionTarget): void {
  const { ramBase, ramSize, copies } = target;
  if (injection.gpa < ramBase || injection.gpa >= ramBase + ramSize) {
    throw new RangeError(
      `bad --inject "${spec}": 0x${injection.gpa.toString(16)} is not in guest RAM (0x${ramBase.toString(16)}–0x${(ramBase + ramSize - 1).toString(16)})`,
    );
  }
  if (injection.copy >= copies) {
    throw new RangeError(
      copies === 1
        ? `bad --inject "${spec}": copy ${injection.copy} does not exist: the VM is not mirrored (give --mirror)`
        : `bad --inject "${spec}": copy ${injection.copy} does not exist: the VM has copies 0–${copies - 1}`,
    );
  }
}

/** What applying an injection needs: the shared memory, its p2m and a way to drop every hart's TLB. */
export interface InjectionMemory {
  buffer: ArrayBufferLike;
  copyStride: number;
  copies: number;
  physicalMap: PhysicalMap;
  /**
   * Run `change` while every hart is held out of its engine with a TLB flush pending
   * (sync/shootdown.ts): a hart storing through a cached entry after the poison would write a
   * frame that recovery is about to replace, and its store would be lost.
   */
  holding(change: () => void): void;
}

/**
 * Apply one injection (from any thread: the main thread for timed ones, hart 0's for counted
 * ones). A DUE poisons the frame and drops every TLB; an SDC flips the bit silently.
 */
export function applyInjection(injection: MemoryInjection, memory: InjectionMemory): void {
  const { gpa, copy } = injection;
  const page = memory.physicalMap.pageOf(gpa);
  if (page < 0) throw new RangeError(`--inject: 0x${gpa.toString(16)} is not in guest RAM`);
  if (copy < 0 || copy >= memory.copies) throw new RangeError(`--inject: copy ${copy} does not exist`);
  const frame = memory.physicalMap.frameOf(page);
  if (injection.kind === "due") {
    memory.holding(() => memory.physicalMap.setPoison(copy, frame, true));
  } else {
    const host = frame * PAGE_SIZE + (gpa % PAGE_SIZE) + copy * memory.copyStride;
    Atomics.xor(new Uint8Array(memory.buffer), host, 1 << injection.bit);
  }
}

/**
 * The counted injections (`@i:N`) of a run, carried out by hart 0's thread between engine calls:
 * each engine call's budget ends at the next one, so the hart stops at that instruction boundary.
 */
export class CountedInjections {
  private readonly pending: MemoryInjection[];
  /** Injections carried out so far. */
  injected = 0;

  constructor(injections: readonly MemoryInjection[], private readonly apply: (injection: MemoryInjection) => void) {
    this.pending = injections.filter((i) => i.atInstruction !== undefined).sort((a, b) => b.atInstruction! - a.atInstruction!);
  }

  /** The budget of hart 0's next engine call: `slice`, or less to stop at the next injection. */
  budget(retired: number, slice: number): number {
    const next = this.pending.at(-1)?.atInstruction;
    return next === undefined ? slice : Math.max(1, Math.min(slice, next - retired));
  }

  /** Carry out those due once hart 0 has retired `retired` instructions. */
  fire(retired: number): void {
    while (this.pending.length > 0 && this.pending.at(-1)!.atInstruction! <= retired) {
      this.apply(this.pending.pop()!);
      this.injected++;
    }
  }
}

/** The timed injections (`@T`): the run loop carries them out. */
export function timedInjections(injections: readonly MemoryInjection[]): MemoryInjection[] {
  return injections.filter((i) => i.atInstruction === undefined);
}

/**
 * Random DUEs for soak runs: `random@RATE[:SEED]` injects DUEs at RATE per second on average
 * (exponential gaps), each into a uniformly chosen guest page and copy. The same seed gives the
 * same sequence, so a failing run can be repeated.
 */
export interface RandomInjection {
  ratePerSecond: number;
  seed: number;
}

export function parseRandomInjection(spec: string): RandomInjection | undefined {
  const match = /^random@(\d+(?:\.\d+)?)(?::(\d+))?$/i.exec(spec.trim());
  if (!match) return undefined;
  const ratePerSecond = Number(match[1]);
  if (!(ratePerSecond > 0)) throw new RangeError(`bad --inject "${spec}": the rate must be above 0`);
  return { ratePerSecond, seed: Number(match[2] ?? 1) };
}

/** A small seeded generator (mulberry32): repeatable, and plenty for choosing pages. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The DUEs of a random injection within the first `horizonMs` (at most `limit` of them). */
export function randomInjections(
  spec: RandomInjection,
  ram: { base: number; size: number; copies: number },
  horizonMs: number,
  limit = 100_000,
): MemoryInjection[] {
  const random = mulberry32(spec.seed);
  const out: MemoryInjection[] = [];
  const pages = ram.size / 4096;
  for (let atMs = 0; out.length < limit; ) {
    atMs += (-Math.log(1 - random()) / spec.ratePerSecond) * 1000;
    if (atMs > horizonMs) break;
    const gpa = ram.base + Math.floor(random() * pages) * 4096;
    out.push({ kind: "due", atMs, gpa, copy: Math.floor(random() * ram.copies), bit: 0 });
  }
  return out;
}
