/**
 * protect/release against a hart storing to the page (issue 16 item 1), and the short form of the
 * long run (`npm run stress:protect`): hart 1 increments page Q's words while hart 0 protects and
 * releases Q in a loop; the guest checks that no increment was lost, and at every pause that finds
 * Q protected its copies must agree. Before the synchronous shootdown, hart 1 kept storing through
 * store-TLB entries without the mirror bit after a protect: the scrubber's vote then put stale
 * copies over the new primary (NMR 3), or a DUE recovered the page from a stale copy (NMR 2).
 */
import test from "ava";
import { defaultEngineName } from "../vcpu/jit.ts";
import { runProtectRace, type ProtectRaceOutcome } from "./helpers/protect-race.ts";

/** Under the translator (the default engine), its stores went through translated code. */
function translatedWhenJit(o: ProtectRaceOutcome): boolean {
  return defaultEngineName() !== "jit" || o.pagesCompiled > 0;
}

function summary(o: ProtectRaceOutcome): string {
  return `exit ${o.exitCode} (${o.reason}${o.fault ? `: ${o.fault}` : ""}), sum ${o.sum}, ${o.rounds} protect/release rounds, ` +
    `${o.divergentPauses}/${o.protectedPauses} protected pauses divergent ${o.divergences.join("; ")}, ${o.injected} DUEs, ${o.recoveries} recovered`;
}

test("NMR 3 with the scrubber (interpreter): no increment lost while Q is protected and released under a storing hart", async (t) => {
  // The interpreter: hart 0 makes thousands of rounds in the time the translator gives it tens.
  const o = await runProtectRace({ increments: 3_000_000, copies: 3, scrubMs: 1, engine: { kind: "interp" } });
  t.is(o.exitCode, 0, summary(o));
  t.is(o.sum, 3_000_000n, summary(o));
  t.true(o.rounds > 0n, "hart 0 protected and released Q while hart 1 stored");
  t.is(o.divergentPauses, 0, summary(o));
  t.is(o.divergentAtEnd, 0);
});

test("NMR 2 with the scrubber and DUEs in Q's primary at pauses: every DUE recovered from an up-to-date copy", async (t) => {
  const o = await runProtectRace({ increments: 3_000_000, copies: 2, scrubMs: 1, dueEvery: 1, pauseMs: 2 });
  t.is(o.exitCode, 0, summary(o));
  t.is(o.sum, 3_000_000n, summary(o));
  // A DUE injected at the last pauses may meet no access before the guest exits.
  t.true(o.recoveries > 0 && o.recoveries <= o.duesInjected, summary(o));
  t.is(o.divergentPauses, 0, summary(o));
});

test("DUEs injected into Q while hart 1 stores to it and hart 0 reads it: no increment lost", async (t) => {
  // Before the injection's shootdown was synchronous, hart 1 went on storing into the poisoned
  // frame through its cached entry while hart 0 recovered the page from the copy: lost increments.
  const o = await runProtectRace({ increments: 3_000_000, copies: 2, hart0: "read", dueEveryMs: 5, pauseMs: 20 });
  t.is(o.exitCode, 0, summary(o));
  t.is(o.sum, 3_000_000n, summary(o));
  t.true(o.recoveries > 0, summary(o));
  t.true(translatedWhenJit(o), "the translator compiled the guest");
  t.is(o.divergentPauses, 0, summary(o));
});
