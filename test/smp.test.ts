/**
 * SMP guests (guests/smp/) on kmemvisor with 1, 2 and 4 harts, each hart in its own worker thread
 * over shared memory: smp-sync (spinlock, amoadd.d, lr.d/sc.d, barrier, SPSC ring, parallel array
 * sum, message passing) and parallel-sum-small (a fixed amount of work split over the harts). The
 * guests read the hart count from the device tree and print the same lines for any count, so
 * stdout must equal guests/expected/NAME.out (recorded on QEMU 7.2) every time. The 2- and 4-hart
 * runs are repeated, because a race shows up only now and then. The host may have fewer CPUs than
 * harts (CI: 2): the guests then sleep in wfi and wake each other with CLINT IPIs rather than spin.
 * Also the differential run against QEMU at -smp 2 (QEMU is required, as in qemu-diff.test.ts).
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EXPECTED, GUESTS, kmemvisor, run, type Completed } from "./helpers/cli.ts";

const GUESTS_UNDER_TEST = ["smp-sync", "parallel-sum-small"];
const REPEATS: Record<number, number> = { 1: 1, 2: 5, 4: 5 };

interface RunJson {
  exitCode: number;
  reason: string;
  /** `jit`: the translator's statistics, present exactly when the hart ran under --engine jit. */
  harts: { hart: number; instructions: number; wfiMilliseconds: number; jit?: unknown }[];
}

function parseJson(r: Completed): RunJson {
  const line = r.stderr.trim().split("\n").pop() ?? "";
  return JSON.parse(line) as RunJson;
}

const expected = (name: string) => readFileSync(join(EXPECTED, `${name}.out`), "latin1");

for (const name of GUESTS_UNDER_TEST) {
  for (const [smpText, repeats] of Object.entries(REPEATS)) {
    const smp = Number(smpText);
    for (let i = 1; i <= repeats; i++) {
      test(`${name} on ${smp} hart${smp > 1 ? "s" : ""} (run ${i} of ${repeats})`, async (t) => {
        const r = await kmemvisor(["run", join(GUESTS, `${name}.elf`), "--smp", String(smp), "--timeout", "60", "--json"], {
          killAfterMs: 90_000,
        });
        t.is(r.stdout, expected(name), `stdout of ${name} with --smp ${smp}; stderr: ${r.stderr}`);
        t.is(r.status, 0, `exit status; stderr: ${r.stderr}`);
        const json = parseJson(r);
        t.is(json.harts.length, smp, "one statistics entry per hart");
        // Every hart takes part (the guest checks that all harts of the device tree arrived; this
        // checks that each of them did real work, not only crt0's wait).
        for (const h of json.harts) t.true(h.instructions > 10_000, `hart ${h.hart} retired only ${h.instructions} instructions`);
      });
    }
  }
}

// The runs above use the default engine (the translator, or KMEMVISOR_ENGINE); each guest also
// runs on the other one named explicitly, so `npm test` proves SMP on both engines.
for (const name of GUESTS_UNDER_TEST) {
  for (const engine of ["jit", "interp"]) {
    test(`${name} on 2 harts, --engine ${engine}`, async (t) => {
      const r = await kmemvisor(["run", join(GUESTS, `${name}.elf`), "--smp", "2", "--engine", engine, "--timeout", "60", "--json"], { killAfterMs: 90_000 });
      t.is(r.stdout, expected(name), r.stderr);
      t.is(r.status, 0, r.stderr);
      const json = parseJson(r);
      t.is(json.harts.every((h) => h.jit !== undefined), engine === "jit", "the engine asked for ran");
    });
  }
}

const QEMU = "qemu-system-riscv64";
for (const name of GUESTS_UNDER_TEST) {
  test(`QEMU and kmemvisor agree on ${name} (-smp 2)`, async (t) => {
    const elf = join(GUESTS, `${name}.elf`);
    let reference: Completed;
    try {
      reference = await run(QEMU, ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-smp", "2", "-kernel", elf], {
        killAfterMs: 60_000,
      });
    } catch (e) {
      t.fail(`${QEMU} is not installed or not runnable (${(e as Error).message}); install qemu-system-misc`);
      return;
    }
    t.false(reference.killed, `QEMU did not finish ${name} within 60 s`);
    t.is(reference.stdout, expected(name), `QEMU's output of ${name} matches guests/expected`);
    t.is(reference.status, 0, `QEMU exit status of ${name}`);
    const ours = await kmemvisor(["run", elf, "--smp", "2", "-m", "128M", "--timeout", "60"], { killAfterMs: 90_000 });
    t.is(ours.stdout, reference.stdout, `console output of ${name}`);
    t.is(ours.status, reference.status, `exit status of ${name} (kmemvisor stderr: ${ours.stderr.trim()})`);
  });
}
