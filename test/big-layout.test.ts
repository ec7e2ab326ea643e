/**
 * Layouts of more than 2 GiB of host memory (issue 16, item 9): every host offset is an unsigned
 * 32-bit number, so a guest reaches the top of its RAM, and its stores reach mirror copies, beyond
 * host offset 2^31 on both engines; a layout over the 4 GiB a wasm memory holds is a usage error.
 *
 * Each machine reserves close to 4 GiB of address space but touches only a few pages of it.
 */
import test from "ava";
import type { Machine } from "../hypervisor/machine.ts";
import { computeLayout, PAGE_SIZE, RAM_BASE } from "../shared-mem/layout.ts";
import type { EngineChoice } from "../vcpu/hart.ts";
import { Program, R, add, addi, amoadd_d, bne, ld, mv, sd, xor } from "./helpers/asm.ts";
import { kmemvisor, GUESTS } from "./helpers/cli.ts";
import { runProgram } from "./helpers/machine.ts";
import { join } from "node:path";

const MiB = 2 ** 20;
const WORDS = PAGE_SIZE / 8;
const ROUNDS = 40;

/**
 * Write the last page of RAM word by word (value = address ^ round), read it back into a checksum
 * (a0), ROUNDS times; then an AMO on the last word. The loop is hot: the translator compiles it.
 */
function topOfRamProgram(ramSize: number): Program {
  const top = RAM_BASE + ramSize - PAGE_SIZE;
  const p = new Program();
  p.li(R.s0, top).li(R.s1, ROUNDS).li(R.a0, 0);
  p.label("round").emit(mv(R.t0, R.s0)).li(R.t1, WORDS);
  p.label("write").emit(xor(R.t2, R.t0, R.s1), sd(R.t2, 0, R.t0), addi(R.t0, R.t0, 8), addi(R.t1, R.t1, -1)).branch(bne, R.t1, 0, "write");
  p.emit(mv(R.t0, R.s0)).li(R.t1, WORDS);
  p.label("read").emit(ld(R.t2, 0, R.t0), add(R.a0, R.a0, R.t2), addi(R.t0, R.t0, 8), addi(R.t1, R.t1, -1)).branch(bne, R.t1, 0, "read");
  p.emit(addi(R.s1, R.s1, -1)).branch(bne, R.s1, 0, "round");
  p.li(R.t0, top + PAGE_SIZE - 8).li(R.t1, 5).emit(amoadd_d(R.t2, R.t1, R.t0));
  return p.exit(0);
}

function expectedChecksum(ramSize: number): bigint {
  const top = BigInt(RAM_BASE + ramSize - PAGE_SIZE);
  let sum = 0n;
  for (let round = BigInt(ROUNDS); round > 0n; round--) {
    for (let w = 0n; w < BigInt(WORDS); w++) sum += (top + 8n * w) ^ round;
  }
  return BigInt.asUintN(64, sum);
}

const ENGINES: EngineChoice[] = [{ kind: "interp" }, { kind: "jit", threshold: 1, synchronous: true }];

// RAM alone past 2 GiB (its top page at host offset ~3 GiB); and 1280 MiB in three copies, whose
// copies 1 and 2 (and the hart areas after them) lie past 2 GiB of host offset.
for (const { ramSize, copies } of [{ ramSize: 3072 * MiB, copies: 1 }, { ramSize: 1280 * MiB, copies: 3 }]) {
  for (const engine of ENGINES) {
    test.serial(`${ramSize / MiB} MiB in ${copies} cop${copies > 1 ? "ies" : "y"}, ${engine.kind}: the top of RAM and its copies past host offset 2 GiB`, async (t) => {
      // Mirrored: the top page's primary is poisoned before the run, so recovery moves it to a spare
      // frame, whose copies lie past host offset 2 GiB too (the spare's own checks are below).
      const top = RAM_BASE + ramSize - PAGE_SIZE;
      const beforeRun = copies > 1 ? (machine: Machine) => machine.injectDue(top, 0) : undefined;
      const run = await runProgram(topOfRamProgram(ramSize), { ramSize, copies, engine, timeoutMs: 60_000, beforeRun });
      t.is(run.result.reason, "exit", run.result.fault);
      if (copies > 1) {
        t.is(run.result.memory.recoveries, 1, "the poisoned top page was recovered");
        t.true(run.machine.physicalMap.frameOf(ramSize / PAGE_SIZE - 1) * PAGE_SIZE >= run.machine.layout.spareOffset, "into a spare frame");
      }
      t.is(run.x(R.a0), expectedChecksum(ramSize), "every word read back as written");
      const last = BigInt(RAM_BASE + ramSize - 8);
      t.is(run.ram64(last), (last ^ 1n) + 5n, "the AMO on the last word of RAM");
      const { layout, physicalMap } = run.machine;
      const page = ramSize / PAGE_SIZE - 1;
      const primary = physicalMap.frameOf(page) * PAGE_SIZE;
      const host = new DataView(run.machine.memory.buffer);
      t.true(primary + layout.mirrorOffset(copies - 1) >= 2 ** 31, "the page's last copy lies past host offset 2 GiB");
      for (let k = 1; k < copies; k++) {
        t.is(host.getBigUint64(primary + layout.mirrorOffset(k) + PAGE_SIZE - 8, true), (last ^ 1n) + 5n, `copy ${k} has the AMO's result`);
        t.is(host.getBigUint64(primary + layout.mirrorOffset(k), true), BigInt(RAM_BASE + ramSize - PAGE_SIZE) ^ 1n, `copy ${k} has the stores`);
      }
      if (engine.kind === "jit") t.true((run.result.harts[0]!.jit?.pagesCompiled ?? 0) > 0, "the loop ran translated");
    });
  }
}

test("the issue's runs through the CLI (hart worker, devices and their state past 2 GiB): -m 1G --mirror vm --nmr 3", async (t) => {
  const run = await kmemvisor(["run", "-m", "1G", "--mirror", "vm", "--nmr", "3", join(GUESTS, "hello.elf")]);
  t.is(run.status, 0, run.stderr);
  t.regex(run.stdout, /sum of 1\.\.100 = 5050/);
});

test("a layout over 4 GiB of host memory is refused with the limit, by the layout and by the CLI (exit 64)", async (t) => {
  t.throws(() => computeLayout({ ramSize: 2048 * MiB, copies: 2, spareFrames: 64, harts: 1 }), { message: /limit is 4 GiB/ });
  t.notThrows(() => computeLayout({ ramSize: 4000 * MiB, copies: 1, spareFrames: 64, harts: 1 }));
  for (const args of [["-m", "1G", "--mirror", "vm", "--nmr", "4"], ["-m", "4G"]]) {
    const run = await kmemvisor(["run", ...args, join(GUESTS, "hello.elf")]);
    t.is(run.status, 64, run.stderr);
    t.regex(run.stderr, /4 GiB/);
    t.is(run.stderr.trim().split("\n").length, 1, "one line");
  }
});
