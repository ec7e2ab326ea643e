/**
 * Memory ownership for a mirrored VM with one hart: the hart holds one VM-wide lock for the whole
 * of each run (Hart.run, many thousands of instructions), and the host threads that write guest
 * memory (device DMA and HTIF replies on the main thread, the scrubber's repairs) take that lock
 * instead of the stripe locks.
 *
 * Why: with one hart, the only writers a hart store can race with are those host threads, and
 * they write rarely. Per-store stripe locks cost a locked read-modify-write per store, and on x86
 * that drains the store buffer: the cache-missing primary and mirror stores before it must
 * complete first, so stores stop overlapping (memstress under `striped`: +82% against `none`).
 * One lock per run costs nothing per store, and the engines emit none (EngineMemory.lockFree).
 * It keeps the `striped`/`global` promise: no host write lands between a store's primary and
 * mirror writes, since neither side writes without the lock.
 *
 * A host writer that finds the lock held counts itself in OWNER_WAITERS and asks the hart's engine
 * to return (kickHart), so it waits for at most the rest of a block, not a whole slice. The hart
 * lets counted waiters go first before it takes the lock again; else a hart that releases and
 * re-takes within a microsecond would starve a waiter that needs tens of microseconds to wake.
 *
 * A hart must not hold the lock while it blocks on another thread: MMIO through the worker's
 * mailbox waits for the main thread, whose device may DMA; that call runs under setAside().
 *
 * Whether this thread holds the lock is module state, and module state is per thread (each worker
 * loads its own copy), so host code on the hart's own thread (slow-path stores, MMU A/D updates,
 * devices of an inline VM) sees that it already holds it and does not lock again.
 */
import { ControlSlot, type MemoryLayout } from "../shared-mem/layout.ts";
import { kickHart } from "./hart-signals.ts";
import { lockWord, tryLockWord, unlockWord } from "./mutex.ts";

/** Longest time a hart lets waiting host writers go first (bounded, so a lost wake-up cannot hang it). */
const WAITER_GRACE_MS = 20;

let heldByThisThread = false;

/** Whether a VM with this layout runs under memory ownership: mirrored, one hart. */
export function hartOwnsMemory(layout: Pick<MemoryLayout, "copies" | "harts">): boolean {
  return layout.copies > 1 && layout.harts === 1;
}

export class MemoryOwner {
  private readonly lockIndex: number;
  private readonly waitersIndex: number;
  private readonly hartBase: number;

  constructor(
    private readonly words: Int32Array,
    layout: MemoryLayout,
  ) {
    this.lockIndex = (layout.controlOffset + ControlSlot.OWNER_LOCK) >>> 2;
    this.waitersIndex = (layout.controlOffset + ControlSlot.OWNER_WAITERS) >>> 2;
    this.hartBase = layout.hartOffset(0);
  }

  /** Whether the calling thread holds the lock. */
  get heldHere(): boolean {
    return heldByThisThread;
  }

  // --- the hart's thread ------------------------------------------------------------------
  /** Run the hart's `body` holding the lock, after any host writer already waiting for it. */
  whileRunning<T>(body: () => T): T {
    if (heldByThisThread) return body();
    this.acquireForHart();
    try {
      return body();
    } finally {
      this.release();
    }
  }

  /** Run `blocking` (which may wait for a thread that writes guest memory) without the lock. */
  setAside<T>(blocking: () => T): T {
    if (!heldByThisThread) return blocking();
    this.release();
    try {
      return blocking();
    } finally {
      this.acquireForHart();
    }
  }

  private acquireForHart(): void {
    const deadline = Date.now() + WAITER_GRACE_MS;
    for (let waiting = Atomics.load(this.words, this.waitersIndex); waiting !== 0 && Date.now() < deadline; ) {
      Atomics.wait(this.words, this.waitersIndex, waiting, WAITER_GRACE_MS);
      waiting = Atomics.load(this.words, this.waitersIndex);
    }
    lockWord(this.words, this.lockIndex);
    heldByThisThread = true;
  }

  private release(): void {
    heldByThisThread = false;
    unlockWord(this.words, this.lockIndex);
  }

  // --- host writers (any thread) ------------------------------------------------------------
  /** Run `write`, a host write to guest memory, holding the lock (at once if this thread holds it). */
  holding<T>(write: () => T): T {
    if (heldByThisThread) return write();
    if (!tryLockWord(this.words, this.lockIndex)) {
      Atomics.add(this.words, this.waitersIndex, 1);
      kickHart(this.words, this.hartBase);
      lockWord(this.words, this.lockIndex);
      Atomics.sub(this.words, this.waitersIndex, 1);
      Atomics.notify(this.words, this.waitersIndex);
    }
    heldByThisThread = true;
    try {
      return write();
    } finally {
      this.release();
    }
  }
}
