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
