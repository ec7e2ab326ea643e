/**
 * The long run of issue 16's "done when": a 2-hart mirrored guest whose hart 0 protects and
 * releases page Q while hart 1 stores to it, with the scrubber on and DUEs injected into Q, must
 * lose no write. Runs the guest of test/helpers/protect-race.ts again and again (NMR 2 and 3, both
 * engines, every sync strategy that keeps copies identical) for the given minutes and prints the
 * totals; exit status 1 at the first lost write or divergent copy, 0 when none was seen.
 *
 *   npm run stress:protect -- [--minutes M] [--increments N]
 */
import { parseArgs } from "node:util";
import { runProtectRace, type ProtectRaceOptions } from "../test/helpers/protect-race.ts";

const { values } = parseArgs({ options: { minutes: { type: "string", default: "10" }, increments: { type: "string", default: "20000000" } } });
const minutes = Number(values.minutes);
const increments = Number(values.increments);
if (!(minutes > 0) || !Number.isSafeInteger(increments) || increments <= 0) {
  console.error("stress:protect: --minutes must be a positive number, --increments a positive integer");
  process.exit(64);
}

const shapes: Omit<ProtectRaceOptions, "increments">[] = [
  { copies: 3, scrubMs: 1, dueEvery: 3, sync: "striped" },
  { copies: 2, scrubMs: 1, dueEvery: 2, sync: "striped", engine: { kind: "interp" } },
  { copies: 3, scrubMs: 5, dueEvery: 2, sync: "global", engine: { kind: "interp" } },
  { copies: 2, scrubMs: 5, dueEvery: 3, sync: "global" },
  // DUEs from the run loop while the harts run (hart 0 reads Q instead of toggling it).
  { copies: 2, scrubMs: 2, hart0: "read", dueEveryMs: 10, sync: "striped" },
  { copies: 3, scrubMs: 2, hart0: "read", dueEveryMs: 10, sync: "striped", engine: { kind: "interp" } },
];
const started = performance.now();
const totals = { runs: 0, rounds: 0n, stores: 0, pauses: 0, protectedPauses: 0, dues: 0, recovered: 0 };
let failed = false;
while (!failed && performance.now() - started < minutes * 60_000) {
  const shape = shapes[totals.runs % shapes.length]!;
  const o = await runProtectRace({ ...shape, increments, timeoutMs: 300_000 });
  totals.runs++;
  totals.rounds += o.rounds;
  totals.stores += o.exitCode === 0 ? increments : 0;
  totals.pauses += o.pauses;
  totals.protectedPauses += o.protectedPauses;
  totals.dues += o.injected;
  totals.recovered += o.recoveries;
  const what = `NMR ${shape.copies}, ${shape.sync}, ${shape.engine?.kind ?? "default engine"}, hart 0 ${shape.hart0 ?? "toggle"}s Q`;
  if (o.exitCode !== 0 || o.sum !== BigInt(increments) || o.divergentPauses > 0 || o.divergentAtEnd > 0) {
    failed = true;
    console.error(`run ${totals.runs} (${what}): LOST: exit ${o.exitCode} ${o.reason} ${o.fault ?? ""}, sum ${o.sum} of ${increments}, ` +
      `${o.divergentPauses} divergent pauses ${o.divergences.join("; ")}, ${o.divergentAtEnd} divergent words at the end`);
  } else {
    console.error(`run ${totals.runs} (${what}): ok, ${o.rounds} rounds, ${o.injected} DUEs, ${o.recoveries} recovered, ${(o.wallMs / 1000).toFixed(1)} s`);
  }
}
const elapsed = (performance.now() - started) / 60_000;
console.log(
  `stress:protect: ${totals.runs} runs in ${elapsed.toFixed(1)} min: ${totals.stores} stores checked, ${totals.rounds} protect/release rounds, ` +
    `${totals.protectedPauses}/${totals.pauses} pauses compared the copies, ${totals.dues} DUEs injected (one into a frame still poisoned adds nothing), ` +
    `${totals.recovered} pages recovered: ` +
    (failed ? "WRITES LOST" : "no write lost"),
);
process.exit(failed ? 1 : 0);
