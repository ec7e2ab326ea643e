/**
 * Failure injection specs, as given to `kmemvisor run --inject`:
 *   due@T:ADDR[:COPY]      at T seconds after the harts start, an uncorrectable error (DUE)
 *                          poisons the frame holding guest-physical ADDR in copy COPY (0 = primary);
 *   sdc@T:ADDR:BIT[:COPY]  at T seconds, a silent corruption flips bit BIT (0–7) of the byte at
 *                          ADDR in copy COPY (0 = primary); only the scrubber can notice it.
 */
export interface MemoryInjection {
  kind: "due" | "sdc";
  /** Milliseconds after the harts start. */
  atMs: number;
  gpa: number;
  copy: number;
  /** For "sdc": the bit of the byte at gpa to flip. */
  bit: number;
}

const NUMBER = "(0x[0-9a-f]+|\\d+)";

export function parseInjection(spec: string): MemoryInjection {
  const due = new RegExp(`^due@(\\d+(?:\\.\\d+)?):${NUMBER}(?::(\\d))?$`, "i").exec(spec.trim());
  if (due) return { kind: "due", atMs: Number(due[1]) * 1000, gpa: Number(due[2]), copy: Number(due[3] ?? 0), bit: 0 };
  const sdc = new RegExp(`^sdc@(\\d+(?:\\.\\d+)?):${NUMBER}:([0-7])(?::(\\d))?$`, "i").exec(spec.trim());
  if (sdc) return { kind: "sdc", atMs: Number(sdc[1]) * 1000, gpa: Number(sdc[2]), bit: Number(sdc[3]), copy: Number(sdc[4] ?? 0) };
  throw new RangeError(
    `bad --inject "${spec}": expected due@SECONDS:ADDRESS[:COPY] or sdc@SECONDS:ADDRESS:BIT[:COPY], e.g. due@0.5:0x80200000`,
  );
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
