/**
 * The lockstep differential tester (host/difftest.ts, `kmemvisor difftest`): random instruction
 * streams and a real guest agree on both engines; the detector names the step, register, CSR or
 * address of a difference planted in the translator's machine; the CLI's exit statuses.
 */
import test, { type ExecutionContext } from "ava";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  cBranch, cJump, difftestGuest, difftestStream, difftestStreams, formatDivergence, randomStream, type DifftestResult,
  type MachinePair,
} from "../host/difftest.ts";
import { randomLoopProgram } from "../host/difftest-loops.ts";
import { decode } from "../vcpu/decoder.ts";
import { ILLEGAL_OP } from "../vcpu/isa.ts";
import { GUESTS, kmemvisor } from "./helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "kmemvisor-difftest-test-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const ISA_TEST = readFileSync(join(GUESTS, "isa-test.elf"));
const HELLO = readFileSync(join(GUESTS, "hello.elf"));

// --- the generator ---------------------------------------------------------------------------------

test("compressed branch and jump encoders round-trip through the decoder", (t) => {
  for (const offset of [-256, -2, 2, 6, 100, 254]) {
    for (const nonZero of [false, true]) {
      const d = decode(cBranch(nonZero, 9, offset));
      t.is(d.name, nonZero ? "bne" : "beq");
      t.is(d.rs1, 9);
      t.is(d.imm, offset);
      t.is(d.length, 2);
    }
  }
  for (const offset of [-2048, -2, 2, 1000, 2046]) {
    const d = decode(cJump(offset));
    t.is(d.name, "jal");
    t.is(d.rd, 0);
    t.is(d.imm, offset);
  }
});

test("a random stream is repeatable from its seed and covers the instruction mix", (t) => {
  const a = randomStream(42, 3000);
  t.deepEqual(randomStream(42, 3000), a);
  t.notDeepEqual(randomStream(43, 3000).segments[0], a.segments[0]);
  const code = a.segments[0]!.bytes;
  const names = new Map<string, number>();
  let compressed = 0;
  for (let offset = 0; offset + 2 <= code.length; ) {
    const low = code[offset]! | (code[offset + 1]! << 8);
    const raw = (low & 3) === 3 ? (low | (code[offset + 2]! << 16) | (code[offset + 3]! << 24)) >>> 0 : low;
    const d = decode(raw);
    if (d.length === 2) compressed++;
    names.set(d.op === ILLEGAL_OP ? "illegal" : d.name, (names.get(d.op === ILLEGAL_OP ? "illegal" : d.name) ?? 0) + 1);
    offset += d.length;
  }
  const has = (pattern: RegExp) => [...names.keys()].filter((n) => pattern.test(n)).length;
  t.true(compressed > 100, `compressed: ${compressed}`);
  for (const [what, pattern, least] of [
    ["*W ALU forms", /^(addw|subw|sllw|srlw|sraw|addiw|slliw|srliw|sraiw)$/, 5],
    ["M extension", /^(mul|div|rem)/, 8],
    ["loads", /^l[bhwd]u?$/, 5],
    ["stores", /^s[bhwd]$/, 4],
    ["AMOs", /^amo/, 8],
    ["LR/SC", /^(lr|sc)\./, 4],
    ["branches", /^b(eq|ne|lt|ge|ltu|geu)$/, 6],
    ["jumps", /^jalr?$/, 2],
    ["CSR access", /^csrr/, 4],
    ["fences", /^fence/, 2],
    ["traps on purpose", /^(ecall|ebreak|illegal)$/, 2],
  ] as const) {
    t.true(has(pattern) >= least, `${what}: ${[...names.keys()].filter((n) => pattern.test(n)).join(", ")}`);
  }
});

// --- no divergence ----------------------------------------------------------------------------------

function noDivergence(t: ExecutionContext, result: { divergence?: Parameters<typeof formatDivergence>[0] }): void {
  t.is(result.divergence, undefined, result.divergence ? formatDivergence(result.divergence).join("\n") : "");
}

test("random streams: both engines agree on every instruction, traps included", (t) => {
  const summary = difftestStreams({ seed: 1, count: 6, length: 1200 });
  noDivergence(t, summary);
  t.is(summary.streams, 6);
  t.true(summary.unfinished <= 1, `${summary.unfinished} streams overwrote their own loop and hit the step limit`);
  t.true(summary.instructions > 60_000, `${summary.instructions} instructions`);
  // s9 counts the handler's entries: faults mid-block, misaligned atomics, illegal instructions, ecalls.
  t.true(summary.traps > 300, `${summary.traps} traps`);
  t.log(`${summary.streams} streams, ${summary.instructions} instructions, ${summary.traps} traps, ` +
    `${Math.round(summary.steps / summary.milliseconds)}k steps/s`);
});

test("a real guest (isa-test.elf) agrees on both engines to its exit", (t) => {
  const result = difftestGuest(ISA_TEST, { ramSize: 16 << 20 });
  noDivergence(t, result);
  t.is(result.end, "exit");
  t.is(result.exitCode, 0);
  t.true(result.instructions > 500_000, `${result.instructions} instructions`);
  t.log(`${result.instructions} instructions, ${Math.round(result.steps / result.milliseconds)}k steps/s`);
});

// Under lockstep the translator sends every jump through the dispatch and its budget check (no
// direct forward branches, no wasm loops), so run(1) retires exactly one instruction: the tests
// above check that by default, and resync (catching up instead) is never needed.
test("lockstep is exact: run(1) retires one instruction on the translator (hello.elf)", (t) => {
  const result = difftestGuest(HELLO, { ramSize: 16 << 20 });
  noDivergence(t, result);
  t.is(result.resyncs, 0);
});

// --- the detector -----------------------------------------------------------------------------------

function divergenceOf(t: ExecutionContext, result: DifftestResult) {
  t.truthy(result.divergence, "a divergence should have been found");
  t.log(formatDivergence(result.divergence!).join("\n"));
  return result.divergence!;
}

test("a register corrupted in the translator's machine is reported at that step, with the register", (t) => {
  const result = difftestGuest(ISA_TEST, {
    ramSize: 16 << 20,
    onStep: (step, { jit }) => {
      if (step === 5000) jit.harts[0]!.setX(9, jit.harts[0]!.x(9) ^ 0x40n);
    },
  });
  const d = divergenceOf(t, result);
  t.is(result.end, "divergence");
  t.is(d.kind, "register");
  t.is(d.register, 9);
  t.is(d.step, 5000);
  t.is(d.interp ^ d.jit, 0x40n);
  t.true(d.exact);
  t.regex(d.instruction, /^[a-z.]+ /);
  t.is(d.recent.length, 7);
});

test("a RAM byte corrupted between checkpoints is narrowed down to the exact step and address", (t) => {
  const stream = randomStream(7, 1000);
  const address = 0x8008_0123; // the scratch area
  const result = difftestStream(stream, {
    memoryCheckEvery: 1000,
    onStep: (step, { jit }) => {
      if (step === 1234) jit.writeRam(address, Uint8Array.of(jit.readRam(address, 1)[0]! ^ 0xff));
    },
  });
  const d = divergenceOf(t, result);
  t.is(d.kind, "memory");
  t.is(d.address, address);
  t.is(d.step, 1234);
  t.true(d.exact);
  t.is(d.interp ^ d.jit, 0xffn);
  t.is(d.word!.address, address - 3);
});

// Lockstep: HELLO, step 777, narrowed to that step. Coarse: ISA_TEST, chunk 300, found in that chunk.
for (const coarse of [false, true]) {
  const title = coarse ? "(coarse: in its chunk, RAM compared every 100 000 instructions)" : "(several replay passes)";
  test(`a RAM byte corrupted in a large RAM is narrowed down too ${title}`, (t) => {
    const address = 0x8010_0007;
    const at = coarse ? 300 : 777;
    const corrupt = (n: number, { jit }: MachinePair) => {
      if (n === at) jit.writeRam(address, Uint8Array.of(0x5a));
    };
    const result = difftestGuest(coarse ? ISA_TEST : HELLO, {
      ramSize: 16 << 20,
      memoryCheckEvery: 100_000,
      ...(coarse ? { coarse, onChunk: corrupt } : { onStep: corrupt }),
    });
    const d = divergenceOf(t, result);
    t.is(d.kind, "memory");
    t.is(d.address, address);
    t.is(d.jit, 0x5an);
    if (coarse) t.is(d.chunk?.chunk, at);
    else t.is(d.step, at);
  });
}

test("a CSR corrupted in the translator's machine is found at a checkpoint and narrowed down", (t) => {
  // sscratch: compared at checkpoints, never touched by the streams (M-mode only).
  const result = difftestStream(randomStream(11, 500), {
    memoryCheckEvery: 500,
    onStep: (step, { jit }) => {
      if (step === 321) jit.harts[0]!.csrs.sscratch ^= 1n;
    },
  });
  const d = divergenceOf(t, result);
  t.is(d.kind, "csr");
  t.is(d.csr, "sscratch");
  t.is(d.step, 321);
  t.true(d.exact);
});

test("a step that retires two instructions on one engine is a divergence, unless resync", (t) => {
  // The hook runs the translator's hart one instruction further, as a translation that overran its
  // budget would.
  const onStep = (step: number, { jit }: MachinePair) => {
    if (step === 2500) jit.harts[0]!.run(1);
  };
  const d = divergenceOf(t, difftestGuest(ISA_TEST, { ramSize: 16 << 20, maxSteps: 3000, onStep }));
  t.is(d.kind, "retired");
  t.is(d.step, 2500);
  t.is(d.jit - d.interp, 1n);
  const resynced = difftestGuest(ISA_TEST, { ramSize: 16 << 20, maxSteps: 3000, onStep, resync: true });
  noDivergence(t, resynced);
  t.is(resynced.resyncs, 1);
});

// --- coarse mode ------------------------------------------------------------------------------------

// The translator's real code shape (direct forward branches, wasm loops, if/else inside loops) run
// in chunks of random size, compared with the interpreter after each.
for (const [guest, chunkSeed] of [["isa-test", 1], ["cpubound-small", 2], ["memstress-small", 3], ["seqwrite-small", 4], ["minikernel", 5]] as const) {
  test(`coarse: ${guest}.elf agrees on both engines to its exit (chunk seed ${chunkSeed})`, (t) => {
    const result = difftestGuest(readFileSync(join(GUESTS, `${guest}.elf`)), { coarse: true, ramSize: 16 << 20, chunkSeed });
    noDivergence(t, result);
    t.is(result.end, "exit");
    t.true(result.instructions > 40_000, `${result.instructions} instructions`);
    t.log(`${result.instructions} instructions in ${result.steps} chunks, ${result.resyncs} settled, ${Math.round(result.milliseconds)} ms`);
  });
}

test("coarse: a register corrupted after a chunk is reported in that chunk, narrowed to its first instructions", (t) => {
  const result = difftestGuest(ISA_TEST, {
    coarse: true,
    ramSize: 16 << 20,
    onChunk: (chunk, { jit }) => {
      if (chunk === 100) jit.harts[0]!.setX(9, jit.harts[0]!.x(9) ^ 0x40n);
    },
  });
  const d = divergenceOf(t, result);
  t.is(d.kind, "register");
  t.is(d.register, 9);
  t.is(d.interp ^ d.jit, 0x40n);
  t.is(d.chunk?.chunk, 100);
  t.true(d.chunk!.narrowed);
  // The hook corrupts every replay of chunk 100, whatever its budget: the smallest budget, 1, differs.
  t.is(d.chunk!.narrowedBudget, 1);
  t.is(d.chunk!.spanStart, d.chunk!.start);
  t.true(d.step > d.chunk!.start);
  t.regex(formatDivergence(d).join("\n"), /chunk 100 .* chunk seed 1/);
});

test("coarse: a CSR corrupted in the translator's machine is reported in its chunk", (t) => {
  const result = difftestStream(randomStream(11, 500), {
    coarse: true,
    onChunk: (chunk, { jit }) => {
      if (chunk === 5) jit.harts[0]!.csrs.sscratch ^= 1n;
    },
  });
  const d = divergenceOf(t, result);
  t.is(d.kind, "csr");
  t.is(d.csr, "sscratch");
  t.is(d.chunk?.chunk, 5);
});

// --- loop programs (host/difftest-loops.ts) ----------------------------------------------------------

/** Decoded instructions of a program's code (its first segment), with their offsets. */
function decodeAll(code: Uint8Array): { offset: number; d: ReturnType<typeof decode> }[] {
  const out = [];
  for (let offset = 0; offset + 2 <= code.length; ) {
    const low = code[offset]! | (code[offset + 1]! << 8);
    const raw = (low & 3) === 3 ? (low | (code[offset + 2]! << 16) | (code[offset + 3]! << 24)) >>> 0 : low;
    const d = decode(raw);
    out.push({ offset, d });
    offset += d.length;
  }
  return out;
}

test("a loop program is repeatable from its seed and has the shapes it promises", (t) => {
  t.deepEqual(randomLoopProgram(9, 1500), randomLoopProgram(9, 1500));
  t.notDeepEqual(randomLoopProgram(10, 1500).segments[0], randomLoopProgram(9, 1500).segments[0]);
  const count = (pattern: (d: ReturnType<typeof decode>) => boolean) => {
    let n = 0;
    for (let seed = 1; seed <= 4; seed++) for (const { d } of decodeAll(randomLoopProgram(seed, 1500).segments[0]!.bytes)) if (pattern(d)) n++;
    return n;
  };
  const branch = (d: ReturnType<typeof decode>) => /^b(eq|ne|lt|ge|ltu|geu)$/.test(d.name);
  for (const [what, pattern, least] of [
    ["back edges (conditional)", (d) => branch(d) && d.imm < 0, 40],
    ["back edges (jumps)", (d) => d.name === "jal" && d.rd === 0 && d.imm < 0, 10],
    ["forward branches", (d) => branch(d) && d.imm > 0, 100],
    ["c.beqz/c.bnez", (d) => branch(d) && d.length === 2, 20],
    ["c.j", (d) => d.name === "jal" && d.length === 2, 20],
    ["calls", (d) => d.name === "jal" && d.rd === 1, 5],
    ["returns", (d) => d.name === "jalr" && d.rs1 === 1 && d.rd === 0, 4],
    ["page-crossing accesses (through s11 just below its page)", (d) => /^[ls][hwd]u?$/.test(d.name) && d.rs1 === 27 && d.imm < 0 && d.imm > -8, 4],
    ["AMOs", (d) => d.name.startsWith("amo"), 20],
    ["clock reads", (d) => d.name === "csrrs" && [0xc00, 0xc01, 0xc02, 0xb00, 0xb02].includes(d.imm), 10],
  ] as [string, (d: ReturnType<typeof decode>) => boolean, number][]) {
    const n = count(pattern);
    t.true(n >= least, `${what}: ${n}`);
  }
  let straddling = 0;
  for (let seed = 1; seed <= 4; seed++) straddling += straddlingBackEdges(randomLoopProgram(seed, 1500).segments[0]!.bytes);
  t.true(straddling >= 2, `back edges to a loop head straddling a page boundary: ${straddling}`);
});

/** Back edges (jumps and branches) to a 4-byte instruction that straddles a page boundary. */
function straddlingBackEdges(code: Uint8Array): number {
  return decodeAll(code).filter(({ offset, d }) => {
    if (!(d.name === "jal" || /^b(eq|ne|lt|ge|ltu|geu)$/.test(d.name)) || d.imm >= 0) return false;
    const target = offset + d.imm;
    return target % 4096 === 4094 && (code[target]! & 3) === 3;
  }).length;
}

test("coarse: loops whose head straddles a page boundary, their back edge in the next page, agree on both engines", (t) => {
  // (Linux: devtmpfs_work_loop's head, left by the translator to the interpreter, jumped back to from the next page.)
  const seeds: number[] = [];
  for (let seed = 1; seeds.length < 6 && seed < 500; seed++) if (straddlingBackEdges(randomLoopProgram(seed, 200).segments[0]!.bytes) > 0) seeds.push(seed);
  t.is(seeds.length, 6);
  for (const seed of seeds) {
    for (const [jitThreshold, extraEntries, maxChunk] of [[1, 0, 4096], [0, 10, 64]]) {
      const result = difftestStream(randomLoopProgram(seed, 200), { coarse: true, jitThreshold, extraEntries, maxChunk, chunkSeed: seed });
      t.is(result.divergence, undefined, `seed ${seed}: ${result.divergence ? formatDivergence(result.divergence).join("\n") : ""}`);
      t.is(result.end, "exit", `seed ${seed}`);
    }
  }
});

test("coarse: loop programs agree on both engines (the translator's wasm loops, if/else inside, mid-loop chunk ends)", (t) => {
  const summary = difftestStreams({ seed: 1, count: 12, length: 200, coarse: true, generator: randomLoopProgram });
  noDivergence(t, summary);
  t.is(summary.streams, 12);
  t.true(summary.unfinished <= 1, `${summary.unfinished} programs overwrote their own loops and hit the step limit`);
  t.true(summary.instructions > 40_000, `${summary.instructions} instructions`);
  t.true(summary.traps > 400, `${summary.traps} traps and timer interrupts`);
  t.log(`${summary.streams} programs, ${summary.instructions} instructions, ${summary.traps} traps, ${Math.round(summary.milliseconds)} ms`);
});

test("coarse: loop programs agree with small chunks, extra entries and threshold 0 too", (t) => {
  const summary = difftestStreams({
    seed: 50, count: 6, length: 200, coarse: true, generator: randomLoopProgram, maxChunk: 64, extraEntries: 20, jitThreshold: 0,
  });
  noDivergence(t, summary);
  t.true(summary.instructions > 10_000, `${summary.instructions} instructions`);
});

test("lockstep: loop programs agree too", (t) => {
  const summary = difftestStreams({ seed: 200, count: 2, length: 200, generator: randomLoopProgram });
  noDivergence(t, summary);
  t.true(summary.instructions > 3_000, `${summary.instructions} instructions`);
});

test("coarse: random streams agree (normal translations, random chunk boundaries)", (t) => {
  const summary = difftestStreams({ seed: 100, count: 6, length: 1200, coarse: true });
  noDivergence(t, summary);
  t.true(summary.instructions > 50_000, `${summary.instructions} instructions`);
  t.true(summary.traps > 300, `${summary.traps} traps`);
});

// --- the command line ------------------------------------------------------------------------------

test("kmemvisor difftest: random streams, exit 0 with a summary line", async (t) => {
  const r = await kmemvisor(["difftest", "--seed", "3", "--count", "2", "--length", "300"]);
  t.is(r.status, 0, r.stderr + r.stdout);
  t.regex(r.stdout, /^difftest: 2 streams, \d+ instructions, no divergence/m);
  t.regex(r.stderr, /seed 3/);
});

test("kmemvisor difftest FILE: a guest, exit 0", async (t) => {
  const r = await kmemvisor(["difftest", join(GUESTS, "hello.elf"), "-m", "16M"]);
  t.is(r.status, 0, r.stderr + r.stdout);
  t.regex(r.stdout, /hello\.elf: \d+ instructions .* exited with code 0, no divergence/);
});

test("kmemvisor difftest --loops and --coarse: random programs, a guest, exit 0 with a summary line", async (t) => {
  const [loops, guest] = await Promise.all([
    kmemvisor(["difftest", "--loops", "--seed", "3", "--count", "2", "--length", "300"]),
    kmemvisor(["difftest", "--coarse", join(GUESTS, "hello.elf"), "-m", "16M", "--chunk-seed", "7", "--max-chunk", "100"]),
  ]);
  t.is(loops.status, 0, loops.stderr + loops.stdout);
  t.regex(loops.stdout, /^difftest: 2 loop programs, \d+ instructions, no divergence \(coarse, /m);
  t.is(guest.status, 0, guest.stderr + guest.stdout);
  t.regex(guest.stdout, /hello\.elf: \d+ instructions in \d+ chunks \(coarse\).* exited with code 0, no divergence/);
  t.regex(guest.stderr, /chunk seed 7/);
});

test("kmemvisor difftest: bad flags exit 64, a missing file 66, a bad ELF 65", async (t) => {
  const notElf = join(dir, "notes.txt");
  writeFileSync(notElf, "not a guest\n");
  const cases = [
    [["--count", "0"], 64, /--count/],
    [["--seed", "-1"], 64, /--seed/],
    [["--bogus"], 64, /unknown option/],
    [[join(GUESTS, "hello.elf"), "--seed", "1"], 64, /without FILE/],
    [[join(GUESTS, "hello.elf"), "--loops"], 64, /without FILE/],
    [["--chunk-seed", "1", join(GUESTS, "hello.elf")], 64, /--chunk-seed is for --coarse/],
    [["--coarse", "--resync"], 64, /--resync is for lockstep/],
    [[join(dir, "missing.elf")], 66, /does not exist/],
    [[notElf], 65, /ELF/],
  ] as const;
  const results = await Promise.all(cases.map(([args]) => kmemvisor(["difftest", ...args])));
  cases.forEach(([args, status, message], i) => {
    t.is(results[i]!.status, status, `${args.join(" ")}: ${results[i]!.stderr}`);
    t.regex(results[i]!.stderr, message, args.join(" "));
  });
});
