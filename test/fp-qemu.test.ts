/**
 * F and D against QEMU (an oracle we did not write: its softfloat): guests/fp-test runs every
 * computational F/D instruction under every rounding mode over edge-case and random operands and
 * prints a checksum of result bits and fflags per instruction and mode; QEMU's output and ours, on
 * each engine, must be byte-identical. `npm test` runs the small build (~25 000 operations);
 * `npm run test:fp-long` the long one (KMEMVISOR_FP_LONG=1: 10 081 140 operations). And a real
 * program: guests/fp-test/fpbench.c (n-body, a matrix product) prints what QEMU prints.
 */
import test from "ava";
import { join } from "node:path";
import { GUESTS, kmemvisor, run } from "./helpers/cli.ts";

const LONG = process.env.KMEMVISOR_FP_LONG === "1";
const elf = join(GUESTS, "fp", LONG ? "fp-test.elf" : "fp-test-small.elf");
const timeoutSeconds = LONG ? 7200 : 120;

const reference = run("qemu-system-riscv64", ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-kernel", elf], {
  killAfterMs: timeoutSeconds * 1000,
});

const program = join(GUESTS, "fp", "fpbench-small.elf");
const programReference = run("qemu-system-riscv64", ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-kernel", program], {
  killAfterMs: 120_000,
});

for (const engine of ["interp", "jit"]) {
  test(`fpbench-small (n-body, matrix product): the same output as QEMU (--engine ${engine})`, async (t) => {
    const qemu = await programReference;
    t.is(qemu.status, 0, qemu.stderr);
    const ours = await kmemvisor(["run", program, "-m", "128M", "--engine", engine, "--timeout", "120"], { killAfterMs: 150_000 });
    t.is(ours.status, 0, ours.stderr);
    t.regex(qemu.stdout, /^energy0 +bfc5a441459acc23 -169075163$/m, "n-body's initial energy, -0.169075163");
    t.is(ours.stdout, qemu.stdout);
  });
}

for (const engine of ["interp", "jit"]) {
  test(`fp-test${LONG ? "" : "-small"}: QEMU and kmemvisor (--engine ${engine}) agree on every F/D result and fflags`, async (t) => {
    if (LONG) t.timeout(timeoutSeconds * 1000 + 60_000);
    const qemu = await reference;
    t.is(qemu.status, 0, `QEMU ran the guest: ${qemu.stderr}`);
    const operations = /^operations (\d+)$/m.exec(qemu.stdout);
    t.truthy(operations, "QEMU printed the operation count");
    const ours = await kmemvisor(["run", elf, "-m", "128M", "--engine", engine, "--timeout", String(timeoutSeconds)], {
      killAfterMs: (timeoutSeconds + 30) * 1000,
    });
    t.is(ours.status, 0, ours.stderr);
    // Line by line first, so that a failure names the instruction and rounding mode.
    const theirs = qemu.stdout.split("\n");
    const differing = ours.stdout.split("\n").filter((line, i) => line !== theirs[i]);
    t.deepEqual(differing, [], "lines that differ from QEMU's");
    t.is(ours.stdout, qemu.stdout);
    t.log(operations?.[1], "operations compared");
  });
}
