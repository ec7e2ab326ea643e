/**
 * The kernel-pattern guests (guests/kbench): small S-mode kernels that reproduce what makes kernels
 * slow on an emulator, each checking its own computed result and exiting with the number of failed
 * checks; and the kernel microbenchmarks. Their test builds (-small; the microbenchmarks' default
 * loop counts) run here on kmemvisor and on QEMU against guests/expected/, which was recorded on
 * QEMU 7.2. Lines marked "[varies]" (uart-storm's interrupt count: it depends on the interrupt
 * controller's model and on timing) are left out of every comparison. `npm run bench -- kernel`
 * runs the full builds.
 */
import test from "ava";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXPECTED, GUESTS, kmemvisor, run } from "./helpers/cli.ts";
import { patchElfU64 } from "../bench/patch-elf.ts";

const deterministic = (out: string) => out.replace(/\r\n/g, "\n").split("\n").filter((line) => !line.includes("[varies]")).join("\n");
const expected = (name: string) => readFileSync(join(EXPECTED, `${name}.out`), "latin1");
const elf = (name: string) => join(GUESTS, `${name}.elf`);

/** A fresh 1 MiB disk image (disk-small writes every sector it reads, so zeros will do). */
function freshDisk(): string {
  const path = join(mkdtempSync(join(tmpdir(), "kmv-kb-")), "disk.img");
  writeFileSync(path, new Uint8Array(1 << 20));
  return path;
}

const QEMU_ARGS = ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-global", "virtio-mmio.force-legacy=false"];

// ---------------------------------------------------------------------------------- uart-storm
// The 16550's THRE interrupt stays enabled and IIR is never read, so the line is high whenever the
// transmitter is idle. As on QEMU 7.2, whose PLIC makes a source pending only when its device
// signals it (hypervisor/devices/plic.ts), the guest takes one interrupt per byte sent and its main
// line runs on once a line is out; under the PLIC specification's gateway it livelocked.
for (const smp of [1, 2]) {
  test(`uart-storm-small makes progress under its THRE interrupt storm (--smp ${smp})`, async (t) => {
    const r = await kmemvisor(["run", "--smp", String(smp), "--timeout", "20", elf("uart-storm-small")], { killAfterMs: 40_000 });
    t.is(deterministic(r.stdout), expected("uart-storm-small"), r.stderr);
    t.is(r.status, 0, r.stderr);
    const storm = /\[varies\] (\d+) interrupts, (\d+) of (\d+) bytes sent by the handler/.exec(r.stdout);
    t.truthy(storm, "the interrupt count line");
    t.true(Number(storm?.[1]) >= Number(storm?.[2]) && Number(storm?.[2]) > 0, "an interrupt for every byte the handler sent");
  });
}

test("uart-storm-small on QEMU: the same output, an interrupt for every byte the handler sent", async (t) => {
  const r = await run("qemu-system-riscv64", [...QEMU_ARGS, "-kernel", elf("uart-storm-small")], { killAfterMs: 60_000 });
  t.is(deterministic(r.stdout), expected("uart-storm-small"), r.stderr);
  t.is(r.status, 0);
  const storm = /\[varies\] (\d+) interrupts, (\d+) of (\d+) bytes sent by the handler/.exec(r.stdout);
  t.truthy(storm);
  // Everything but each line's first byte (sent by the kick) goes out from the handler.
  t.true(Number(storm![2]) > Number(storm![3]) / 2);
});

// ------------------------------------------------------------------------------------ syscalls
for (const [smp, flags] of [
  [1, []],
  [2, ["--mirror", "vm"]],
] as const) {
  test(`syscalls-small: user processes, fork, sbrk, satp switch and full TLB flush per trap (--smp ${smp} ${flags.join(" ")})`, async (t) => {
    const r = await kmemvisor(["run", "--smp", String(smp), ...flags, "--timeout", "60", elf("syscalls-small")], { killAfterMs: 90_000 });
    t.is(r.stdout, expected("syscalls-small"), r.stderr);
    t.regex(r.stdout, /syscalls: OK, \d+ kernel checks/);
    t.is(r.status, 0, r.stderr);
  });
}

// ---------------------------------------------------------------------------------- disk-small
/** The data disk-small writes (guests/kbench/disk-small.c word_of), generation g of a sector. */
function diskWord(g: number, sector: number, i: number): bigint {
  const M = (1n << 64n) - 1n;
  let x = (BigInt(sector * 64 + i) * 0x9e3779b97f4a7c15n + BigInt(g) * 0xd1b54a32d192ed03n) & M;
  x ^= x >> 31n;
  x = (x * 0xbf58476d1ce4e5b9n) & M;
  x ^= x >> 29n;
  return x;
}

test("disk-small-small: hundreds of one-sector virtio-blk requests, and the image holds what the guest wrote", async (t) => {
  const disk = freshDisk();
  const r = await kmemvisor(["run", "--drive", disk, "--timeout", "60", elf("disk-small-small")], { killAfterMs: 90_000 });
  t.is(r.stdout, expected("disk-small-small"), r.stderr);
  t.is(r.status, 0, r.stderr);
  // The small build writes sectors 0..127: the even ones last with generation 1, the odd ones with 0.
  const image = readFileSync(disk);
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  let bad = 0;
  for (let sector = 0; sector < 128; sector++) {
    for (let i = 0; i < 64; i++) if (view.getBigUint64(sector * 512 + i * 8, true) !== diskWord(sector % 2 === 0 ? 1 : 0, sector, i)) bad++;
  }
  t.is(bad, 0, "words of the image that differ from what the guest wrote");
  t.true(image.subarray(128 * 512).every((b) => b === 0), "sectors beyond the 128 written are untouched");
});

test("disk-small-small with --smp 2 --mirror vm: the device's DMA reaches both copies while the idle hart sleeps", async (t) => {
  const r = await kmemvisor(["run", "--smp", "2", "--mirror", "vm", "--drive", freshDisk(), "--timeout", "60", elf("disk-small-small")], { killAfterMs: 90_000 });
  t.is(r.stdout, expected("disk-small-small"), r.stderr);
  t.is(r.status, 0, r.stderr);
});

test("disk-small-small on QEMU gives the expected output (the data checksum is QEMU's)", async (t) => {
  const disk = freshDisk();
  const r = await run("qemu-system-riscv64", [
    ...QEMU_ARGS, "-kernel", elf("disk-small-small"),
    "-drive", `file=${disk},if=none,format=raw,id=hd0`, "-device", "virtio-blk-device,drive=hd0,bus=virtio-mmio-bus.0",
  ], { killAfterMs: 60_000 });
  t.is(r.stdout.replace(/\r\n/g, "\n"), expected("disk-small-small"), r.stderr);
  t.is(r.status, 0);
});

test("disk-small-small without a disk does not claim success", async (t) => {
  // QEMU's virt board always has its virtio-mmio slots (an empty one reads device ID 0: the guest
  // says so and exits 1); kmemvisor maps the slot only with --drive, so the probe's load faults
  // and the kernel reports the unexpected trap (exit 255).
  const r = await kmemvisor(["run", "--timeout", "60", elf("disk-small-small")], { killAfterMs: 90_000 });
  t.regex(r.stdout, /disk-small: unexpected S trap: scause=0x5 .* stval=0x10001000/);
  t.is(r.status, 255, "the kernel's exit code for an unexpected trap");
  t.notRegex(r.stdout, /OK/);
});

// ----------------------------------------------------------------------------- microbenchmarks
for (const name of ["micro-mmio", "micro-syscall", "micro-tlb"]) {
  test(`${name} runs its default loop and checks what it read`, async (t) => {
    const r = await kmemvisor(["run", "--timeout", "60", elf(name)], { killAfterMs: 90_000 });
    t.is(r.stdout, expected(name), r.stderr);
    t.is(r.status, 0, r.stderr);
  });
}

test("the benchmark's loop count patch takes effect (micro-mmio: instructions grow with `iterations`)", async (t) => {
  const instructions = async (n: bigint) => {
    const r = await kmemvisor(["run", "--json", "--timeout", "60", patchElfU64(elf("micro-mmio"), "iterations", n)], { killAfterMs: 90_000 });
    t.is(r.stdout, expected("micro-mmio"), r.stderr);
    t.is(r.status, 0, r.stderr);
    const report = JSON.parse(r.stderr.split("\n").find((line) => line.startsWith("{"))!) as { harts: { instructions: number }[] };
    return report.harts[0]!.instructions;
  };
  const few = await instructions(10n), more = await instructions(1010n);
  // Each read is a few instructions of loop (load, add, counter, branch): 1000 more reads, 3000+ more.
  t.true(more - few >= 3000 && more - few <= 10_000, `${few} then ${more} instructions`);
});

for (const name of ["syscalls-small", "micro-mmio", "micro-syscall", "micro-tlb"]) {
  test(`${name} on QEMU gives the expected output`, async (t) => {
    const r = await run("qemu-system-riscv64", [...QEMU_ARGS, "-kernel", elf(name)], { killAfterMs: 60_000 });
    t.is(r.stdout.replace(/\r\n/g, "\n"), expected(name), r.stderr);
    t.is(r.status, 0);
  });
}
