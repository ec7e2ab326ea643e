/**
 * Failure injection and recovery (kMemvisor's recovery of a failed page): a DUE poisons a frame;
 * the next access by any hart raises a machine check to the hypervisor, which copies the page
 * from a good copy into a spare frame, remaps it and shoots down every TLB; the guest runs on.
 * Without a good copy the VM stops with a report of what failed, where and when.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseElf } from "../hypervisor/elf.ts";
import { Machine } from "../hypervisor/machine.ts";
import { compareCopies } from "../mirror/copies.ts";
import { parseInjection } from "../mirror/inject.ts";
import { PAGE_SIZE, RAM_BASE } from "../shared-mem/layout.ts";
import { EXPECTED, GUESTS, kmemvisor } from "./helpers/cli.ts";
import { Program, R, addi, beq, ld } from "./helpers/asm.ts";
import { runProgram } from "./helpers/machine.ts";
import { assertTranslated, BOTH_ENGINES } from "./helpers/engines.ts";
import type { EngineChoice } from "../vcpu/hart.ts";

const SEQREAD = join(GUESTS, "seqread-small.elf");
const heapStart = Number(parseElf(readFileSync(SEQREAD)).symbols.get("__heap_start"));

/**
 * seqread-small fills a 2 MiB buffer, then sums it twice and checks the sums. We stop it part way
 * through the sums, poison one of the buffer's pages AND destroy its contents in the primary copy
 * (what an uncorrectable error means), and let it finish: the sums are right only if the page
 * was recovered from a mirror.
 */
async function seqreadWithLostPage(copies: number, poisonCopies: number[], engine: EngineChoice) {
  const chunks: Uint8Array[] = [];
  const machine = new Machine({ ramSize: 64 << 20, harts: 1, copies, engine, output: (b) => chunks.push(b.slice()) });
  const image = machine.loadElf(readFileSync(SEQREAD), SEQREAD);
  machine.start(image.entry);
  machine.harts[0]!.run(3_000_000); // past the fill, inside the summing passes
  const victim = heapStart + 0x1f_0000; // near the end of the buffer: the last pass still has to read it
  const page = machine.physicalMap.pageOf(victim);
  const frame = machine.physicalMap.frameOf(page);
  for (const copy of poisonCopies) {
    machine.injectDue(victim, copy);
    // The poisoned copy's data is gone: scribble over it.
    new Uint8Array(machine.memory.buffer, frame * PAGE_SIZE + copy * machine.layout.copyStride, PAGE_SIZE).fill(0xa5);
  }
  const result = await machine.run({ timeoutMs: 30_000 });
  return { machine, result, output: Buffer.concat(chunks).toString("latin1"), page, frame };
}

for (const [engineName, engine] of BOTH_ENGINES) {
  test(`a DUE in a page the guest is reading is recovered from the mirror; the result stays right (${engineName})`, async (t) => {
    const { machine, result, output, page, frame } = await seqreadWithLostPage(2, [0], engine);
    t.is(output, readFileSync(join(EXPECTED, "seqread-small.out"), "latin1"));
    t.is(result.exitCode, 0);
    t.is(result.memory.recoveries, 1);
    t.is(result.memory.sparesUsed, 1);
    t.not(machine.physicalMap.frameOf(page), frame, "the page now lives in a spare frame");
    const seen = machine.readRam(RAM_BASE + page * PAGE_SIZE, PAGE_SIZE);
    t.false(seen.every((b) => b === 0xa5), "host reads go through the p2m too, not to the lost frame");
    t.deepEqual(compareCopies(machine.memory.buffer, machine.layout, machine.physicalMap), [], "and is mirrored again");
  });

  test(`with NMR 3, a page whose primary and first mirror both failed is recovered from the third copy (${engineName})`, async (t) => {
    const { result, output } = await seqreadWithLostPage(3, [0, 1], engine);
    t.regex(output, /seqread: OK/);
    t.is(result.exitCode, 0);
    t.is(result.memory.recoveries, 1);
  });

  test(`a DUE in an unmirrored VM stops it with a report naming the page, the hart, the pc and the time (${engineName})`, async (t) => {
    const { result, output } = await seqreadWithLostPage(1, [0], engine);
    t.is(result.reason, "fault");
    t.regex(result.fault ?? "", /uncorrectable memory error \(DUE\) in guest page 0x[0-9a-f]+ \(host frame \d+\), hit by hart 0 at pc 0x[0-9a-f]+, guest time [\d.]+ s: the VM is not mirrored/);
    t.notRegex(output, /seqread: OK/);
  });

  test(`every copy lost: the VM stops and says so (${engineName})`, async (t) => {
    const { result } = await seqreadWithLostPage(2, [0, 1], engine);
    t.is(result.reason, "fault");
    t.regex(result.fault ?? "", /every copy of the page is poisoned/);
  });
}

// Through the CLI, with harts in worker threads: a DUE in the code page both harts execute.
const PARALLEL = join(GUESTS, "parallel-sum-small.elf");
const codePage = "0x80000000";
// parallel-sum-small retires ~2.9 M instructions on hart 0 with 2 harts: a DUE at its millionth
// lands mid-run on any host (a timed one at 0.02 s raced the guest's exit on a fast one).
const MID_RUN = "i:1000000";

for (const engine of ["jit", "interp"]) {
  test(`--inject on 2 harts: a mirrored VM recovers and finishes with the right result (--engine ${engine})`, async (t) => {
    const r = await kmemvisor(["run", "--smp", "2", "--engine", engine, "--mirror", "vm", "--inject", `due@${MID_RUN}:${codePage}`, "--json", "--timeout", "60", PARALLEL]);
    t.is(r.stdout, readFileSync(join(EXPECTED, "parallel-sum-small.out"), "latin1"), r.stderr);
    t.is(r.status, 0);
    const report = JSON.parse(r.stderr.trim().split("\n").pop()!) as { memory: { injected: number; recoveries: number } };
    t.is(report.memory.injected, 1);
    t.is(report.memory.recoveries, 1);
  });
}

test("--inject on 2 harts: an unmirrored VM stops with the report (status 70)", async (t) => {
  const r = await kmemvisor(["run", "--smp", "2", "--inject", `due@${MID_RUN}:${codePage}`, "--timeout", "60", PARALLEL]);
  t.is(r.status, 70, r.stderr);
  t.regex(r.stderr, /uncorrectable memory error \(DUE\) in guest page 0x80000000 .*hit by hart \d at pc 0x[0-9a-f]+, guest time [\d.]+ s: the VM is not mirrored/);
});

test("injection specs are checked", async (t) => {
  t.deepEqual(parseInjection("due@0.5:0x80200000"), { kind: "due", atMs: 500, gpa: 0x8020_0000, copy: 0, bit: 0 });
  t.deepEqual(parseInjection("due@2:2147483648:1"), { kind: "due", atMs: 2000, gpa: 0x8000_0000, copy: 1, bit: 0 });
  t.deepEqual(parseInjection("sdc@0.1:0x80000010:7:2"), { kind: "sdc", atMs: 100, gpa: 0x8000_0010, copy: 2, bit: 7 });
  for (const bad of ["sdc@1:0x80000000", "sdc@1:0x80000000:8", "due@x:0x80000000", "due@1", "due@1:zz"]) {
    t.throws(() => parseInjection(bad), { message: /bad --inject/ });
  }
  const r = await kmemvisor(["run", "--inject", "due@1:nowhere", PARALLEL]);
  t.is(r.status, 64);
  t.regex(r.stderr, /bad --inject "due@1:nowhere"/);
  t.deepEqual(parseInjection("due@i:1000:0x80001000"), { kind: "due", atInstruction: 1000, gpa: 0x8000_1000, copy: 0, bit: 0 });
  t.deepEqual(parseInjection("sdc@i:0x10:0x80000010:3:1"), { kind: "sdc", atInstruction: 16, gpa: 0x8000_0010, copy: 1, bit: 3 });
  for (const bad of ["due@i:0x80000000", "due@i:1.5:0x80000000", "due@i::0x80000000", "sdc@i:5:0x80000000"]) {
    t.throws(() => parseInjection(bad), { message: /bad --inject/ }, bad);
  }
});

// Issue 16 item 10: targets that could never land are refused when the flags are read (exit 64,
// one line), not when they fire (a RangeError stopping the VM mid-run, status 70).
for (const [what, flags, message] of [
  ["an address outside RAM", ["--mirror", "vm", "--inject", "due@0:0x10000000"], /^kmemvisor: bad --inject "due@0:0x10000000": 0x10000000 is not in guest RAM \(0x80000000–0x87ffffff\)$/],
  ["an address past the end of a small RAM", ["-m", "16M", "--inject", "sdc@i:10:0x81000000:0"], /0x81000000 is not in guest RAM \(0x80000000–0x80ffffff\)$/],
  ["a copy the VM does not have", ["--mirror", "vm", "--nmr", "2", "--inject", "due@0:0x80000000:2"], /^kmemvisor: bad --inject "due@0:0x80000000:2": copy 2 does not exist: the VM has copies 0–1$/],
  ["a mirror copy of an unmirrored VM", ["--inject", "due@i:5:0x80000000:1"], /^kmemvisor: bad --inject "due@i:5:0x80000000:1": copy 1 does not exist: the VM is not mirrored \(give --mirror\)$/],
] as const) {
  test(`--inject with ${what}: exit 64 before the guest runs, one line`, async (t) => {
    const r = await kmemvisor(["run", ...flags, "--timeout", "30", PARALLEL]);
    t.is(r.status, 64, r.stderr);
    t.is(r.stdout, "", "the guest never ran");
    t.is(r.stderr.trim().split("\n").length, 1, r.stderr);
    t.regex(r.stderr.trim(), message);
  });
}

test("data a device wrote by DMA survives a DUE in its page", async (t) => {
  const { GuestDmaMemory } = await import("../mirror/dma.ts");
  const machine = new Machine({ ramSize: 16 << 20, harts: 1, copies: 2 });
  const dma = new GuestDmaMemory(machine.memory.buffer, machine.layout, machine.physicalMap, (page) =>
    machine.recovery.recover(page, "test DMA"),
  );
  const sector = Uint8Array.from({ length: 512 }, (_, i) => (i * 31 + 7) & 0xff);
  const gpa = 0x8040_0ff0; // straddles two pages
  dma.write(gpa, sector);
  const page = machine.physicalMap.pageOf(gpa);
  const frame = machine.physicalMap.frameOf(page);
  machine.injectDue(gpa);
  new Uint8Array(machine.memory.buffer, frame * PAGE_SIZE, PAGE_SIZE).fill(0); // the primary's data is lost
  t.deepEqual(dma.read(gpa, 512), sector);
  t.is(machine.recovery.stats().recoveries, 1);
  t.not(machine.physicalMap.frameOf(page), frame);
  t.deepEqual(compareCopies(machine.memory.buffer, machine.layout, machine.physicalMap), []);
});

test("random injection: repeatable for a seed, at about the rate asked, inside RAM", async (t) => {
  const { parseRandomInjection, randomInjections } = await import("../mirror/inject.ts");
  const spec = parseRandomInjection("random@50:42")!;
  t.deepEqual(spec, { ratePerSecond: 50, seed: 42 });
  const ram = { base: 0x8000_0000, size: 16 << 20, copies: 3 };
  const a = randomInjections(spec, ram, 10_000);
  t.deepEqual(randomInjections(spec, ram, 10_000), a, "same seed, same failures");
  t.notDeepEqual(randomInjections({ ...spec, seed: 43 }, ram, 10_000), a);
  t.true(a.length > 400 && a.length < 600, `about 500 in 10 s at 50/s, got ${a.length}`);
  for (const f of a) {
    t.true(f.gpa >= ram.base && f.gpa < ram.base + ram.size && f.gpa % 4096 === 0 && f.copy >= 0 && f.copy < 3);
  }
  t.true(a.every((f, i) => i === 0 || f.atMs! >= a[i - 1]!.atMs!));
  t.is(parseRandomInjection("due@1:0x80000000"), undefined);
  t.throws(() => parseRandomInjection("random@0"), { message: /above 0/ });
});

test("random injection on a small mirrored VM with the scrubber: the guest runs on", async (t) => {
  const r = await kmemvisor([
    "run", "-m", "16M", "--smp", "2", "--mirror", "vm", "--nmr", "3", "--scrub", "0.005", "--inject", "random@40:3", "--json", "--timeout", "60", PARALLEL,
  ]);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, readFileSync(join(EXPECTED, "parallel-sum-small.out"), "latin1"));
  const report = JSON.parse(r.stderr.trim().split("\n").pop()!) as { memory: { injected: number; recoveries: number } };
  t.true(report.memory.injected >= 1);
  // Each poisoned page is recovered once, by a hart or by the scrubber (its last pass runs after
  // the guest stopped); two failures in copies of one page share a recovery.
  t.true(report.memory.recoveries >= 1 && report.memory.recoveries <= report.memory.injected, JSON.stringify(report.memory));
});

test("--inject on 2 harts into the working set both harts update with AMOs: recovered, result right", async (t) => {
  // The page holding parallel-sum's per-hart buffers' tail, its AMO totals and barrier words.
  const image = parseElf(readFileSync(PARALLEL));
  const totals = Number(image.symbols.get("lcg_total"));
  t.is(Math.floor(totals / PAGE_SIZE), Math.floor(Number(image.symbols.get("arrived")) / PAGE_SIZE), "one page, shared by all harts");
  const page = `0x${(totals - (totals % PAGE_SIZE)).toString(16)}`;
  for (const at of ["0", MID_RUN]) { // before the start, and mid-run
    const r = await kmemvisor(["run", "--smp", "2", "--mirror", "vm", "--inject", `due@${at}:${page}`, "--json", "--timeout", "60", PARALLEL]);
    t.is(r.stdout, readFileSync(join(EXPECTED, "parallel-sum-small.out"), "latin1"), r.stderr);
    t.is(r.status, 0);
    const report = JSON.parse(r.stderr.trim().split("\n").pop()!) as { memory: { recoveries: number } };
    t.is(report.memory.recoveries, 1, `DUE at ${at}`);
  }
});

// --- injection by instruction count ------------------------------------------------------------
/**
 * A loop of three instructions (count, load a flag, loop while it is 0) after P set-up
 * instructions; an SDC at hart 0's Nth instruction sets the flag. The load of iteration k is
 * preceded by P + 3k − 2 retired instructions, so it is the first to see the flag when that is
 * ≥ N: the loop ends after k = ceil((N − P + 2) / 3) iterations, as a0 says.
 */
function flagLoop(): { program: Program; flag: bigint; setup: number } {
  const p = new Program();
  p.la(R.s0, "flag").li(R.a0, 0);
  p.label("loop").emit(addi(R.a0, R.a0, 1), ld(R.a1, 0, R.s0)).branch(beq, R.a1, 0, "loop").exit(0);
  p.align(8).label("flag").space(8);
  return { program: p, flag: p.address("flag"), setup: Number(p.address("loop") - p.base) / 4 };
}

for (const [name, engine] of BOTH_ENGINES) {
  for (const workers of [false, true]) {
    test(`sdc@i:N fires at hart 0's Nth instruction (${name}, ${workers ? "worker thread" : "inline"})`, async (t) => {
      const { program, flag, setup } = flagLoop();
      // Inline: three neighbouring N and a far one; in worker threads (slow to start) one suffices.
      for (const N of workers ? [30_002] : [30_001, 30_002, 30_003, 90_000]) {
        const run = await runProgram(program, {
          engine,
          machine: { workers },
          run: { injections: [parseInjection(`sdc@i:${N}:${flag}:0`)] },
          timeoutMs: 30_000,
        });
        t.is(run.result.exitCode, 0);
        t.is(run.result.memory.injected, 1);
        const expected = Math.ceil((N - setup + 2) / 3);
        const iterations = Number(run.x(R.a0));
        if (name === "interp") t.is(iterations, expected, `N = ${N}: exact on the interpreter`);
        else {
          // Translated loops look at their budget on the back edge: at most one iteration later.
          t.true(iterations === expected || iterations === expected + 1, `N = ${N}: ${iterations} iterations, expected ${expected}`);
          assertTranslated(t, run.result, engine);
        }
      }
    });
  }
}

test("a counted injection the guest never reaches is not made", async (t) => {
  const { program, flag } = flagLoop();
  const run = await runProgram(program, {
    engine: { kind: "interp" },
    run: { injections: [parseInjection(`sdc@i:1000:${flag}:0`), parseInjection(`due@i:1000000000:${flag}`)] },
    timeoutMs: 30_000,
  });
  t.is(run.result.exitCode, 0);
  t.is(run.result.memory.injected, 1, "the first only: the guest ended long before its billionth instruction");
});
