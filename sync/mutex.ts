/**
 * A mutex over one Int32 word of shared memory: spin briefly, then sleep with Atomics.wait.
 *
 *   0 = free, 1 = held, 2 = held and someone may sleep on it (so release knows to notify).
 *
 * The protocol is the futex mutex of Drepper's "Futexes are tricky" (mutex2). Engines speak it
 * too: their fast path is an inline i32 cmpxchg 0→1 and an xchg →0, and only contention calls
 * out to lockContended / wakeSleeper here (vcpu/wasm/wasm-sem.ts). So a hart's generated code,
 * a hart's host slow path and the main thread's DMA can all take the same stripe lock.
 *
 * Not re-entrant, no fairness. Usable from any thread that may block: workers, and the main thread
 * (Node lets it Atomics.wait) for the short critical sections it has.
 */
export const FREE = 0;
export const HELD = 1;
export const CONTENDED = 2;

/**
 * Spins before sleeping. Mirror critical sections are a few stores long, so a holder that is
 * running releases within a few hundred nanoseconds; sleeping is for a holder that was preempted.
 */
const SPINS = 200;
/** Sleeps are bounded so that a lost wake-up (there should be none) costs time, not a hang. */
const SLEEP_MS = 50;

export function tryLockWord(words: Int32Array, index: number): boolean {
  return Atomics.compareExchange(words, index, FREE, HELD) === FREE;
}

/** Acquire after a failed fast-path attempt: spin, then announce a sleeper and sleep. */
export function lockWordContended(words: Int32Array, index: number): void {
  for (let i = 0; i < SPINS; i++) {
    if (Atomics.load(words, index) === FREE && tryLockWord(words, index)) return;
  }
  // From here on the word says CONTENDED while we hold it: our release may notify in vain,
  // which is harmless, but a sleeper is never left asleep.
  while (Atomics.exchange(words, index, CONTENDED) !== FREE) Atomics.wait(words, index, CONTENDED, SLEEP_MS);
}

export function lockWord(words: Int32Array, index: number): void {
  if (!tryLockWord(words, index)) lockWordContended(words, index);
}

export function unlockWord(words: Int32Array, index: number): void {
  if (Atomics.exchange(words, index, FREE) === CONTENDED) Atomics.notify(words, index, 1);
}

/** The same protocol as an object bound to one word. */
export class Mutex {
  constructor(
    private readonly words: Int32Array,
    private readonly index: number,
  ) {}

  acquire(): void {
    lockWord(this.words, this.index);
  }

  tryAcquire(): boolean {
    return tryLockWord(this.words, this.index);
  }

  release(): void {
    unlockWord(this.words, this.index);
  }

  /** Run `body` holding the mutex. */
  with<T>(body: () => T): T {
    this.acquire();
    try {
      return body();
    } finally {
      this.release();
    }
  }
}
