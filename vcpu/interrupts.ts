/**
 * Raising and clearing a hart's interrupt-pending bits from any thread. mip lives in the hart's
 * shared area; the writer also asks the hart's engine to return (so the interrupt is taken at
 * the next instruction boundary) and wakes the hart if it sleeps in WFI on the mip word.
 */
import { HartSlot } from "../shared-mem/layout.ts";
import { ExitRequest } from "./exits.ts";

/** Set mip bits `mask` to `value`; returns false when nothing changed. */
export function setPendingInterrupts(words: Int32Array, hartBase: number, mask: number, value: number): boolean {
  const index = (hartBase + HartSlot.MIP) >> 2;
  for (;;) {
    const old = Atomics.load(words, index);
    const next = (old & ~mask) | (value & mask);
    if (next === old) return false;
    if (Atomics.compareExchange(words, index, old, next) === old) break;
  }
  Atomics.store(words, (hartBase + HartSlot.EXIT_REQUEST) >> 2, ExitRequest.Return);
  Atomics.notify(words, index);
  return true;
}

/** Make a hart's engine return soon and wake it from WFI (used to stop the VM). */
export function kickHart(words: Int32Array, hartBase: number): void {
  Atomics.store(words, (hartBase + HartSlot.EXIT_REQUEST) >> 2, ExitRequest.Return);
  Atomics.notify(words, (hartBase + HartSlot.MIP) >> 2);
}

/**
 * Hypervisor-side TLB shootdown: make the hart drop every cached translation before it runs
 * another guest instruction. The engine returns at once (its fetch-page locals die with the
 * call) and the hart flushes at the start of its next engine call.
 */
export function requestTlbShootdown(words: Int32Array, hartBase: number): void {
  Atomics.store(words, (hartBase + HartSlot.TLB_SHOOTDOWN) >> 2, 1);
  kickHart(words, hartBase);
}
