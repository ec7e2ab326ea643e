/**
 * Fuzzing of the command line (issue 16): random argv arrays of real and junk commands, flags,
 * values and input files. The property: a documented exit status with a clear message, or a
 * correct parse; never an exception (a stack trace), a hang or memory growth.
 *  - In-process (fast): host/cli.ts's main with `checkOnly`, which parses every flag and reads
 *    every input file but boots nothing.
 *  - A model check: valid flag values parse to what they say.
 *  - A few whole processes, which do boot (a tiny guest, a short --timeout).
 * `npm test` runs a fixed seed and a bounded count; `npm run fuzz` many more (test/helpers/fuzz.ts).
 */
import test from "ava";
import fc from "fast-check";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { Command } from "commander";
import { buildProgram, parseRunFlags, type ParsedRun, type RunFlags } from "../host/cli.ts";
import { GUESTS, kmemvisor, kmemvisorInProcess, scratchDirectory } from "./helpers/cli.ts";
import { fuzzParameters } from "./helpers/fuzz.ts";

const scratch = scratchDirectory("kmemvisor-fuzz-cli-");
test.after.always(() => scratch.remove());

const HELLO = join(GUESTS, "hello.elf");
const fifo = join(scratch.dir, "a.fifo");
execFileSync("mkfifo", [fifo]);
const PATHS = [
  HELLO,
  join(GUESTS, "htif-hello.elf"),
  join(GUESTS, "exit-code.elf"),
  join(scratch.dir, "missing.elf"),
  scratch.dir,
  fifo,
  "/dev/zero",
  scratch.file("notes.txt", "not an ELF\n"),
  scratch.file("vm.json", JSON.stringify({ kernel: HELLO, smp: 2 })),
  scratch.file("junk.json", "{ kernel: "),
  scratch.file("disk.img", new Uint8Array(4096)),
];

/** Values a flag might be given: plausible ones, edge cases and junk. */
const value = fc.oneof(
  fc.constantFrom(...PATHS),
  fc.integer({ min: -5, max: 5000 }).map(String),
  fc.constantFrom("0", "-1", "1.5", "1e9", "NaN", "Infinity", "0x10", "", " ", "2G", "4G", "64K", "3K", "128M", "vm", "off", "ranges:0x80000000-0x80001000",
    "ranges:junk", "due@0.1:0x80000000", "sdc@0.1:0x80000000:3:1", "random@5:1", "due@x", "interp", "jit", "striped", "none", "global",
    "file=/nonexistent,readonly=on", "file=,format=qcow2", "--", "-m", "--smp"),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 6 }),
);

const FLAGS = {
  run: ["--smp", "-m", "--memory", "--bios", "--kernel", "--drive", "--append", "--dumpdtb", "--timeout", "--mirror", "--nmr", "--sync", "--engine",
    "--jit-threshold", "--inject", "--scrub", "--spares", "--vm"],
  runSwitches: ["--stats", "--json", "--jit-supervisor", "--help"],
  stress: ["--sync", "--engine", "--jit-threshold", "--smp", "--nmr", "-m", "--duration", "--rounds", "--interval", "--seed", "--iterations"],
  stressSwitches: ["--stop-on-divergence", "--json", "--jit-supervisor"],
  difftest: ["--seed", "--count", "--length", "--max-steps", "--check-every", "-m", "--chunk-seed", "--max-chunk", "--jit-threshold", "--extra-entries"],
  difftestSwitches: ["--resync", "--coarse", "--loops"],
} as const;

const junkFlag = fc.oneof(fc.constantFrom("--no-such-flag", "-x", "--smp=2", "--", "-"), fc.string({ maxLength: 8 }).map((s) => `--${s}`));

/** One command's argv: flags with values, switches, a positional file, junk, in any order. */
function argvFor(command: "run" | "stress" | "difftest"): fc.Arbitrary<string[]> {
  const withValue = fc.tuple(fc.constantFrom(...FLAGS[command]), value).map(([flag, v]) => [flag, v]);
  const switches = fc.constantFrom(...FLAGS[`${command}Switches`]).map((flag) => [flag]);
  const positional = fc.constantFrom(...PATHS).map((p) => [p]);
  const piece = fc.oneof({ weight: 6, arbitrary: withValue }, { weight: 2, arbitrary: switches }, { weight: 2, arbitrary: positional }, { weight: 1, arbitrary: junkFlag.map((f) => [f]) });
  return fc.array(piece, { maxLength: 7 }).map((pieces) => [command, ...pieces.flat()]);
}

const anyArgv = fc.oneof(
  { weight: 4, arbitrary: argvFor("run") },
  { weight: 2, arbitrary: argvFor("stress") },
  { weight: 2, arbitrary: argvFor("difftest") },
  { weight: 1, arbitrary: fc.array(fc.oneof(value, junkFlag), { maxLength: 4 }) },
);

/** What a failed parse must look like: a documented status and a message, never a stack trace. */
function checkFailure(status: number, stderr: string): void {
  if (![64, 65, 66].includes(status)) throw new Error(`status ${status} is not a documented parse-time status`);
  if (stderr.trim() === "") throw new Error(`status ${status} without a message`);
  if (/\n\s+at /.test(stderr)) throw new Error(`a stack trace:\n${stderr}`);
  // Our own messages are one line; commander's ("error: ...") are followed by the help text, which
  // is all it prints when no command is given.
  if (!/^(kmemvisor: |error: |Usage: kmemvisor)/.test(stderr)) throw new Error(`not a kmemvisor message: ${stderr}`);
  if (stderr.startsWith("kmemvisor: ") && stderr.trimEnd().includes("\n")) throw new Error(`more than one line:\n${stderr}`);
}

test.serial("random argv (in-process, parse and read inputs only): a documented status with one clear message, or 0", async (t) => {
  const heapBefore = process.memoryUsage().heapUsed;
  await fc.assert(
    fc.asyncProperty(anyArgv, async (argv) => {
      const r = await kmemvisorInProcess(argv, { checkOnly: true });
      if (r.status !== 0) checkFailure(r.status, r.stderr);
      else if (r.stderr !== "" && !/^difftest: |^kmemvisor: /.test(r.stderr)) throw new Error(`status 0 but stderr: ${r.stderr}`);
    }),
    { ...fuzzParameters(), timeout: 10_000 },
  );
  const growth = process.memoryUsage().heapUsed - heapBefore;
  t.true(growth < 256 << 20, `heap grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
});

/** run's flags as commander hands them to its action, then parsed by parseRunFlags. */
function parseRun(argv: string[]): ParsedRun {
  const program: Command = buildProgram();
  let parsed: ParsedRun | undefined;
  program.commands.find((c) => c.name() === "run")!.action((file: string | undefined, flags: RunFlags) => {
    parsed = parseRunFlags(file, flags);
  });
  program.parse(["run", ...argv], { from: "user" });
  return parsed!;
}

test("valid run flags parse to what they say (model check)", (t) => {
  const valid = fc.record({
    smp: fc.integer({ min: 1, max: 64 }),
    mebibytes: fc.integer({ min: 1, max: 2048 }),
    mirrored: fc.boolean(),
    nmr: fc.integer({ min: 2, max: 5 }),
    spares: fc.option(fc.integer({ min: 0, max: 256 })),
    timeout: fc.option(fc.double({ min: 0.001, max: 1e6, noNaN: true })),
    scrub: fc.option(fc.integer({ min: 1, max: 100_000 }).map((ms) => ms / 1000)),
    engine: fc.constantFrom("interp", "jit"),
  });
  fc.assert(
    fc.property(valid, (v) => {
      const argv = [HELLO, "--smp", String(v.smp), "-m", `${v.mebibytes}M`, "--nmr", String(v.nmr), "--engine", v.engine];
      if (v.mirrored) argv.push("--mirror", "vm");
      if (v.spares !== null && v.mirrored) argv.push("--spares", String(v.spares));
      if (v.timeout !== null) argv.push("--timeout", String(v.timeout));
      if (v.scrub !== null) argv.push("--scrub", String(v.scrub));
      const run = parseRun(argv);
      t.is(run.harts, v.smp);
      t.is(run.ramSize, v.mebibytes * 2 ** 20);
      t.is(run.copies, v.mirrored ? v.nmr : 1);
      t.is(run.policy.kind, v.mirrored ? "vm" : "off");
      t.is(run.spareFrames, v.spares !== null && v.mirrored ? v.spares : undefined);
      t.is(run.timeoutMs, v.timeout === null ? undefined : v.timeout * 1000);
      t.is(run.scrubIntervalMs, v.scrub === null ? undefined : v.scrub * 1000);
      t.is(run.engine.kind, v.engine);
      t.is(run.kernelPath, HELLO);
    }),
    fuzzParameters(),
  );
});

test("random run flags in a whole process with a tiny guest: a documented status, never a stack trace", async (t) => {
  const guest = join(GUESTS, "exit-code.elf"); // exits 42
  const runArgv = argvFor("run").map((argv) => [...argv.filter((a) => a !== "--help"), guest, "--timeout", "5", "--engine", "interp"]);
  await fc.assert(
    fc.asyncProperty(runArgv, async (argv) => {
      const r = await kmemvisor(argv, { killAfterMs: 60_000, cwd: scratch.dir }); // a random --dumpdtb FILE lands there
      if (r.killed) throw new Error(`hung: ${argv.join(" ")}`);
      if (r.status === 42 || r.status === 124 || r.status === 70) return; // it booted: the guest's code, a timeout, a fault
      if (r.status === 0 || r.status === 73) return; // --dumpdtb wrote the tree, or could not
      checkFailure(r.status ?? -1, r.stderr);
    }),
    { ...fuzzParameters(0.01), timeout: 90_000 },
  );
  t.pass();
});
