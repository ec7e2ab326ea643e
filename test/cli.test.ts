/**
 * The command line: exit statuses (sysexits-style) and messages for bad input, bad flags, guest
 * timeouts and faults, and the --stats/--json reports. Guests that misbehave on purpose are built
 * with the test assembler (test/helpers/asm.ts) and written to a temporary directory.
 */
import test from "ava";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Program, R, jalr } from "./helpers/asm.ts";
import { EXPECTED, GUESTS, kmemvisor } from "./helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "kmemvisor-cli-test-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array | string): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

const HELLO = join(GUESTS, "hello.elf");
const helloOutput = readFileSync(join(EXPECTED, "hello.out"), "latin1");

// --- bad input files -----------------------------------------------------------------------------

test("missing guest file: status 66, message names the file", async (t) => {
  const missing = join(dir, "no-such-guest.elf");
  const r = await kmemvisor(["run", missing]);
  t.is(r.status, 66);
  t.true(r.stderr.includes(missing), r.stderr);
  t.regex(r.stderr, /does not exist/);
  t.is(r.stdout, "");
});

test("a directory as the guest: status 65 (not a regular file), as for --drive", async (t) => {
  const r = await kmemvisor(["run", dir]);
  t.is(r.status, 65, r.stderr);
  t.true(r.stderr.includes(dir), r.stderr);
});

test("not an ELF file: status 65", async (t) => {
  const path = file("notes.txt", "this is not a kernel\n");
  const r = await kmemvisor(["run", path]);
  t.is(r.status, 65, r.stderr);
  t.true(r.stderr.includes(path), r.stderr);
  t.regex(r.stderr, /ELF/);
});

test("an x86 ELF (/bin/true): status 65, names the machine", async (t) => {
  const r = await kmemvisor(["run", "/bin/true"]);
  t.is(r.status, 65, r.stderr);
  t.regex(r.stderr, /x86-64|machine 62/);
  t.regex(r.stderr, /RISC-V/);
});

test("an ELF for another machine built by hand: status 65", async (t) => {
  const p = new Program();
  p.exit(0);
  const path = file("arm.elf", p.elf({ machine: 183 }));
  const r = await kmemvisor(["run", path]);
  t.is(r.status, 65, r.stderr);
  t.regex(r.stderr, /AArch64|183/);
});

test("truncated ELF: status 65, says truncated", async (t) => {
  const whole = readFileSync(HELLO);
  for (const length of [40, 100, 300]) {
    const path = file(`truncated-${length}.elf`, whole.subarray(0, length));
    const r = await kmemvisor(["run", path]);
    t.is(r.status, 65, `${length} bytes: ${r.stderr}`);
    t.regex(r.stderr, /truncated/, `${length} bytes`);
  }
});

test("a segment that does not fit in RAM (-m 64K): status 65", async (t) => {
  const r = await kmemvisor(["run", HELLO, "-m", "64K"]);
  t.is(r.status, 65, r.stderr);
  t.regex(r.stderr, /RAM/);
});

// --- bad flags -------------------------------------------------------------------------------------

const badFlags: [string[], RegExp][] = [
  [["--smp", "0"], /--smp.*"0"/],
  [["--smp", "x"], /--smp.*"x"/],
  [["--smp", "65"], /--smp.*"65"/],
  [["--smp", "1.5"], /--smp/],
  [["-m", "3K"], /memory size "3K"/],
  [["-m", "lots"], /memory size "lots"/],
  [["-m", "0"], /memory size "0"/],
  [["-m", "4G"], /memory size "4G"/],
  [["--timeout", "-1"], /timeout "-1"/],
  [["--timeout", "0"], /timeout "0"/],
  [["--timeout", "soon"], /timeout "soon"/],
  [["--kernel", HELLO], /either as FILE or with --kernel/],
  [["--drive", "file=disk.img,format=qcow2"], /format=raw/],
  [["--drive", "format=raw"], /no file=/],
  [["--no-such-flag"], /unknown option/],
];

for (const [flags, message] of badFlags) {
  test(`bad flag ${flags.join(" ")}: status 64 with a clear message`, async (t) => {
    const r = await kmemvisor(["run", HELLO, ...flags]);
    t.is(r.status, 64, r.stderr);
    t.regex(r.stderr, message);
    t.is(r.stdout, "", "the guest did not run");
  });
}

test("run without a guest: status 64", async (t) => {
  const r = await kmemvisor(["run"]);
  t.is(r.status, 64);
  t.regex(r.stderr, /no guest/);
});

test("unknown command: status 64", async (t) => {
  const r = await kmemvisor(["frobnicate", HELLO]);
  t.is(r.status, 64);
  t.regex(r.stderr, /unknown command 'frobnicate'/);
});

test("--help: status 0, lists run", async (t) => {
  const r = await kmemvisor(["--help"]);
  t.is(r.status, 0);
  t.regex(r.stdout, /run \[options\]/);
});

test("--bios with a missing firmware file: status 66, names the file", async (t) => {
  const fw = join(dir, "no-such-firmware.bin");
  const r = await kmemvisor(["run", HELLO, "--bios", fw]);
  t.is(r.status, 66, r.stderr);
  t.true(r.stderr.includes(fw), r.stderr);
});

test("--drive with a missing image: fails before running, names the file", async (t) => {
  const disk = join(dir, "no-such-disk.img");
  const r = await kmemvisor(["run", HELLO, "--drive", disk]);
  t.is(r.status, 66, `a missing input file is EX_NOINPUT: ${r.stderr}`);
  t.true(r.stderr.includes(disk), r.stderr);
  t.is(r.stdout, "");
});

// --- guests that do not exit normally ------------------------------------------------------------

test("--timeout stops a guest that loops forever: status 124, quickly", async (t) => {
  const p = new Program();
  p.label("forever").j("forever");
  const r = await kmemvisor(["run", file("loop.elf", p.elf()), "--timeout", "0.5"], { killAfterMs: 30_000 });
  t.is(r.status, 124, r.stderr);
  t.regex(r.stderr, /timeout/);
  t.true(r.milliseconds < 10_000, `took ${r.milliseconds.toFixed(0)} ms`);
});

test("--timeout also stops a guest parked in wfi", async (t) => {
  const p = new Program();
  p.label("park").emit(0x10500073).j("park");
  const r = await kmemvisor(["run", file("wfi.elf", p.elf()), "--timeout", "0.3", "--smp", "2"], { killAfterMs: 30_000 });
  t.is(r.status, 124, r.stderr);
  t.true(r.milliseconds < 10_000, `took ${r.milliseconds.toFixed(0)} ms`);
});

test("a jump to an unmapped address with no trap handler: status 70, names hart 0 and a pc", async (t) => {
  const p = new Program();
  p.li(R.t0, 0x4000_0000).emit(jalr(0, R.t0, 0));
  const r = await kmemvisor(["run", file("wild-jump.elf", p.elf()), "--timeout", "20"]);
  t.is(r.status, 70, r.stderr);
  t.regex(r.stderr, /hart 0/);
  t.regex(r.stderr, /0x[0-9a-f]+/);
  t.regex(r.stderr, /guest stopped/);
});

test("the guest's exit code becomes the status", async (t) => {
  for (const code of [0, 1, 200]) {
    const p = new Program();
    p.exit(code);
    const r = await kmemvisor(["run", file(`exit-${code}.elf`, p.elf())]);
    t.is(r.status, code, r.stderr);
  }
});

// --- reports ---------------------------------------------------------------------------------------

test("--stats prints instructions retired and MIPS on stderr, stdout unchanged", async (t) => {
  const r = await kmemvisor(["run", HELLO, "--stats"]);
  t.is(r.status, 0);
  t.is(r.stdout, helloOutput);
  t.regex(r.stderr, /hart 0: \d+ instructions retired, [\d.]+ MIPS/);
  t.regex(r.stderr, /MIPS aggregate/);
  t.regex(r.stderr, /wall time/);
});

test("--json prints parseable JSON with the status on stderr", async (t) => {
  const r = await kmemvisor(["run", join(GUESTS, "exit-code.elf"), "--json", "--smp", "2"]);
  t.is(r.status, 42);
  const line = r.stderr.trim().split("\n").pop()!;
  const json = JSON.parse(line) as {
    status: number;
    exitCode: number;
    reason: string;
    harts: { hart: number; instructions: number }[];
  };
  t.is(json.status, 42);
  t.is(json.exitCode, 42);
  t.is(json.reason, "exit");
  t.is(json.harts.length, 2);
  t.true(json.harts[0]!.instructions > 100);
});

test("--json on a timeout reports status 124", async (t) => {
  const p = new Program();
  p.label("forever").j("forever");
  const r = await kmemvisor(["run", file("loop-json.elf", p.elf()), "--timeout", "0.2", "--json"]);
  t.is(r.status, 124);
  const json = JSON.parse(r.stderr.trim().split("\n").pop()!) as { status: number; reason: string };
  t.deepEqual([json.status, json.reason], [124, "timeout"]);
});

test("--engine jit runs a guest; bad engine flags and KMEMVISOR_ENGINE values are usage errors", async (t) => {
  const hello = join(GUESTS, "hello.elf");
  const ok = await kmemvisor(["run", "--engine", "jit", "--jit-threshold", "0", hello]);
  t.is(ok.status, 0);
  t.is(ok.stdout, readFileSync(join(EXPECTED, "hello.out"), "latin1"));
  t.is((await kmemvisor(["run", "--engine", "fast", hello])).status, 64);
  const threshold = await kmemvisor(["run", "--engine", "jit", "--jit-threshold", "x", hello]);
  t.is(threshold.status, 64);
  t.regex(threshold.stderr, /--jit-threshold must be a whole number/);
  t.is((await kmemvisor(["stress", "--engine", "fast"])).status, 64);
  const env = await kmemvisor(["run", hello], { env: { KMEMVISOR_ENGINE: "fast" } });
  t.is(env.status, 64);
  t.regex(env.stderr, /KMEMVISOR_ENGINE must be one of interp, jit, got "fast"/);
  // Unnamed, the engine is the translator (its statistics are in the report); KMEMVISOR_ENGINE picks.
  const engineOf = async (value: string) => {
    const r = await kmemvisor(["run", "--json", hello], { env: { KMEMVISOR_ENGINE: value } });
    t.is(r.status, 0, r.stderr);
    return (JSON.parse(r.stderr.trim().split("\n").pop()!) as { harts: { jit?: unknown }[] }).harts[0]!.jit === undefined ? "interp" : "jit";
  };
  t.is(await engineOf(""), "jit", "the default engine");
  t.is(await engineOf("interp"), "interp");
});
