/**
 * A mutex over one Int32 word of shared memory: spin briefly, then sleep with Atomics.wait.
 * 0 = free, 1 = held, 2 = held with sleepers (so release knows whether to notify).
 * Not re-entrant; no fairness guarantee. Usable from any thread that may block (workers, and the
 * main thread for short critical sections).
 */
const SPINS = 200;

export class SpinLock {
  constructor(
    private readonly words: Int32Array,
    private readonly index: number,
  ) {}

  acquire(): void {
    for (let i = 0; i < SPINS; i++) {
      if (Atomics.compareExchange(this.words, this.index, 0, 1) === 0) return;
    }
    // Announce a sleeper (state 2) and sleep until the holder releases.
    while (Atomics.exchange(this.words, this.index, 2) !== 0) Atomics.wait(this.words, this.index, 2, 100);
  }

  release(): void {
    if (Atomics.exchange(this.words, this.index, 0) === 2) Atomics.notify(this.words, this.index, 1);
  }
}
