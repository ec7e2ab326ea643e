/**
 * The multi-core consistency strategies of a mirrored VM: what keeps a store and its mirror writes
 * from interleaving with another hart's (or the host's) write to the same bytes.
 *
 * Engines and host code ask the two questions below; the lock words and their numbering are in
 * sync/stripes.ts, the protocol in sync/mutex.ts.
 */
import { DEFAULT_SYNC, type SyncStrategy } from "../shared-mem/layout.ts";

export { DEFAULT_SYNC, type SyncStrategy };

export const SYNC_STRATEGIES: readonly SyncStrategy[] = ["none", "atomic", "striped", "global"];

/** What each strategy promises, for --help, the README and reports. */
export const SYNC_GUARANTEES: Record<SyncStrategy, string> = {
  none:
    "no locks: each copy takes each store on its own. Copies stay identical only while no two harts " +
    "write the same bytes at once; racy guests (and racing AMO swaps, SCs, min/max) can leave them different",
  atomic:
    "every AMO and SC updates all copies under its stripe's lock, so atomics never leave copies " +
    "different; plain stores take no lock. Correct for data-race-free guests (every well-synchronised " +
    "kernel and program); a plain-store data race can still diverge",
  striped:
    "every mirrored store and atomic holds the mutex of its 64-byte stripe while it writes the copies: " +
    "correct for every guest, racy or not; harts working on different memory take different locks",
  global:
    "one VM-wide mutex around every mirrored store and atomic: correct for every guest, and the " +
    "baseline that shows what striping saves",
};

export function parseSyncStrategy(text: string): SyncStrategy {
  if ((SYNC_STRATEGIES as readonly string[]).includes(text)) return text as SyncStrategy;
  throw new RangeError(`--sync must be one of ${SYNC_STRATEGIES.join(", ")}, got "${text}"`);
}

/** Plain mirrored stores hold a lock. */
export function locksStores(strategy: SyncStrategy): boolean {
  return strategy === "striped" || strategy === "global";
}

/**
 * AMOs, SC and the MMU's A/D updates hold a lock. All of them, the commutative ones (add, and, or,
 * xor, min, max) included: on their own those would converge when applied to each copy atomically,
 * but one amoswap or SC to the same word in between (Linux mixes atomic_add and cmpxchg on one
 * atomic_t) breaks the convergence, so they serialise with those.
 */
export function locksAtomics(strategy: SyncStrategy): boolean {
  return strategy !== "none";
}
