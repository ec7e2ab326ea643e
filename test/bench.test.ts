/**
 * bench/run.ts names the engine that made its figures (issue 17, finding 8: it printed
 * "interpreter engine" over runs of the translator). The smallest suite run, on `hello`, one round.
 */
import test from "ava";
import { run } from "./helpers/cli.ts";

for (const engine of ["jit", "interp"]) {
  test(`bench mirror names the engine its runs used (KMEMVISOR_ENGINE=${engine})`, async (t) => {
    const r = await run(process.execPath, ["--import", "tsx", "bench/run.ts", "mirror", "hello", "1"], { env: { KMEMVISOR_ENGINE: engine }, killAfterMs: 120_000 });
    t.is(r.status, 0, r.stderr);
    const header = r.stdout.split("\n")[0]!;
    t.regex(header, new RegExp(`; --engine ${engine}$`), header);
    t.regex(r.stdout, /^hello\s+\d/m, "and the figures follow");
  });
}
