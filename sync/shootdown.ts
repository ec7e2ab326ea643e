/**
 * Synchronous TLB shootdown: a hypervisor change to what harts may cache (a page's protection, a
 * remap) waits until every other hart is out of its engine and holds them there until the change
 * is complete, so no guest store can use an entry from before it.
 *
 * Why not the asynchronous request alone (requestTlbShootdown): a hart flushes at its next
 * engine call, so between the change and its flush it keeps storing through stale entries — after
 * protect, to the primary only, and the scrubber then "repairs" the new primary with the stale
 * copies (issue 16). Linux's flush_tlb_others waits for every CPU's acknowledgement for the same
 * reason.
 *
 * Protocol, over sequentially consistent Atomics (a Dekker handshake):
 *  - A hart sets its ENGINE_ACTIVE word before it looks at the hold word and its shootdown flag
 *    and enters the engine, and clears it when the engine returns (enterEngine / leaveEngine).
 *  - The changer sets the hold word, asks every hart to flush (flag + engine return), then waits
 *    until every other hart's ENGINE_ACTIVE reads 0. A hart that reads 0 there either flushes
 *    before it next runs guest code or, if it comes back meanwhile, sees the hold and waits. So
 *    when the changer proceeds no hart runs guest code, and each flushes before it does again.
 *  - Changes are serialised by one VM-wide lock (POLICY_LOCK), taken before the hold; the
 *    scrubber takes it around each page, so it never sees a page half changed.
 * The changer's own hart is out of its engine (it is serving an ecall, or it is a host thread).
 * Waiting threads must not hold anything a hart in its engine may wait for (a stripe lock, the
 * recovery lock); the callers take those only while holding the world.
 */
import { ControlSlot, HartSlot, type MemoryLayout } from "../shared-mem/layout.ts";
import { Mutex } from "../sync/mutex.ts";
import { requestTlbShootdown } from "./hart-signals.ts";

/** Longest single sleep while waiting (a hart, or the changer); each also checks the stop flag. */
const WAIT_MS = 20;

export class WorldHold {
  private readonly holdIndex: number;
  private readonly stopIndex: number;
  private readonly policy: Mutex;
  private readonly policyIndex: number;

  constructor(
    private readonly words: Int32Array,
    private readonly layout: MemoryLayout,
  ) {
    this.holdIndex = (layout.controlOffset + ControlSlot.WORLD_HOLD) >>> 2;
    this.stopIndex = (layout.controlOffset + ControlSlot.STOP) >>> 2;
    this.policyIndex = (layout.controlOffset + ControlSlot.POLICY_LOCK) >>> 2;
    this.policy = new Mutex(words, this.policyIndex);
  }

  // --- a hart's thread ---------------------------------------------------------------------
  /**
   * Before an engine call: announce it, and wait while a change holds the world. `aside` runs the
   * wait: a one-hart VM's hart lets go of memory ownership (sync/owner.ts) there, since the
   * changer's thread may be serving a device whose DMA needs it.
   */
  enterEngine(hartBase: number, aside: (wait: () => void) => void = (wait) => wait()): void {
    const active = (hartBase + HartSlot.ENGINE_ACTIVE) >>> 2;
    for (;;) {
      Atomics.store(this.words, active, 1);
      // A stopping VM runs on: its changer gives up waiting too, and its engines return at once.
      if (Atomics.load(this.words, this.holdIndex) === 0 || Atomics.load(this.words, this.stopIndex) !== 0) return;
      Atomics.store(this.words, active, 0);
      Atomics.notify(this.words, active);
      aside(() => {
        while (Atomics.load(this.words, this.holdIndex) !== 0 && Atomics.load(this.words, this.stopIndex) === 0) {
          Atomics.wait(this.words, this.holdIndex, 1, WAIT_MS);
        }
      });
      // Then announce again and look again: a new hold may have begun since.
    }
  }

  /** After an engine call (also when it threw). */
  leaveEngine(hartBase: number): void {
    const active = (hartBase + HartSlot.ENGINE_ACTIVE) >>> 2;
    Atomics.store(this.words, active, 0);
    // Only a changer waits on this word: wake it only when one may be waiting.
    if (Atomics.load(this.words, this.holdIndex) !== 0) Atomics.notify(this.words, active);
  }

  // --- the changer (a hart serving an ecall, the scrubber, the main thread between runs) ---------
  /** Hold the policy lock only: the scrubber's view of one page. */
  withPolicyLock<T>(body: () => T): T {
    return this.policy.with(body);
  }

  /**
   * Under the policy lock, hold every hart out of its engine with a TLB flush pending, run
   * `change`, and let them go. Must not be called from inside an engine call, nor while holding a
   * stripe or recovery lock.
   */
  holding<T>(change: () => T, whileWaiting?: () => void): T {
    if (whileWaiting) {
      // The main thread: the lock's holder (the scrubber, a hart's hypercall) may be waiting for
      // a hart that waits for this thread's MMIO service.
      while (!this.policy.tryAcquire()) {
        whileWaiting();
        Atomics.wait(this.words, this.policyIndex, Atomics.load(this.words, this.policyIndex), 1);
      }
      try {
        return this.holdingLocked(change, whileWaiting);
      } finally {
        this.policy.release();
      }
    }
    return this.policy.with(() => this.holdingLocked(change));
  }

  /**
   * holding() for a caller that already has the policy lock (the scrubber). `whileWaiting` is for
   * the main thread, which harts may wait for inside their engines (MMIO through their mailboxes):
   * it serves them between looks, so that they can return.
   */
  holdingLocked<T>(change: () => T, whileWaiting?: () => void): T {
    Atomics.store(this.words, this.holdIndex, 1);
    try {
      for (let h = 0; h < this.layout.harts; h++) requestTlbShootdown(this.words, this.layout.hartOffset(h));
      for (let h = 0; h < this.layout.harts; h++) this.awaitOutOfEngine(this.layout.hartOffset(h), whileWaiting);
      return change();
    } finally {
      Atomics.store(this.words, this.holdIndex, 0);
      Atomics.notify(this.words, this.holdIndex);
    }
  }

  private awaitOutOfEngine(hartBase: number, whileWaiting: (() => void) | undefined): void {
    const active = (hartBase + HartSlot.ENGINE_ACTIVE) >>> 2;
    while (Atomics.load(this.words, active) !== 0 && Atomics.load(this.words, this.stopIndex) === 0) {
      whileWaiting?.();
      Atomics.wait(this.words, active, 1, whileWaiting ? 1 : WAIT_MS);
      // The engine returns at its next exit-request check; ask again in case a trap exit took the
      // first request (requestEngineReturn never overwrites a pending trap).
      requestTlbShootdown(this.words, hartBase);
    }
  }
}
