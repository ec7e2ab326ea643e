/**
 * Mirroring and recovery proven on the translator (issue 17, findings 3 and 4): every AMO, LR/SC
 * and plain store width in translated code reaches every copy, on two harts racing in worker
 * threads and taking turns inline, with the copies compared at pauses during the run as well as at
 * its end; and recovery while translated code runs (a DUE on a data page its inline TLB reads, on
 * its own code page, and during a translated AMO loop), timed by instruction count. Every run that
 * claims to run the translator asserts that it translated. The same programs on the interpreter
 * are the control.
 */
import test, { type ExecutionContext } from "ava";
import { parseInjection } from "../mirror/inject.ts";
import type { SyncStrategy } from "../shared-mem/layout.ts";
import { PAGE_SIZE } from "../shared-mem/layout.ts";
import type { EngineChoice } from "../vcpu/hart.ts";
import {
  Program, R, beq,
  add, addi, amoadd_d, amoadd_w, amoand_d, amomax_d, amomaxu_d, amomin_d, amominu_w, amoor_d, amoswap_w, amoxor_w,
  andi, bne, ld, lr_d, lr_w, lw, sb, sc_d, sc_w, sd, sh, sll, slli, sub, sw, wfi, xori,
} from "./helpers/asm.ts";
import { assertCopiesAgree, copiesComparedAtPauses } from "./helpers/copies.ts";
import { runProgram } from "./helpers/machine.ts";
import { assertTranslated, INTERPRETER, TRANSLATOR } from "./helpers/engines.ts";

const JIT = TRANSLATOR;
const INTERP = INTERPRETER;

// --- AMOs, LR/SC and stores of every width, two harts --------------------------------------------
/** Offsets in the shared page, and what each hart does to the word there each iteration. */
const W = {
  addD: 0, // amoadd.d 1
  addW: 8, // amoadd.w 1
  swapW: 16, // amoswap.w i (the iteration count, N down to 1)
  orD: 24, // amoor.d 1 << hart
  maxD: 32, // amomax.d i
  minuW: 40, // amominu.w i (starts at 0xffff_ffff)
  lrscD: 48, // lr.d / sc.d increment
  lrscW: 56, // lr.w / sc.w increment
  done: 64, // amoadd.w 1 when the hart is done
  andD: 72, // amoand.d ~(1 << (hart + 4)) (starts all ones)
  xorW: 80, // amoxor.w hart + 1
  minD: 88, // amomin.d −i
  maxuD: 96, // amomaxu.d i
} as const;

/**
 * Each hart (a0 = hart id) runs N iterations of every AMO kind and width above, an LR/SC increment
 * of both widths, and sb/sh/sw/sd into its own page; hart 0 exits when both are done, hart 1 parks.
 */
function amoProgram(N: number): Program {
  const p = new Program();
  p.la(R.s0, "shared").li(R.s1, N);
  p.emit(addi(R.s2, R.s0, W.addW), addi(R.s3, R.s0, W.swapW), addi(R.s4, R.s0, W.orD), addi(R.s5, R.s0, W.maxD));
  p.emit(addi(R.s6, R.s0, W.minuW), addi(R.s8, R.s0, W.lrscD), addi(R.s9, R.s0, W.lrscW), addi(R.s10, R.s0, W.andD));
  p.emit(addi(R.s11, R.s0, W.minD), addi(R.a1, R.s0, W.xorW), addi(R.a2, R.s0, W.maxuD));
  p.la(R.s7, "buffers").emit(slli(R.t3, R.a0, 12), add(R.s7, R.s7, R.t3)); // this hart's page
  p.li(R.a4, 1).emit(sll(R.a4, R.a4, R.a0)); // 1 << hart
  p.li(R.a3, 1).emit(addi(R.t0, R.a0, 4), sll(R.a3, R.a3, R.t0), xori(R.a3, R.a3, -1)); // ~(1 << (hart + 4))
  p.emit(addi(R.a5, R.a0, 1)).li(R.a6, 1).j("loop");
  p.align(PAGE_SIZE).label("loop"); // the loop in a page of its own
  p.emit(amoadd_d(0, R.a6, R.s0), amoadd_w(0, R.a6, R.s2), amoswap_w(0, R.s1, R.s3), amoor_d(0, R.a4, R.s4));
  p.emit(amomax_d(0, R.s1, R.s5), amominu_w(0, R.s1, R.s6), sub(R.t0, 0, R.s1), amomin_d(0, R.t0, R.s11));
  p.emit(amomaxu_d(0, R.s1, R.a2), amoand_d(0, R.a3, R.s10), amoxor_w(0, R.a5, R.a1));
  p.label("lrd").emit(lr_d(R.t0, R.s8), addi(R.t0, R.t0, 1), sc_d(R.t1, R.t0, R.s8)).branch(bne, R.t1, 0, "lrd");
  p.label("lrw").emit(lr_w(R.t0, R.s9), addi(R.t0, R.t0, 1), sc_w(R.t1, R.t0, R.s9)).branch(bne, R.t1, 0, "lrw");
  p.emit(andi(R.t2, R.s1, 63), slli(R.t2, R.t2, 3), add(R.t2, R.t2, R.s7));
  p.emit(sd(R.s1, 0, R.t2), sw(R.s1, 512, R.t2), sh(R.s1, 1024, R.t2), sb(R.s1, 1536, R.t2));
  p.emit(addi(R.s1, R.s1, -1)).branch(bne, R.s1, 0, "loop");
  p.emit(addi(R.t0, R.s0, W.done), amoadd_w(0, R.a6, R.t0)).branch(bne, R.a0, 0, "park");
  p.li(R.t2, 2).label("wait").emit(lw(R.t1, 0, R.t0)).branch(bne, R.t1, R.t2, "wait").exit(0);
  p.label("park").emit(wfi()).j("park");
  p.align(PAGE_SIZE).label("shared").space(PAGE_SIZE);
  p.align(PAGE_SIZE).label("buffers").space(2 * PAGE_SIZE);
  return p;
}

/** Initial words of the shared page: amominu.w starts at 0xffff_ffff, amoand.d at all ones. */
function initialShared(p: Program): [bigint, Uint8Array][] {
  const word = (v: bigint) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, v, true); return b; };
  return [[p.address("shared") + BigInt(W.minuW), word(0xffff_ffffn)], [p.address("shared") + BigInt(W.andD), word((1n << 64n) - 1n)]];
}

/** The words a correct run leaves: each computed from N and the two harts' operations. */
function checkAmoResults(t: ExecutionContext, ram64: (gpa: bigint) => bigint, p: Program, N: number): void {
  const at = (offset: number) => ram64(p.address("shared") + BigInt(offset));
  const u64 = (v: bigint) => BigInt.asUintN(64, v);
  const n = BigInt(N);
  t.deepEqual(
    Object.fromEntries(Object.entries(W).map(([name, offset]) => [name, at(offset)])),
    {
      addD: 2n * n, addW: 2n * n, swapW: 1n, orD: 3n, maxD: n, minuW: 1n, lrscD: 2n * n, lrscW: 2n * n, done: 2n,
      andD: u64(~0x30n), xorW: N % 2 === 1 ? 3n : 0n, minD: u64(-n), maxuD: n,
    },
    "every AMO's and LR/SC's result",
  );
  for (const hart of [0, 1]) {
    const page = p.address("buffers") + BigInt(hart * PAGE_SIZE);
    for (const slot of [0, 1, 37, 63]) {
      const last = BigInt(slot === 0 ? 64 : slot); // the smallest i with i mod 64 = slot
      const gpa = page + BigInt(slot * 8);
      t.deepEqual(
        [ram64(gpa), ram64(gpa + 512n) & 0xffff_ffffn, ram64(gpa + 1024n) & 0xffffn, ram64(gpa + 1536n) & 0xffn],
        [last, last, last, last],
        `hart ${hart}'s sd/sw/sh/sb to slot ${slot}`,
      );
    }
  }
}

/**
 * Run amoProgram(N) on 2 harts (a DUE in its shared page at hart 0's instruction `due`, if given),
 * comparing the copies every 2 ms while it runs; then check it exited, translated (under the jit),
 * every result, the pauses' comparisons and the copies at the end.
 */
async function runAmoProgram(
  t: ExecutionContext,
  N: number,
  options: { engine: EngineChoice; sync: SyncStrategy; workers: boolean; copies: number; due?: number },
) {
  const p = amoProgram(N);
  let compared: ReturnType<typeof copiesComparedAtPauses> | undefined;
  const run = await runProgram(p, {
    engine: options.engine,
    harts: 2,
    copies: options.copies,
    machine: { sync: options.sync, workers: options.workers },
    timeoutMs: 60_000,
    beforeRun: (machine) => { for (const [gpa, bytes] of initialShared(p)) machine.writeRam(Number(gpa), bytes); },
    run: (machine) => ({
      pauses: (compared = copiesComparedAtPauses(machine, 2)).pauses,
      injections: options.due === undefined ? [] : [parseInjection(`due@i:${options.due}:${p.address("shared")}`)],
    }),
  });
  t.is(run.result.exitCode, 0, run.result.fault);
  assertTranslated(t, run.result, options.engine);
  checkAmoResults(t, run.ram64, p, N);
  compared!.assert(t);
  assertCopiesAgree(t, run.machine);
  return run;
}

const RUNS: [string, EngineChoice, boolean, SyncStrategy[]][] = [
  // Inline the harts take turns: every strategy's translated code, cheaply.
  ["jit inline", JIT, false, ["none", "atomic", "striped", "global"]],
  ["interp inline", INTERP, false, ["striped"]],
  // In worker threads they race; `none` does not promise agreement under racing swaps and SCs.
  ["jit workers", JIT, true, ["atomic", "striped", "global"]],
  ["interp workers", INTERP, true, ["striped"]],
];
for (const [name, engine, workers, strategies] of RUNS) {
  for (const sync of strategies) {
    test(`AMOs, LR/SC and every store width reach every copy (${name}, --sync ${sync}); the copies agree at pauses and at the end`, async (t) => {
      const N = workers ? 60_001 : 3_001;
      const run = await runAmoProgram(t, N, { engine, sync, workers, copies: 3 });
      t.is(run.result.reason, "exit", run.result.fault);
    });
  }
}

// --- recovery while translated code runs -----------------------------------------------------------
const TABLE_WORDS = 512;
const tableWord = (k: number) => BigInt.asUintN(64, BigInt(k + 1) * 0x9e37_79b9_7f4a_7c15n);
const TABLE_SUM = BigInt.asUintN(64, Array.from({ length: TABLE_WORDS }, (_, k) => tableWord(k)).reduce((a, b) => a + b, 0n));

/**
 * One hart sums a page-sized table (loads through the translated code's inline TLB) ROUNDS times,
 * from a loop in a page of its own, and counts in s3 the rounds whose sum was wrong and in s4 the
 * rounds done (by an `addi s4, s4, 1` at label "count", an instruction a test can corrupt).
 */
function tableSumProgram(rounds: number): Program {
  const p = new Program();
  p.la(R.s0, "table").li(R.s1, rounds).li(R.s2, TABLE_SUM).li(R.s3, 0).li(R.s4, 0).j("round");
  p.align(PAGE_SIZE).label("round").li(R.a0, 0).emit(addi(R.t0, R.s0, 0)).li(R.t1, TABLE_WORDS);
  p.label("sum").emit(ld(R.t2, 0, R.t0), add(R.a0, R.a0, R.t2), addi(R.t0, R.t0, 8), addi(R.t1, R.t1, -1)).branch(bne, R.t1, 0, "sum");
  p.branch(beq, R.a0, R.s2, "right").emit(addi(R.s3, R.s3, 1));
  p.label("right").label("count").emit(addi(R.s4, R.s4, 1), addi(R.s1, R.s1, -1)).branch(bne, R.s1, 0, "round").exit(0);
  p.align(PAGE_SIZE).label("table").dword(...Array.from({ length: TABLE_WORDS }, (_, k) => tableWord(k)));
  return p;
}

const ROUNDS = 400; // ~2.5 M instructions; the failures come at the millionth
const AT = 1_000_000;

/**
 * Lose the page at `target` in the primary at hart 0's instruction AT: a DUE poisons it and an
 * SDC at the same instruction destroys a bit of it (what a DUE means: the primary's data is gone),
 * so a hart that read on from the old frame, or a recovery from the wrong copy, gives a wrong result.
 */
async function loseAPage(engine: EngineChoice, target: bigint, bit: { offset: number; bit: number }, due = true) {
  const p = tableSumProgram(ROUNDS);
  const injections = [parseInjection(`sdc@i:${AT}:${target + BigInt(bit.offset)}:${bit.bit}`)];
  if (due) injections.push(parseInjection(`due@i:${AT}:${target}`));
  let frameBefore = -1;
  const run = await runProgram(p, {
    engine,
    copies: 2,
    timeoutMs: 60_000,
    beforeRun: (machine) => { frameBefore = machine.physicalMap.frameOf(machine.physicalMap.pageOf(Number(target))); },
    run: { injections },
  });
  const frameAfter = run.machine.physicalMap.frameOf(run.machine.physicalMap.pageOf(Number(target)));
  return { run, moved: frameAfter !== frameBefore, p };
}

for (const [name, engine] of [["jit", JIT], ["interp", INTERP]] as const) {
  test(`a DUE on a data page translated code reads through its inline TLB is recovered; no wrong sum (${name})`, async (t) => {
    const p = tableSumProgram(ROUNDS);
    const { run, moved } = await loseAPage(engine, p.address("table"), { offset: 8 * 100 + 2, bit: 3 });
    t.is(run.result.exitCode, 0, run.result.fault);
    assertTranslated(t, run.result, engine);
    t.deepEqual([run.x(R.s4), run.x(R.s3)], [BigInt(ROUNDS), 0n], "every round done, none with a wrong sum");
    t.deepEqual([run.result.memory.injected, run.result.memory.recoveries], [2, 1]);
    t.true(moved, "the table now lives in a spare frame");
    assertCopiesAgree(t, run.machine);
  });

  test(`a translated code page is moved to a spare frame by recovery and runs on right (${name})`, async (t) => {
    const p = tableSumProgram(ROUNDS);
    // Bit 21 of `addi s4, s4, 1` (its immediate's bit 1): a run that went on from the lost
    // primary would count 3 per round from there.
    const { run, moved } = await loseAPage(engine, p.address("round") & ~BigInt(PAGE_SIZE - 1), { offset: Number(p.address("count") % BigInt(PAGE_SIZE)) + 2, bit: 5 });
    t.is(run.result.exitCode, 0, run.result.fault);
    assertTranslated(t, run.result, engine);
    t.deepEqual([run.x(R.s4), run.x(R.s3)], [BigInt(ROUNDS), 0n], "every round counted once, none with a wrong sum");
    t.is(run.result.memory.recoveries, 1);
    t.true(moved, "the code page now lives in a spare frame");
    assertCopiesAgree(t, run.machine);
  });
}

test("control: the lost bit alone (no DUE) is seen by the guest, so the tests above can fail", async (t) => {
  const p = tableSumProgram(ROUNDS);
  const { run } = await loseAPage(INTERP, p.address("table"), { offset: 8 * 100 + 2, bit: 3 }, false);
  t.is(run.result.exitCode, 0);
  t.true(run.x(R.s3) > 0n, `${run.x(R.s3)} rounds summed the corrupted table`);
  t.is(run.result.memory.recoveries, 0);
});

for (const [name, engine] of [["jit", JIT], ["interp", INTERP]] as const) {
  test(`a DUE during a translated AMO loop on 2 harts: the shared page recovered, every result right (${name})`, async (t) => {
    // ~2 M instructions a hart; the DUE at hart 0's millionth.
    const run = await runAmoProgram(t, 60_001, { engine, sync: "striped", workers: true, copies: 2, due: AT });
    t.deepEqual([run.result.memory.injected, run.result.memory.recoveries], [1, 1]);
  });
}
