/**
 * guests/bin/minikernel.elf: our own kernel exercising M/S/U modes, Sv39 (faults, SUM, MXR, A/D),
 * timer interrupts, U-mode ecalls and virtio-blk through the PLIC. It counts its own checks and
 * exits with the number that failed. Runs on a copy of guests/kernel/disk.img, on kmemvisor and on
 * QEMU, which must agree byte for byte; the kernel restores the sector it writes, so the image must
 * come back unchanged.
 */
import test from "ava";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXPECTED, GUESTS, ROOT, kmemvisor, run } from "./helpers/cli.ts";

const ELF = join(GUESTS, "minikernel.elf");
const DISK = join(ROOT, "guests", "kernel", "disk.img");
const expected = readFileSync(join(EXPECTED, "minikernel.out"), "latin1");

function freshDisk(): string {
  const copy = join(mkdtempSync(join(tmpdir(), "kmv-mk-")), "disk.img");
  copyFileSync(DISK, copy);
  return copy;
}

for (const smp of [1, 2]) {
  test(`minikernel passes all its checks on kmemvisor (--smp ${smp}) and leaves the disk as it found it`, async (t) => {
    const disk = freshDisk();
    const r = await kmemvisor(["run", "--smp", String(smp), "--drive", disk, "--timeout", "60", ELF]);
    t.is(r.stdout, expected, r.stderr);
    t.regex(r.stdout, /minikernel: \d+ checks, 0 failures/);
    t.is(r.status, 0, r.stderr);
    t.deepEqual(readFileSync(disk), readFileSync(DISK));
  });
}

// One mirrored hart owns guest memory while it runs (sync/owner.ts): the device's DMA must get in
// while the hart waits for the MMIO reply, and the scrubber's thread whenever it needs a word.
for (const engine of ["interp", "jit"]) {
  test(`minikernel on one mirrored hart (--engine ${engine}, --scrub): its disk I/O and the scrubber get past the hart`, async (t) => {
    const disk = freshDisk();
    const r = await kmemvisor(["run", "--mirror", "vm", "--scrub", "0.001", "--engine", engine, "--json", "--drive", disk, "--timeout", "60", ELF]);
    t.is(r.stdout, expected, r.stderr);
    t.is(r.status, 0, r.stderr);
    t.deepEqual(readFileSync(disk), readFileSync(DISK));
    const report = JSON.parse(r.stderr.split("\n").find((line) => line.startsWith("{"))!) as {
      memory: { sync: string; scrub: { passes: number; mismatches: number } };
    };
    t.is(report.memory.sync, "striped");
    t.true(report.memory.scrub.passes > 0, "the scrubber ran");
    t.is(report.memory.scrub.mismatches, 0, "and never found the copies different");
  });
}

test("minikernel gives the same output and status on QEMU", async (t) => {
  const disk = freshDisk();
  const r = await run("qemu-system-riscv64", [
    "-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-kernel", ELF,
    "-global", "virtio-mmio.force-legacy=false",
    "-drive", `file=${disk},if=none,format=raw,id=hd0`, "-device", "virtio-blk-device,drive=hd0,bus=virtio-mmio-bus.0",
  ], { killAfterMs: 60_000 });
  t.is(r.stdout.replace(/\r\n/g, "\n"), expected, r.stderr);
  t.is(r.status, 0);
});

test("a read-only disk image makes the guest's write fail, not the emulator", async (t) => {
  const disk = freshDisk();
  const r = await kmemvisor(["run", "--drive", `file=${disk},readonly=on`, "--timeout", "60", ELF]);
  // The kernel's write check fails (IOERR), so it reports failures and exits non-zero.
  const failures = /minikernel: \d+ checks, ([1-9]\d*) failures/.exec(r.stdout);
  t.truthy(failures, r.stdout);
  t.is(r.status, Number(failures![1]), "the kernel exits with its failure count");
  t.deepEqual(readFileSync(disk), readFileSync(DISK));
});

test("bad disk images are refused with a clear message", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kmv-bad-"));
  const missing = await kmemvisor(["run", "--drive", join(dir, "none.img"), ELF]);
  t.is(missing.status, 66);
  t.regex(missing.stderr, /disk image ".*none\.img" does not exist/);
  const odd = join(dir, "odd.img");
  copyFileSync(join(ROOT, "package.json"), odd);
  const wrongSize = await kmemvisor(["run", "--drive", odd, ELF]);
  t.is(wrongSize.status, 65);
  t.regex(wrongSize.stderr, /512/);
  const badOption = await kmemvisor(["run", "--drive", `file=${odd},format=qcow2`, ELF]);
  t.is(badOption.status, 64);
  t.regex(badOption.stderr, /format=raw/);
});
