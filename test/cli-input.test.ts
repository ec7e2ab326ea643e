/**
 * Issue 16's host-side hangs and bad input: the scrubber must not outlive the guest, input files
 * must be regular files of a sane size, --dumpdtb failures are exit 73, and the small ones (flag
 * messages, difftest on HTIF guests, one writable --drive per VM, the multi-VM exit status,
 * --spares). Whole-process runs, as a user meets them.
 */
import test from "ava";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Program, R, addi, bne } from "./helpers/asm.ts";
import { GUESTS, kmemvisor, kmemvisorInProcess } from "./helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "kmemvisor-input-test-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array | string): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

const HELLO = join(GUESTS, "hello.elf");

/** A guest that loops for ever. */
function foreverGuest(name: string): string {
  const p = new Program();
  p.label("forever").j("forever");
  return file(name, p.elf());
}

/** A guest that counts down from `iterations`, then exits with `code`. */
function countdownGuest(name: string, iterations: number, code: number): string {
  const p = new Program();
  p.li(R.t0, iterations).label("loop").emit(addi(R.t0, R.t0, -1)).branch(bne, R.t0, R.zero, "loop").exit(code);
  return file(name, p.elf());
}

// --- item 5: the scrubber does not keep the process alive ------------------------------------------

test("--scrub 60 does not outlive the guest: an 8 s --timeout ends the process well before 60 s", async (t) => {
  // The guest sleeps in wfi (no CPU); 8 s gives the scrubber's worker time to start and finish its
  // first pass over 8 MiB, so it is asleep between passes when the VM stops. Before the fix it
  // slept out its whole 60 s interval then.
  const p = new Program();
  p.label("park").emit(0x10500073).j("park");
  const guest = file("scrub-wfi.elf", p.elf());
  const r = await kmemvisor(["run", guest, "-m", "8M", "--mirror", "vm", "--scrub", "60", "--timeout", "8"], { killAfterMs: 120_000 });
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

test("a whole process given a FIFO as the guest ends promptly with status 65 (it used to block for ever)", async (t) => {
  const r = await kmemvisor(["run", fifo], { killAfterMs: 20_000 });
  t.false(r.killed, "it blocked until killed");
  t.is(r.status, 65, r.stderr);
});

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
