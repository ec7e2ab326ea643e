/**
 * Failure injection specs, as given to `kmemvisor run --inject`:
 *   due@T:ADDR[:COPY]   at T seconds after the harts start, an uncorrectable error (DUE) poisons
 *                       the frame holding guest-physical ADDR (hex) in copy COPY (0 = primary).
 */
export interface DueInjection {
  kind: "due";
  /** Milliseconds after the harts start. */
  atMs: number;
  gpa: number;
  copy: number;
}

export function parseInjection(spec: string): DueInjection {
  const match = /^due@(\d+(?:\.\d+)?):(0x[0-9a-f]+|\d+)(?::(\d))?$/i.exec(spec.trim());
  if (!match) {
    throw new RangeError(`bad --inject "${spec}": expected due@SECONDS:ADDRESS[:COPY], e.g. due@0.5:0x80200000`);
  }
  return { kind: "due", atMs: Number(match[1]) * 1000, gpa: Number(match[2]), copy: Number(match[3] ?? 0) };
}
