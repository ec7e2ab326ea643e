/**
 * Memory-model litmus tests (guests/smp/litmus.c) between two harts running in their own worker
 * threads: MP (fence w,w / fence r,r; forbidden: flag seen, data not) and SB (fence rw,rw on both
 * sides; forbidden: both loads see 0), 20000 iterations each, the two harts meeting at a barrier
 * before every test so that the accesses race. The guest prints only the forbidden counts, which
 * must be 0 ("litmus: MP forbidden 0, SB forbidden 0") and exits 0; a forbidden outcome makes it
 * print the counts and "litmus: FAIL" and exit 1. Run several times, since a broken fence shows up
 * only in some runs; once with 1 hart (both roles in turn); and against QEMU at -smp 2.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EXPECTED, GUESTS, kmemvisor, run, type Completed } from "./helpers/cli.ts";

const ELF = join(GUESTS, "litmus.elf");
const EXPECTED_OUT = readFileSync(join(EXPECTED, "litmus.out"), "latin1");

test("the expected output names only forbidden counts, all 0", (t) => {
  t.is(EXPECTED_OUT, "litmus: MP forbidden 0, SB forbidden 0\n");
});

const runs: [number, number][] = [[1, 1], [2, 4]];
for (const [smp, repeats] of runs) {
  for (let i = 1; i <= repeats; i++) {
    test(`litmus on ${smp} hart${smp > 1 ? "s" : ""} (run ${i} of ${repeats})`, async (t) => {
      const r = await kmemvisor(["run", ELF, "--smp", String(smp), "--timeout", "60", "--json"], { killAfterMs: 90_000 });
      t.is(r.stdout, EXPECTED_OUT, `stdout; stderr: ${r.stderr}`);
      t.is(r.status, 0, `exit status; stderr: ${r.stderr}`);
      const json = JSON.parse(r.stderr.trim().split("\n").pop() ?? "") as { harts: { hart: number; instructions: number }[] };
      t.is(json.harts.length, smp);
      // 20000 iterations of three tests, each behind a barrier: both harts must have run them.
      for (const h of json.harts) t.true(h.instructions > 500_000, `hart ${h.hart} retired only ${h.instructions} instructions`);
    });
  }
}

test("QEMU and kmemvisor agree on litmus (-smp 2)", async (t) => {
  let reference: Completed;
  try {
    reference = await run("qemu-system-riscv64", ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-smp", "2", "-kernel", ELF], {
      killAfterMs: 60_000,
    });
  } catch (e) {
    t.fail(`qemu-system-riscv64 is not installed or not runnable (${(e as Error).message}); install qemu-system-misc`);
    return;
  }
  t.false(reference.killed, "QEMU did not finish litmus within 60 s");
  t.is(reference.stdout, EXPECTED_OUT);
  t.is(reference.status, 0);
  const ours = await kmemvisor(["run", ELF, "--smp", "2", "-m", "128M", "--timeout", "60"], { killAfterMs: 90_000 });
  t.is(ours.stdout, reference.stdout);
  t.is(ours.status, reference.status, `kmemvisor stderr: ${ours.stderr.trim()}`);
});
