/**
 * Differential test against QEMU: the same ELF on `qemu-system-riscv64 -machine virt -bios none`
 * and on kmemvisor must give byte-identical console output and the same exit status (QEMU exits
 * with the sifive_test finisher code). QEMU is required: CI installs qemu-system-misc, and a
 * missing QEMU fails these tests rather than skipping them silently.
 */
import test from "ava";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { GUESTS, kmemvisor, run, type Completed } from "./helpers/cli.ts";

const QEMU = "qemu-system-riscv64";

const qemuAvailable: Promise<string | undefined> = run(QEMU, ["--version"], { killAfterMs: 20_000 }).then(
  (r) => (r.status === 0 ? undefined : `${QEMU} --version exited with ${r.status}: ${r.stderr}`),
  (e: unknown) =>
    `${QEMU} is not installed or not runnable (${(e as Error).message}); install it ` +
    `(Debian/Ubuntu: apt-get install qemu-system-misc) to run the differential tests`,
);

const all = readdirSync(GUESTS).filter((f) => f.endsWith(".elf")).map((f) => f.slice(0, -4));
// The small guests: hello, exit-code, isa-test and the -small benchmark builds. htif-hello is
// kmemvisor-only (QEMU's virt board has no HTIF) and the full-size benchmarks are too slow here.
// The kernel-pattern guests (guests/kbench) are compared with QEMU by test/kernel-guests.test.ts.
const KBENCH = ["uart-storm-small", "syscalls-small", "disk-small", "disk-small-small"];
const guests = all.filter((n) => (["hello", "exit-code", "isa-test"].includes(n) || n.endsWith("-small")) && !KBENCH.includes(n)).sort();

function qemu(elf: string, smp: number): Promise<Completed> {
  return run(QEMU, ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-smp", String(smp), "-kernel", elf], {
    killAfterMs: 60_000,
  });
}

test("the differential set covers the small guests", (t) => {
  t.deepEqual(guests, ["cpubound-small", "exit-code", "hello", "isa-test", "memstress-small", "parallel-fill-small", "parallel-sum-small", "seqread-small", "seqwrite-small"]);
});

const cases: [string, number][] = [
  ...guests.map((g): [string, number] => [g, 1]),
  ["hello", 2],
  ["isa-test", 2],
  // Every hart storing, and the stress tester's racy guests finishing their epochs (their output
  // is the counters' verdict, which must not depend on the interleaving).
  ["parallel-fill-small", 2],
  ["race", 2],
  ["race-drf", 2],
];

for (const [name, smp] of cases) {
  test(`QEMU and kmemvisor agree on ${name} (-smp ${smp})`, async (t) => {
    const missing = await qemuAvailable;
    if (missing !== undefined) {
      t.fail(missing);
      return;
    }
    const elf = join(GUESTS, `${name}.elf`);
    const reference = await qemu(elf, smp);
    t.false(reference.killed, `QEMU did not finish ${name} within 60 s`);
    const ours = await kmemvisor(["run", elf, "--smp", String(smp), "-m", "128M", "--timeout", "60"], { killAfterMs: 90_000 });
    t.true(reference.stdout.length > 0, `QEMU printed something for ${name}`);
    t.is(ours.stdout, reference.stdout, `console output of ${name}`);
    t.is(ours.status, reference.status, `exit status of ${name} (kmemvisor stderr: ${ours.stderr.trim()})`);
  });
}
