/**
 * How many cases a property-based (fast-check) test runs, and from which seed.
 *
 * `npm test` runs every fuzz target with a fixed seed and a bounded number of cases, so a failure
 * there is reproducible and the suite stays within its time budget; `npm run fuzz` raises the
 * count (FUZZ_RUNS) and takes a fresh seed unless FUZZ_SEED pins one. A failing case prints its
 * seed and path, which fast-check replays.
 */
import type { Parameters } from "fast-check";

const DEFAULT_SEED = 0x6b6d76; // fixed: the bounded runs in `npm test` are the same on every machine
const DEFAULT_RUNS = 100;

/** fast-check parameters for a target; `scale` shrinks the count for slow properties (whole runs). */
export function fuzzParameters<T>(scale = 1): Parameters<T> {
  const runs = Number(process.env.FUZZ_RUNS ?? DEFAULT_RUNS);
  const seed = process.env.FUZZ_SEED ?? (process.env.FUZZ_RUNS ? undefined : String(DEFAULT_SEED));
  return {
    numRuns: Math.max(1, Math.round(runs * scale)),
    ...(seed === undefined ? {} : { seed: Number(seed) }),
  };
}
