/**
 * The two engines, for tests that prove a guarantee on both (issue 17, finding 7): the translator
 * with a threshold of 1 and translations made on the hart's own thread, so that even a short run
 * is translated (and deterministically), and the interpreter. A test that claims to have run the
 * translator asserts that it did (assertTranslated).
 */
import type { ExecutionContext } from "ava";
import type { RunResult } from "../../hypervisor/machine.ts";
import type { EngineChoice } from "../../vcpu/hart.ts";

export const TRANSLATOR: EngineChoice = { kind: "jit", threshold: 1, synchronous: true };
export const INTERPRETER: EngineChoice = { kind: "interp" };
export const BOTH_ENGINES: readonly (readonly [name: "jit" | "interp", engine: EngineChoice])[] = [
  ["jit", TRANSLATOR],
  ["interp", INTERPRETER],
];

/** Under the translator: every hart that ran more than `busy` instructions ran translated code. */
export function assertTranslated(t: ExecutionContext, result: RunResult, engine: EngineChoice, busy = 0): void {
  if (engine.kind !== "jit") return;
  for (const hart of result.harts) {
    if (hart.instructions <= busy) continue;
    t.true((hart.jit?.pagesCompiled ?? 0) > 0, `hart ${hart.hart} ran translated code: ${JSON.stringify(hart.jit)}`);
  }
}
