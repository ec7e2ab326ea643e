/**
 * The scrubber (mirror/scrubber.ts): silent corruptions (SDC) are found by comparing copies and
 * repaired by majority vote with three copies or more, reported as undecidable with two; a DUE in
 * a mirror copy is repaired from the primary.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Machine } from "../hypervisor/machine.ts";
import { compareCopies } from "../mirror/copies.ts";
import { RAM_BASE, type SyncStrategy } from "../shared-mem/layout.ts";
import { EXPECTED, GUESTS, kmemvisor } from "./helpers/cli.ts";

const DATA = RAM_BASE + 0x30_0000;

function machineWithData(copies: number, sync: SyncStrategy = "striped"): Machine {
  const machine = new Machine({ ramSize: 8 << 20, harts: 1, copies, sync });
  machine.writeRam(DATA, Uint8Array.from({ length: 4096 }, (_, i) => (i * 13) & 0xff));
  return machine;
}

const clean = (m: Machine) => compareCopies(m.memory.buffer, m.layout, m.physicalMap);

// Under striped and global the scrubber looks under the word's mirror lock, otherwise it looks again.
for (const sync of ["none", "atomic", "striped", "global"] as const) {
  test(`NMR 3: a flipped bit in the primary is voted down and repaired (--sync ${sync})`, (t) => {
    const machine = machineWithData(3, sync);
    machine.injectSdc(DATA + 0x123, 5, 0);
    t.is(clean(machine).length, 2, "both mirrors now differ from the primary");
    const findings = machine.scrubber.pass();
    t.is(findings.length, 1);
    t.is(findings[0]!.address, DATA + 0x120);
    t.true(findings[0]!.repaired);
    t.deepEqual(clean(machine), []);
    t.is(machine.readRam(DATA + 0x123, 1)[0], (0x123 * 13) & 0xff, "the primary holds the original byte again");
    t.deepEqual(machine.scrubber.stats(), { passes: 1, mismatches: 1, repaired: 1, undecidable: 0 });
  });
}

test("NMR 3: a flipped bit in a mirror copy is repaired too", (t) => {
  const machine = machineWithData(3);
  machine.injectSdc(DATA + 7, 0, 2);
  t.true(machine.scrubber.pass()[0]!.repaired);
  t.deepEqual(clean(machine), []);
});

test("NMR 2: a mismatch is reported as undecidable, once", (t) => {
  const machine = machineWithData(2);
  machine.injectSdc(DATA + 64, 1, 1);
  const first = machine.scrubber.pass();
  t.is(first.length, 1);
  t.false(first[0]!.repaired);
  t.deepEqual(machine.scrubber.pass(), [], "not reported again while nothing changes");
  t.is(machine.scrubber.stats().undecidable, 1);
  t.is(clean(machine).length, 1, "nothing was guessed");
});

test("a DUE in a mirror copy: the scrubber moves the page to a spare from the primary", (t) => {
  const machine = machineWithData(2);
  const page = machine.physicalMap.pageOf(DATA);
  const frame = machine.physicalMap.frameOf(page);
  machine.injectDue(DATA, 1);
  t.deepEqual(machine.scrubber.pass(), []);
  t.is(machine.recovery.stats().recoveries, 1);
  t.not(machine.physicalMap.frameOf(page), frame);
  t.deepEqual(clean(machine), []);
  t.is(machine.readRam(DATA + 100, 1)[0], (100 * 13) & 0xff);
});

test("--scrub with --inject sdc on a running 2-hart guest: found and repaired under NMR 3", async (t) => {
  // A byte in a routine the guest never runs (smp_fail): the guest's own result cannot hide it.
  // Flipped at hart 0's millionth instruction (of ~2.9 M): before the scrubber's last pass on any
  // host (a flip timed at 0.01 s came after the guest's end on a fast one, and was never made).
  const elf = join(GUESTS, "parallel-sum-small.elf");
  const r = await kmemvisor([
    "run", "-m", "16M", "--smp", "2", "--mirror", "vm", "--nmr", "3", "--scrub", "0.01", "--inject", "sdc@i:1000000:0x8000058c:3", "--json", "--timeout", "60", elf,
  ]);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, readFileSync(join(EXPECTED, "parallel-sum-small.out"), "latin1"));
  t.regex(r.stderr, /scrubber: silent corruption at 0x80000588 repaired by majority vote/);
  const report = JSON.parse(r.stderr.trim().split("\n").pop()!) as { memory: { scrub: { repaired: number; passes: number } } };
  t.is(report.memory.scrub.repaired, 1);
  t.true(report.memory.scrub.passes >= 1);
});
