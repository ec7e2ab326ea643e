/**
 * The mirror lock table: STRIPE_COUNT mutexes (sync/mutex.ts), each alone in a host cache line.
 * Stripe of a host address = (address >> 6) mod STRIPE_COUNT, i.e. page number · 64 + line within
 * the page: locality-preserving, so harts working on different pages take different lock lines
 * (a table hashed over all lines makes every hart touch every lock line, and they bounce between
 * cores). Under `global` every address maps to stripe 0.
 *
 * Host code (slow-path stores, MMU A/D updates, DMA, the scrubber) locks through this class;
 * engines compute the same lock address inline (vcpu/wasm/wasm-sem.ts, lockAddressOf below).
 * A mirrored one-hart VM uses no stripe at all: its hart owns the memory for each run, and host
 * writers take the owner lock instead (sync/owner.ts).
 */
import { LOCK_STRIDE, STRIPE_COUNT, STRIPE_LINE_SHIFT, type MemoryLayout, type SyncStrategy } from "../shared-mem/layout.ts";
import { lockWord, unlockWord } from "./mutex.ts";
import { locksAtomics, locksStores } from "./strategy.ts";
import { hartOwnsMemory, MemoryOwner } from "./owner.ts";

/** Stripe number of a host (primary) address. */
export function stripeOf(hostAddress: number): number {
  return (hostAddress >>> STRIPE_LINE_SHIFT) & (STRIPE_COUNT - 1);
}

/** Byte address of the lock word guarding `hostAddress` under `strategy`. */
export function lockAddressOf(layout: MemoryLayout, hostAddress: number): number {
  return layout.lockOffset + (layout.sync === "global" ? 0 : stripeOf(hostAddress) * LOCK_STRIDE);
}

export class MirrorLocks {
  readonly strategy: SyncStrategy;
  private readonly words: Int32Array;
  /** Whether there is anything to keep consistent: an unmirrored VM never locks. */
  private readonly mirrored: boolean;
  /** A one-hart VM's memory owner (sync/owner.ts), which stands in for every stripe. */
  readonly owner: MemoryOwner | undefined;

  constructor(buffer: ArrayBufferLike, private readonly layout: MemoryLayout) {
    this.words = new Int32Array(buffer);
    this.strategy = layout.sync;
    this.mirrored = layout.copies > 1;
    this.owner = hartOwnsMemory(layout) ? new MemoryOwner(this.words, layout) : undefined;
  }

  /** Run `write`, which updates every copy of [host, host+length), as the strategy says stores must. */
  forStore<T>(host: number, length: number, write: () => T): T {
    return this.mirrored && locksStores(this.strategy) ? this.holding(host, length, write) : write();
  }

  /**
   * Run `update`, an atomic read-modify-write of every copy of the word at `host`. With one hart
   * only that hart runs atomics, so under `atomic` (where host writers take no lock) there is
   * nothing to exclude; under `striped`/`global` the owner lock excludes the host writers.
   */
  forAtomic<T>(host: number, width: number, update: () => T): T {
    if (!this.mirrored || !locksAtomics(this.strategy)) return update();
    if (this.owner && !locksStores(this.strategy)) return update();
    return this.holding(host, width, update);
  }

  /**
   * Hold every lock covering [host, host+length) while `body` runs. Locks are taken in ascending
   * word order, so two threads needing overlapping sets cannot deadlock (an engine holds one lock
   * at a time, and the host takes its set in the same order). Under memory ownership: the owner lock.
   */
  holding<T>(host: number, length: number, body: () => T): T {
    if (this.owner) return this.owner.holding(body);
    const indices = this.lockIndices(host, length);
    for (const index of indices) lockWord(this.words, index);
    try {
      return body();
    } finally {
      for (let i = indices.length - 1; i >= 0; i--) unlockWord(this.words, indices[i]!);
    }
  }

  private lockIndices(host: number, length: number): number[] {
    if (this.strategy === "global") return [this.layout.lockOffset >>> 2];
    const first = host >>> STRIPE_LINE_SHIFT;
    const last = (host + Math.max(length, 1) - 1) >>> STRIPE_LINE_SHIFT;
    const stripes = new Set<number>();
    for (let line = first; line <= last && stripes.size < STRIPE_COUNT; line++) stripes.add(line & (STRIPE_COUNT - 1));
    return [...stripes].sort((a, b) => a - b).map((s) => (this.layout.lockOffset + s * LOCK_STRIDE) >>> 2);
  }
}
