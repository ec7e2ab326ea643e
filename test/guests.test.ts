/**
 * Every prebuilt guest (guests/bin) through the CLI: stdout must equal guests/expected/NAME.out
 * (recorded on QEMU 7.2) and the exit status the guest's exit code. The full-size benchmark builds
 * (those with a -small sibling) take hundreds of millions of instructions and are left to bench/.
 * Also run with --smp 2/4: the other harts park in wfi and the output must not change.
 */
import test from "ava";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EXPECTED, GUESTS, kmemvisor } from "./helpers/cli.ts";

const all = readdirSync(GUESTS).filter((f) => f.endsWith(".elf")).map((f) => f.slice(0, -4)).sort();
const isFullSize = (name: string) => all.includes(`${name}-small`);
/** Guests that need more than `run FILE` (a disk, firmware): their own test files run them. */
const ELSEWHERE: Record<string, string> = {
  minikernel: "needs a virtio-blk disk image: test/minikernel.test.ts runs it",
  hostile: "test/hostile.test.ts runs it on both engines, mirrored, with a disk and beside a second VM",
};
// The kernel-pattern guests and microbenchmarks (guests/kbench): test/kernel-guests.test.ts runs them
// (a disk image, output lines left out of the comparison, a guest that livelocks kmemvisor today).
for (const name of ["uart-storm", "syscalls", "disk-small", "micro-mmio", "micro-syscall", "micro-tlb"]) {
  ELSEWHERE[name] = ELSEWHERE[`${name}-small`] = "test/kernel-guests.test.ts runs it";
}
const guests = all.filter((name) => !isFullSize(name) && !(name in ELSEWHERE));

const STATUS: Record<string, number> = { "exit-code": 42, "htif-hello": 3 };
const OUTPUT: Record<string, string> = { "htif-hello": "Hello over HTIF\n" };

function expectedOutput(name: string): string {
  const inline = OUTPUT[name];
  if (inline !== undefined) return inline;
  return readFileSync(join(EXPECTED, `${name}.out`), "latin1");
}

test("the guest list is what the README describes", (t) => {
  for (const name of ["hello", "exit-code", "isa-test", "htif-hello", "cpubound-small", "memstress-small", "seqread-small", "seqwrite-small"]) {
    t.true(guests.includes(name), `${name}.elf is run`);
  }
  for (const name of guests) {
    t.true(
      name in OUTPUT || existsSync(join(EXPECTED, `${name}.out`)),
      `${name}.elf has no guests/expected/${name}.out: record its QEMU output, or list it in ELSEWHERE`,
    );
  }
  t.deepEqual(all.filter(isFullSize), ["cpubound", "disk-small", "memstress", "parallel-fill", "parallel-sum", "seqread", "seqwrite", "syscalls", "uart-storm"]);
});

for (const name of guests.filter((n) => n in OUTPUT || existsSync(join(EXPECTED, `${n}.out`)))) {
  test(`guest ${name}`, async (t) => {
    const r = await kmemvisor(["run", join(GUESTS, `${name}.elf`), "--timeout", "60"], { killAfterMs: 90_000 });
    t.is(r.stdout, expectedOutput(name), `stdout of ${name}`);
    t.is(r.status, STATUS[name] ?? 0, `exit status of ${name}; stderr: ${r.stderr}`);
  });
}

for (const smp of [2, 4]) {
  test(`guest hello with --smp ${smp}: the other harts park in wfi`, async (t) => {
    const r = await kmemvisor(["run", join(GUESTS, "hello.elf"), "--smp", String(smp), "--timeout", "60", "--json"], {
      killAfterMs: 90_000,
    });
    t.is(r.stdout, expectedOutput("hello"));
    t.is(r.status, 0, r.stderr);
    const json = JSON.parse(r.stderr.trim().split("\n").pop()!) as { harts: { hart: number; instructions: number }[] };
    t.is(json.harts.length, smp, "one statistics entry per hart");
    // hello ends within hart 0's first time slice, so the other harts may not have run at all.
  });
}

test("isa-test with --smp 2 gives the same result", async (t) => {
  const r = await kmemvisor(["run", join(GUESTS, "isa-test.elf"), "--smp", "2", "--timeout", "60", "--json"], {
    killAfterMs: 90_000,
  });
  t.is(r.stdout, expectedOutput("isa-test"));
  t.is(r.status, 0, r.stderr);
  const json = JSON.parse(r.stderr.trim().split("\n").pop()!) as {
    harts: { hart: number; instructions: number; wfiMilliseconds: number }[];
  };
  // Hart 1 runs in its own thread: it spins in crt0 until hart 0 has cleared .bss, then parks in
  // wfi, where it must sleep (not spin) until the VM stops.
  const hart1 = json.harts[1]!;
  t.true(hart1.instructions > 0, `hart 1 retired ${hart1.instructions} instructions`);
  t.true(hart1.wfiMilliseconds > 0, `hart 1 slept ${hart1.wfiMilliseconds} ms in wfi`);
});
