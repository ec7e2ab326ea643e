/**
 * A pause gate over two words of the VM's control block: the main thread asks every hart to hold
 * still at an instruction boundary, waits until they all do, looks at memory, and lets them go.
 *
 * A hart holds only between engine calls, never inside an instruction, so no mirror lock is held
 * and every store it made has reached every copy: what the copies show then is what they keep.
 * (The race stress tester, host/race-stress.ts, compares them there.)
 */
import { ControlSlot, type MemoryLayout } from "../shared-mem/layout.ts";
import { kickHart } from "./hart-signals.ts";

/** Longest single sleep of a held hart; it also looks at the stop flag between sleeps. */
const HOLD_SLEEP_MS = 50;

export class PauseGate {
  private readonly pauseIndex: number;
  private readonly pausedIndex: number;
  private readonly stopIndex: number;

  constructor(
    private readonly words: Int32Array,
    private readonly layout: MemoryLayout,
  ) {
    this.pauseIndex = (layout.controlOffset + ControlSlot.PAUSE) >>> 2;
    this.pausedIndex = (layout.controlOffset + ControlSlot.PAUSED) >>> 2;
    this.stopIndex = (layout.controlOffset + ControlSlot.STOP) >>> 2;
  }

  // --- the main thread -----------------------------------------------------------------------
  /** Ask every hart to hold at its next instruction boundary (harts in WFI are woken to hold). */
  request(): void {
    Atomics.store(this.words, this.pauseIndex, 1);
    for (let h = 0; h < this.layout.harts; h++) kickHart(this.words, this.layout.hartOffset(h));
  }

  /** Harts holding now. */
  held(): number {
    return Atomics.load(this.words, this.pausedIndex);
  }

  get requested(): boolean {
    return Atomics.load(this.words, this.pauseIndex) !== 0;
  }

  resume(): void {
    Atomics.store(this.words, this.pauseIndex, 0);
    Atomics.notify(this.words, this.pauseIndex);
  }

  // --- a hart's thread -----------------------------------------------------------------------
  /** Between engine calls: hold while a pause is requested (and the VM is not stopping). */
  holdIfRequested(): void {
    if (Atomics.load(this.words, this.pauseIndex) === 0) return;
    Atomics.add(this.words, this.pausedIndex, 1);
    while (Atomics.load(this.words, this.pauseIndex) !== 0 && Atomics.load(this.words, this.stopIndex) === 0) {
      Atomics.wait(this.words, this.pauseIndex, 1, HOLD_SLEEP_MS);
    }
    Atomics.sub(this.words, this.pausedIndex, 1);
  }
}
