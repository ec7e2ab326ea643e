/**
 * Loading guest images (issue 16, items 11 and 14): an empty PT_LOAD below RAM is skipped and the
 * guest runs; a real segment outside RAM, an odd entry point, and images that overlap each other
 * (the device tree over a kernel in a small RAM, a kernel ELF over the firmware) are bad input,
 * exit 65, as QEMU's loader refuses them.
 */
import test from "ava";
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BootError, planBoot } from "../hypervisor/boot.ts";
import { ElfError } from "../hypervisor/elf.ts";
import { Machine } from "../hypervisor/machine.ts";
import { Program, R, addi, bne } from "./helpers/asm.ts";
import { GUESTS, kmemvisor } from "./helpers/cli.ts";
import { buildElf } from "./helpers/elf-writer.ts";

const MiB = 2 ** 20;
const machineOf = (ramSize: number) => new Machine({ ramSize, harts: 1, output: () => {} });
const HELLO = readFileSync(join(GUESTS, "hello.elf"));

/** a0 = 7 · 6 by repeated addition, then exit: a computed result. */
function multiplyCode(): Uint8Array {
  const p = new Program();
  p.li(R.a0, 0).li(R.t0, 6).label("loop").emit(addi(R.a0, R.a0, 7), addi(R.t0, R.t0, -1)).branch(bne, R.t0, 0, "loop");
  return p.exit(0).code();
}

test("an ELF with empty PT_LOADs below and above RAM loads and runs (they are skipped)", async (t) => {
  const empty = new Uint8Array(0);
  const elf = buildElf({
    entry: 0x8000_0000n,
    segments: [
      { paddr: 0x1000n, data: empty, memSize: 0n },
      { paddr: 0x8000_0000n, data: multiplyCode() },
      { paddr: 0xffff_ffff_ffff_f000n, data: empty, memSize: 0n },
    ],
  });
  const machine = machineOf(MiB);
  const image = machine.loadElf(elf, "empty-segments.elf");
  machine.start(image.entry);
  const result = await machine.run({ timeoutMs: 10_000 });
  t.is(result.reason, "exit", result.fault);
  t.is(machine.harts[0]!.x(R.a0), 42n);
});

test("a real segment outside RAM is bad input, in any position", (t) => {
  for (const paddr of [0x1000n, 0x7fff_0000n, 0x8010_0000n, 0xffff_ffff_ffff_f000n]) {
    const elf = buildElf({ segments: [{ paddr: 0x8000_0000n, data: multiplyCode() }, { paddr, data: new Uint8Array(8) }] });
    t.throws(() => machineOf(MiB).loadElf(elf, "outside.elf"), { instanceOf: ElfError, message: /outside\.elf: PT_LOAD segment 1 .* does not lie in RAM/ });
  }
});

test("the device tree over the kernel in a small RAM is refused, naming both", (t) => {
  // 2 MiB: QEMU's rule puts the FDT at the 2 MiB boundary below the end of RAM, i.e. at RAM's base.
  const error = t.throws(() => planBoot(machineOf(2 * MiB), { bios: "none", kernel: { name: "hello.elf", bytes: HELLO } }), { instanceOf: BootError });
  t.regex(error?.message ?? "", /hello\.elf \(segment 0\) \[0x80000000, .*\) and the device tree \[0x80000000, .*\) overlap/);
  t.throws(() => planBoot(machineOf(MiB / 2), { bios: "none", kernel: { name: "hello.elf", bytes: HELLO } }), { instanceOf: BootError, message: /device tree does not fit/ });
  // With room, the FDT goes above the kernel.
  const plan = planBoot(machineOf(4 * MiB), { bios: "none", kernel: { name: "hello.elf", bytes: HELLO } });
  t.is(plan.fdtAddress, 0x8020_0000);
});

test("a kernel ELF linked over the firmware is refused; a raw kernel goes after it", (t) => {
  const firmware = { name: "fw.bin", bytes: new Uint8Array(0x3000).fill(0x13) };
  const overFirmware = buildElf({ segments: [{ paddr: 0x8000_2000n, data: multiplyCode() }] });
  t.throws(() => planBoot(machineOf(16 * MiB), { bios: firmware, kernel: { name: "k.elf", bytes: overFirmware } }), {
    instanceOf: BootError,
    message: /firmware fw\.bin \[0x80000000, 0x80003000\) and kernel k\.elf \(segment 0\) \[0x80002000, .*\) overlap/,
  });
  const apart = buildElf({ segments: [{ paddr: 0x8020_0000n, data: multiplyCode() }], entry: 0x8020_0000n });
  t.notThrows(() => planBoot(machineOf(16 * MiB), { bios: firmware, kernel: { name: "k.elf", bytes: apart } }));
  t.notThrows(() => planBoot(machineOf(16 * MiB), { bios: firmware, kernel: { name: "k.bin", bytes: multiplyCode() } }));
});

test("the CLI: -m 2M hello.elf and an odd entry point are exit 65 with one line", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kmv-boot-"));
  try {
    const odd = join(dir, "odd.elf");
    writeFileSync(odd, buildElf({ entry: 0x8000_0001n, segments: [{ paddr: 0x8000_0000n, data: multiplyCode() }] }));
    for (const args of [["-m", "2M", join(GUESTS, "hello.elf")], [odd]]) {
      const run = await kmemvisor(["run", ...args]);
      t.is(run.status, 65, run.stderr);
      t.is(run.stderr.trim().split("\n").length, 1, run.stderr);
      t.regex(run.stderr, /overlap|odd/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
