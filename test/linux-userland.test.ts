/**
 * Linux 6.1 with a BusyBox userland (guests/linux/userland, built by its build.sh from Debian's
 * packages): the kernel's /init runs the workload the command line names (kmv.run=smoke: uname,
 * the harts and ISA in /proc/cpuinfo, a file written to the ext4 file system on the virtio disk
 * and read back after the page cache is dropped, a SQLite transaction with its integrity check)
 * and powers off. Every binary is Debian's riscv64 glibc code (RV64GC, lp64d), so this runs only
 * because the harts have F and D.
 *
 * Checked: the exit status, the workload's own result line, each computed output, and that QEMU
 * running the same image and disk prints the same lines (the ISA string aside: QEMU's harts have
 * more extensions).
 */
import test from "ava";
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kmemvisor, ROOT, run } from "./helpers/cli.ts";

const FW_JUMP = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const GUEST = join(ROOT, "guests", "linux", "userland");
const IMAGE = join(GUEST, "Image");
const DISK = gunzipSync(readFileSync(join(GUEST, "disk.img.gz")));
const dir = mkdtempSync(join(tmpdir(), "kmemvisor-linux-userland-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

let disks = 0;
/** A fresh copy of the disk image (the guest writes to it). */
function freshDisk(): string {
  const path = join(dir, `disk-${disks++}.img`);
  writeFileSync(path, DISK);
  return path;
}

const TROUBLE = /Oops|BUG:|Kernel panic|Unable to handle|WARNING:|segfault|Illegal instruction/;

/** What the smoke workload prints, computed here: md5 of `seq 1 1000`, and 1 + ... + 100. */
function expectSmoke(t: import("ava").ExecutionContext, output: string, harts: number): string[] {
  const lines = output.split(/\r?\n/);
  const from = lines.findIndex((l) => l.startsWith("Linux 6.1"));
  t.true(from >= 0, output.slice(-3000));
  const smoke = lines.slice(from, lines.findIndex((l) => l.startsWith("kmv: smoke")) + 1).filter((l) => !l.startsWith("["));
  t.regex(smoke[0] ?? "", /^Linux 6\.1\.\d+ riscv64$/);
  t.true(smoke.includes(`harts: ${harts}`), smoke.join("\n"));
  t.true(smoke.some((l) => /^isa\s*: rv64imafdc/.test(l)), smoke.join("\n"));
  const seqMd5 = createHash("md5").update(Array.from({ length: 1000 }, (_, i) => `${i + 1}\n`).join("")).digest("hex");
  t.true(smoke.includes(`kmemvisor smoke ${seqMd5.slice(0, 16)}`), smoke.join("\n"));
  t.true(smoke.includes(`sum|${(100 * 101) / 2}`), smoke.join("\n"));
  t.true(smoke.includes("ok"), smoke.join("\n")); // PRAGMA integrity_check
  t.true(smoke.includes("kmv: smoke exit=0"), smoke.join("\n"));
  t.regex(output, /reboot: Power down/);
  t.notRegex(output, TROUBLE, output.slice(-3000));
  return smoke.filter((l) => !/^isa\s*:/.test(l));
}

const kmemvisorArgs = (smp: number, disk: string, extra: string[] = []) => [
  "run", "--bios", FW_JUMP, "--kernel", IMAGE, "-m", "256M", "--smp", String(smp), "--drive", disk,
  "--append", "console=ttyS0 kmv.run=smoke", "--timeout", "400", ...extra,
];

let qemuSmoke: Promise<string[] | undefined> | undefined;
/** QEMU's smoke lines, once for every test that compares with them. */
function qemu(t: import("ava").ExecutionContext): Promise<string[] | undefined> {
  qemuSmoke ??= run("qemu-system-riscv64", [
    "-machine", "virt", "-nographic", "-m", "256M", "-smp", "2", "-bios", FW_JUMP, "-kernel", IMAGE,
    "-append", "console=ttyS0 kmv.run=smoke", "-drive", `file=${freshDisk()},format=raw,if=none,id=d0`,
    "-device", "virtio-blk-device,drive=d0",
  ], { killAfterMs: 300_000 }).then((r) => {
    if (r.status !== 0) throw new Error(`qemu-system-riscv64 failed (${r.status}): ${r.stderr}${r.stdout.slice(-2000)}`);
    return r.stdout.split(/\r?\n/);
  });
  return qemuSmoke.then((lines) => {
    const output = lines!.join("\n");
    return expectSmoke(t, output, 2);
  });
}

for (const smp of [1, 4]) {
  test.serial(`Linux + BusyBox on ${smp} hart(s): the smoke workload's results, as on QEMU`, async (t) => {
    t.timeout(480_000);
    const r = await kmemvisor(kmemvisorArgs(smp, freshDisk()), { killAfterMs: 450_000 });
    t.log(`${smp} hart(s): ${(r.milliseconds / 1000).toFixed(1)} s`);
    t.is(r.status, 0, (r.stdout + r.stderr).slice(-3000));
    const ours = expectSmoke(t, r.stdout, smp).filter((l) => !l.startsWith("harts:"));
    const theirs = (await qemu(t))!.filter((l) => !l.startsWith("harts:"));
    t.deepEqual(ours, theirs);
  });
}

test.serial("Linux + BusyBox mirrored (--mirror vm, 2 harts) survives DUEs across kernel text and data during the workload", async (t) => {
  t.timeout(480_000);
  // 32 DUEs, one every 192 KiB from the kernel's load address over its text and data, at 4 s (the
  // kernel is up, the workload about to start), and random ones into any page from 5 s on.
  const injections = Array.from({ length: 32 }, (_, i) => ["--inject", `due@4:0x${(0x8020_0000 + i * 0x3_0000).toString(16)}`]).flat();
  const r = await kmemvisor(
    kmemvisorArgs(2, freshDisk(), ["--mirror", "vm", "--json", ...injections, "--inject", "random@5:7", "--spares", "256"]),
    { killAfterMs: 450_000 },
  );
  t.is(r.status, 0, (r.stdout + r.stderr).slice(-3000));
  expectSmoke(t, r.stdout, 2);
  const json = JSON.parse(r.stderr.trim().split("\n").filter((l) => l.startsWith("{")).pop()!) as { memory: { injected: number; recoveries: number } };
  t.log(`injected ${json.memory.injected}, recovered ${json.memory.recoveries}`);
  t.true(json.memory.injected >= 32);
  t.true(json.memory.recoveries >= 1, "no poisoned page was touched: the test did not test recovery");
});
