/**
 * Issue 16's host-side hangs and bad input: the scrubber must not outlive the guest, input files
 * must be regular files of a sane size, --dumpdtb failures are exit 73, and the small ones (flag
 * messages, difftest on HTIF guests, one writable --drive per VM, the multi-VM exit status,
 * --spares). Whole-process runs, as a user meets them.
 */
import test from "ava";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Program, R, addi, bltu, bne, ld, sd } from "./helpers/asm.ts";
import { GUESTS, kmemvisor, kmemvisorInProcess, scratchDirectory } from "./helpers/cli.ts";
import { DiskImage, DiskImageError } from "../hypervisor/disk-image.ts";

const scratch = scratchDirectory("kmemvisor-input-test-");
const { dir, file } = scratch;
test.after.always(() => scratch.remove());

const HELLO = join(GUESTS, "hello.elf");

/** A guest that loops for ever. */
function foreverGuest(name: string): string {
  const p = new Program();
  p.label("forever").j("forever");
  return file(name, p.elf());
}

const MTIME = 0x0200_bff8; // CLINT, 10 MHz

let waits = 0;

/** Spin until the guest's clock reads `seconds`. */
function waitUntil(p: Program, seconds: number): Program {
  const label = `wait${waits++}`;
  return p.li(R.t1, MTIME).li(R.t3, Math.round(seconds * 10_000_000)).label(label).emit(ld(R.t2, 0, R.t1)).branch(bltu, R.t2, R.t3, label);
}

/** A guest that waits until its clock reads `seconds`, then exits with `code`. */
function exitAfter(name: string, seconds: number, code: number): string {
  const p = new Program();
  return file(name, waitUntil(p, seconds).exit(code).elf());
}

// --- item 5: the scrubber does not keep the process alive ------------------------------------------

test("--scrub 60 does not outlive the guest: an 8 s --timeout ends the process well before 60 s", async (t) => {
  // The guest sleeps in wfi (no CPU); 8 s gives the scrubber's worker time to start and finish its
  // first pass over 8 MiB, so it is asleep between passes when the VM stops. Before the fix it
  // slept out its whole 60 s interval then.
  const p = new Program();
  p.label("park").emit(0x10500073).j("park");
  const guest = file("scrub-wfi.elf", p.elf());
  const r = await kmemvisor(["run", guest, "-m", "8M", "--engine", "interp", "--mirror", "vm", "--scrub", "60", "--timeout", "8"], { killAfterMs: 120_000 });
  t.is(r.status, 124, r.stderr);
  t.true(r.milliseconds < 40_000, `took ${r.milliseconds.toFixed(0)} ms`);
});

// --- item 7: input files are regular files of a sane size ------------------------------------------

const fifo = join(dir, "guest.fifo");
execFileSync("mkfifo", [fifo]);
const directory = mkdtempSync(join(dir, "a-directory-"));

for (const [what, path, message] of [
  ["a FIFO", fifo, /not a regular file/],
  ["/dev/zero", "/dev/zero", /not a regular file/],
  ["a directory", directory, /is a directory/],
] as const) {
  for (const [role, args] of [
    ["guest", (p: string) => ["run", p]],
    ["--kernel", (p: string) => ["run", "--kernel", p]],
    ["--bios", (p: string) => ["run", "--bios", p, "--kernel", HELLO]],
    ["--vm", (p: string) => ["run", "--vm", p]],
  ] as const) {
    test.serial(`${what} as ${role}: one line, status 65`, async (t) => {
      const r = await kmemvisorInProcess(args(path));
      t.is(r.status, 65, r.stderr);
      t.regex(r.stderr, message);
      t.true(r.stderr.includes(path), r.stderr);
      t.is(r.stderr.trim().split("\n").length, 1, r.stderr);
    });
  }
}

test.serial("a guest file larger than 1 GiB (sparse): status 65, says too large", async (t) => {
  const huge = file("huge.elf", "");
  truncateSync(huge, 2 ** 30 + 4096);
  const r = await kmemvisorInProcess(["run", huge]);
  t.is(r.status, 65, r.stderr);
  t.regex(r.stderr, /too large/);
});

test.serial("a missing --kernel: still status 66", async (t) => {
  const r = await kmemvisorInProcess(["run", "--kernel", join(dir, "no-such-kernel")]);
  t.is(r.status, 66, r.stderr);
  t.regex(r.stderr, /does not exist/);
});

// --- item 12: --dumpdtb that cannot be written -----------------------------------------------------

for (const [what, target, message] of [
  ["a directory", () => directory, /is a directory/],
  ["a missing folder", () => join(dir, "no-such-folder", "virt.dtb"), /no such directory/],
  ["an unwritable file (/dev/full)", () => "/dev/full", /no space/],
] as const) {
  test.serial(`--dumpdtb to ${what}: one line, status 73`, async (t) => {
    const r = await kmemvisorInProcess(["run", "--dumpdtb", target(), HELLO]);
    t.is(r.status, 73, r.stderr);
    t.regex(r.stderr, message);
    t.regex(r.stderr, /^kmemvisor: cannot write the device tree to "[^"]+": .*\n$/);
  });
}

// --- item 15: the small ones -------------------------------------------------------------------------

for (const [args, message] of [
  [["run", HELLO, "--scrub", "0"], /^kmemvisor: bad --scrub "0": expected a positive number of seconds\n$/],
  [["run", HELLO, "--timeout", "0"], /^kmemvisor: bad --timeout "0": expected a positive number of seconds\n$/],
  [["stress", "--interval", "0"], /^kmemvisor: bad --interval "0": expected a positive number of milliseconds\n$/],
  [["stress", "--duration", "-1"], /^kmemvisor: bad --duration "-1": expected a positive number of seconds\n$/],
  [["run", HELLO, "--mirror", "vm", "--nmr", "7"], /^kmemvisor: bad --nmr "7": expected a whole number from 2 to 5\n$/],
  [["stress", "--nmr", "9"], /^kmemvisor: bad --nmr "9": expected a whole number from 2 to 5\n$/],
] as const) {
  test.serial(`${args.filter((a) => a !== HELLO).join(" ")}: status 64, the message names the flag and its range`, async (t) => {
    const r = await kmemvisorInProcess([...args]);
    t.is(r.status, 64, r.stderr);
    t.regex(r.stderr, message);
  });
}

test.serial("difftest refuses an HTIF guest with a clear message instead of running it to --max-steps", async (t) => {
  const r = await kmemvisorInProcess(["difftest", join(GUESTS, "htif-hello.elf"), "--max-steps", "200000"]);
  t.is(r.status, 65, r.stderr + r.stdout);
  t.regex(r.stderr, /HTIF/);
  t.notRegex(r.stdout, /no divergence/);
});

// --- --vm files: a schema derived from run's flags (item 13) ------------------------------------------

const vmFile = (name: string, config: unknown) => file(`${name}.json`, JSON.stringify(config));

for (const [what, config, message] of [
  ['"kernel": 0 (used to boot from stdin)', { kernel: 0 }, /key "kernel" must be a string, got a number \(0\)/],
  ['"append": {} (used to crash)', { kernel: HELLO, append: {} }, /key "append" must be a string, got an object/],
  ['"name": 5 (used to be ignored)', { kernel: HELLO, name: 5 }, /key "name" must be a string, got a number \(5\)/],
  ['"stats": "yes"', { kernel: HELLO, stats: "yes" }, /key "stats" must be true or false, got a string \("yes"\)/],
  ['"engine": "fast"', { kernel: HELLO, engine: "fast" }, /key "engine" must be one of "interp", "jit", got a string \("fast"\)/],
  ['"inject": [1]', { kernel: HELLO, inject: [1] }, /key "inject" must be a string or an array of strings, got an array/],
  ['"smp": [2]', { kernel: HELLO, smp: [2] }, /key "smp" must be a number or a string, got an array/],
  ['"smp": 100', { kernel: HELLO, smp: 100 }, /bad --smp "100": expected a whole number from 1 to 64/],
  ['"kernal" (a typo)', { kernal: HELLO }, /unknown key "kernal" \(known: name, smp, .*kernel/],
  ['"dumpdtb" (one per invocation)', { kernel: HELLO, dumpdtb: "x.dtb" }, /unknown key "dumpdtb"/],
  ["an array", [HELLO], /must be a JSON object of run's flags, got an array/],
] as const) {
  test.serial(`--vm file with ${what}: status 65, names the file and the key`, async (t) => {
    const path = vmFile(`bad-${what.replace(/\W+/g, "-")}`, config);
    const r = await kmemvisorInProcess(["run", "--vm", path]);
    t.is(r.status, 65, r.stderr);
    t.true(r.stderr.startsWith(`kmemvisor: VM configuration "${path}": `), r.stderr);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split("\n").length, 1, r.stderr);
  });
}

test.serial("a bad flag on the command line beside --vm files is the command line's usage error (64), not the file's", async (t) => {
  const good = vmFile("good", { kernel: HELLO, smp: 2, mirror: "vm", inject: "due@9:0x80000000", stats: true });
  const r = await kmemvisorInProcess(["run", "--smp", "0", "--vm", good]);
  t.is(r.status, 64, r.stderr);
  t.regex(r.stderr, /^kmemvisor: bad --smp "0"/);
});

// --- one writable --drive per VM (item 15) ----------------------------------------------------------

test.serial("two VMs of one run cannot open one writable --drive", async (t) => {
  const disk = file("shared.img", new Uint8Array(64 * 1024));
  const a = vmFile("disk-a", { name: "a", kernel: HELLO, drive: disk });
  const b = vmFile("disk-b", { name: "b", kernel: HELLO, drive: disk });
  // In-process: the first VM's machine is built (small and interpreted, so cheap), the second's
  // disk refused, and neither runs.
  const r = await kmemvisorInProcess(["run", "-m", "8M", "--engine", "interp", "--vm", a, "--vm", b]);
  t.is(r.status, 65, r.stderr);
  t.regex(r.stderr, /disk image .*shared\.img: is already open for writing by another VM of this run/);
  t.is(r.stdout, "", "no VM ran");
  t.false(existsSync(`${disk}.lock`), "the lock file is gone");
});

test("another process's write lock on an image: refused while its owner runs, taken over once it is gone", async (t) => {
  const disk = file("locked.img", new Uint8Array(4096));
  const owner = spawn("sleep", ["30"]);
  t.teardown(() => owner.kill());
  writeFileSync(`${disk}.lock`, `${owner.pid}\n`);
  const error = t.throws(() => DiskImage.open(disk, { exclusive: true }), { instanceOf: DiskImageError });
  t.regex(error!.message, new RegExp(`open for writing by another kmemvisor \\(pid ${owner.pid}`));
  DiskImage.open(disk, { readOnly: true, exclusive: true }).close(); // readers take no lock
  DiskImage.open(disk).close(); // nor do callers that do not ask for one (tests, tools)
  owner.kill();
  await new Promise((resolve) => owner.once("exit", resolve));
  const image = DiskImage.open(disk, { exclusive: true }); // stale: its pid is gone
  t.is(readFileSync(`${disk}.lock`, "utf8").trim(), String(process.pid));
  t.throws(() => DiskImage.open(disk, { exclusive: true }), { message: /already open for writing by another VM of this run/ });
  image.close();
  t.false(existsSync(`${disk}.lock`));
  writeFileSync(`${disk}.lock`, ""); // its owner between creating and writing it: in use, not stale
  t.throws(() => DiskImage.open(disk, { exclusive: true }), { message: /another kmemvisor \(pid \?/ });
});

// --- several VMs: the status of the first to fail in time (item 15) ------------------------------------

test("with several VMs the exit status is the first VM's to fail in time, not in --vm order", async (t) => {
  const late = vmFile("late", { name: "late", kernel: exitAfter("late.elf", 0.5, 3), memory: "8M" });
  const early = vmFile("early", { name: "early", kernel: exitAfter("early.elf", 0, 5), memory: "8M" });
  const r = await kmemvisor(["run", "--vm", late, "--vm", early, "--engine", "interp", "--timeout", "30"]);
  t.is(r.status, 5, r.stderr);
});

// --- --spares N (item 15) -------------------------------------------------------------------------------

/**
 * Stores a known word in two pages, waits until DUEs hit both (injected at 0.02 s), reads them
 * back (each read recovers its page into a spare frame) and exits 0 if both words survived.
 */
function twoPageGuest(): string {
  const p = new Program();
  const [a, b] = [0x8010_0000, 0x8020_0000];
  p.li(R.s0, a).li(R.s1, b).li(R.t0, 0x1234_5678).emit(sd(R.t0, 0, R.s0), sd(R.t0, 0, R.s1));
  waitUntil(p, 0.3);
  p.emit(ld(R.a0, 0, R.s0), ld(R.a1, 0, R.s1), addi(R.t0, R.t0, 0));
  p.branch(bne, R.a0, R.t0, "bad").branch(bne, R.a1, R.t0, "bad").exit(0);
  p.label("bad").exit(1);
  return file("two-pages.elf", p.elf());
}

test("--spares N: one spare frame is not enough for two failed pages, two are; the report says when they ran out", async (t) => {
  const guest = twoPageGuest();
  const args = ["run", guest, "-m", "8M", "--engine", "interp", "--mirror", "vm", "--inject", "due@0.02:0x80100000", "--inject", "due@0.02:0x80200000", "--stats", "--timeout", "30"];
  const one = await kmemvisor([...args, "--spares", "1"]);
  t.is(one.status, 70, one.stderr);
  t.regex(one.stderr, /all 1 spare frames are used/);
  const two = await kmemvisor([...args, "--spares", "2"]);
  t.is(two.status, 0, two.stderr);
  t.regex(two.stderr, /2 page\(s\) recovered.*2 of 2 spare frame\(s\) used/);
  t.regex(two.stderr, /all 2 spare frame\(s\) used: a further DUE stops the VM/);
});

for (const [args, message] of [
  [["--mirror", "vm", "--spares", "-1"], /bad --spares "-1": expected a whole number from 0 to 2048/],
  [["--mirror", "vm", "--spares", "2049"], /bad --spares "2049": expected a whole number from 0 to 2048/],
  [["--spares", "4"], /--spares 4: spare frames serve recovery from a mirror copy; give --mirror vm or ranges too/],
] as const) {
  test.serial(`--spares ${args.join(" ")}: status 64`, async (t) => {
    const r = await kmemvisorInProcess(["run", HELLO, "-m", "8M", ...args]);
    t.is(r.status, 64, r.stderr);
    t.regex(r.stderr, message);
  });
}
