/**
 * System-wide mirroring (--mirror vm): after a guest has run, every mirror copy of RAM must equal
 * the primary, byte for byte. The guests cover every path a write can take: stores of each width
 * (aligned, misaligned, page-crossing), AMOs, LR/SC, page-table A/D updates by the MMU, virtio DMA
 * and the host's own writes (boot images, HTIF), on one hart and on several in worker threads.
 */
import test from "ava";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planBoot } from "../hypervisor/boot.ts";
import { DiskImage } from "../hypervisor/disk-image.ts";
import { Machine } from "../hypervisor/machine.ts";
import { compareCopies } from "../mirror/copies.ts";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { GUESTS, ROOT } from "./helpers/cli.ts";

interface GuestRun {
  machine: Machine;
  exitCode: number | undefined;
  output: string;
}

async function runGuest(name: string, options: { copies: number; harts?: number; disk?: boolean }): Promise<GuestRun> {
  const chunks: Uint8Array[] = [];
  let disk: DiskImage | undefined;
  if (options.disk) {
    const copy = join(mkdtempSync(join(tmpdir(), "kmv-mirror-")), "disk.img");
    copyFileSync(join(ROOT, "guests", "kernel", "disk.img"), copy);
    disk = DiskImage.open(copy);
  }
  const machine = new Machine({
    ramSize: 128 << 20,
    harts: options.harts ?? 1,
    copies: options.copies,
    disk,
    workers: true,
    output: (bytes) => chunks.push(bytes.slice()),
  });
  const file = join(GUESTS, `${name}.elf`);
  const plan = planBoot(machine, { bios: "none", kernel: { name: file, bytes: readFileSync(file) } });
  machine.start(plan.start, BigInt(plan.fdtAddress), BigInt(plan.dynamicInfoAddress));
  const result = await machine.run({ timeoutMs: 60_000 });
  disk?.close();
  return { machine, exitCode: result.exitCode, output: Buffer.concat(chunks).toString("latin1") };
}

const cases: [string, { copies: number; harts?: number; disk?: boolean }, RegExp][] = [
  ["isa-test", { copies: 2 }, /isa-test: \d+ checks, 0 failures/],
  ["isa-test", { copies: 3, harts: 2 }, /isa-test: \d+ checks, 0 failures/],
  ["memstress-small", { copies: 2 }, /memstress: OK/],
  ["seqwrite-small", { copies: 5 }, /seqwrite: OK/],
  ["minikernel", { copies: 2, disk: true }, /minikernel: \d+ checks, 0 failures/],
  ["htif-hello", { copies: 2 }, /Hello over HTIF/],
];

for (const [name, options, success] of cases) {
  test(`${name} with ${options.copies} copies on ${options.harts ?? 1} hart(s): every copy equals the primary`, async (t) => {
    const run = await runGuest(name, options);
    t.regex(run.output, success);
    t.deepEqual(compareCopies(run.machine.memory.buffer, run.machine.layout, run.machine.physicalMap), []);
  });
}

test("the copy comparison finds a write that bypassed mirroring, and mirrored host writes do not", async (t) => {
  const run = await runGuest("hello", { copies: 3 });
  const { buffer } = run.machine.memory;
  const { layout } = run.machine;
  run.machine.writeRam(RAM_BASE + 0x10_0000, Uint8Array.from([1, 2, 3]));
  t.deepEqual(compareCopies(buffer, layout, run.machine.physicalMap), []);
  // A write to the primary alone, as an unmirrored store would make.
  new Uint8Array(buffer, layout.ramOffset + 0x20_0005, 1)[0] ^= 0x40;
  t.deepEqual(compareCopies(buffer, layout, run.machine.physicalMap), [
    { page: RAM_BASE + 0x20_0000, copy: 1, firstAddress: RAM_BASE + 0x20_0005 },
    { page: RAM_BASE + 0x20_0000, copy: 2, firstAddress: RAM_BASE + 0x20_0005 },
  ]);
});

test("an unmirrored VM keeps no copies", async (t) => {
  const run = await runGuest("hello", { copies: 1 });
  t.is(run.machine.layout.copies, 1);
  t.is(run.machine.layout.spareFrames, 0);
  t.is(run.machine.layout.p2mOffset, run.machine.layout.ramSize, "nothing but the primary before the p2m table");
  t.deepEqual(compareCopies(run.machine.memory.buffer, run.machine.layout, run.machine.physicalMap), []);
});
