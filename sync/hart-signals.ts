/**
 * Signalling a hart from any thread: raising and clearing its interrupt-pending bits, asking its
 * engine to return, waking it, and TLB shootdowns. mip lives in the hart's
 * shared area; the writer also asks the hart's engine to return (so the interrupt is taken at
 * the next instruction boundary) and wakes the hart if it sleeps in WFI on the mip word.
 */
import { ExitRequest, HartSlot } from "../shared-mem/layout.ts";

/** Set mip bits `mask` to `value`; returns false when nothing changed. */
export function setPendingInterrupts(words: Int32Array, hartBase: number, mask: number, value: number): boolean {
  const index = (hartBase + HartSlot.MIP) >>> 2;
  for (;;) {
    const old = Atomics.load(words, index);
    const next = (old & ~mask) | (value & mask);
    if (next === old) return false;
    if (Atomics.compareExchange(words, index, old, next) === old) break;
  }
  requestEngineReturn(words, hartBase);
  Atomics.notify(words, index);
  return true;
}

/**
 * Ask the hart's engine to return after the current instruction. Only over None: a Trap request
 * the hart's own slow path has just made must not be turned into "finish the instruction" by
 * another thread (the faulting access would then complete as if it had succeeded). A trap makes
 * the engine return anyway, and the hart looks at interrupts and the stop and pause flags then.
 */
export function requestEngineReturn(words: Int32Array, hartBase: number): void {
  Atomics.compareExchange(words, (hartBase + HartSlot.EXIT_REQUEST) >>> 2, ExitRequest.None, ExitRequest.Return);
}

/** Make a hart's engine return soon and wake it from WFI (used to stop the VM). */
export function kickHart(words: Int32Array, hartBase: number): void {
  requestEngineReturn(words, hartBase);
  Atomics.notify(words, (hartBase + HartSlot.MIP) >>> 2);
}

/**
 * Hypervisor-side TLB shootdown: make the hart drop every cached translation before it runs
 * another guest instruction. The engine returns at once (its fetch-page locals die with the
 * call) and the hart flushes at the start of its next engine call.
 */
export function requestTlbShootdown(words: Int32Array, hartBase: number): void {
  Atomics.store(words, (hartBase + HartSlot.TLB_SHOOTDOWN) >>> 2, 1);
  kickHart(words, hartBase);
}
