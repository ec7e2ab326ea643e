/**
 * Fuzzing the device tree's placement (hypervisor/fdt.ts fdtPlacement, hypervisor/boot.ts) with
 * fast-check: random RAM sizes up to the 4 GiB limit, FDT sizes, and firmware and kernel images of
 * random sizes at random places. The property: the FDT lands where QEMU 7.2 puts it (the highest
 * 2 MiB boundary that leaves room for max(size, 1 MiB) below min(end of RAM, 3 GiB)), inside RAM,
 * or the plan fails with a BootError/ElfError (exit 65); a successful boot plan never lets the FDT
 * and an image overlap, and leaves every image's bytes intact in RAM.
 */
import test from "ava";
import fc from "fast-check";
import { BootError, planBoot } from "../hypervisor/boot.ts";
import { ElfError } from "../hypervisor/elf.ts";
import { fdtPlacement } from "../hypervisor/fdt.ts";
import { Machine } from "../hypervisor/machine.ts";
import { PAGE_SIZE, RAM_BASE } from "../shared-mem/layout.ts";
import { buildElf } from "./helpers/elf-writer.ts";
import { fuzzParameters } from "./helpers/fuzz.ts";

const MiB = 2 ** 20;
const TWO_MIB = 2 * MiB;
const THREE_GIB = 3 * 1024 * MiB;

test("fdtPlacement: QEMU's address inside RAM, or a RangeError only when no 2 MiB slot fits", (t) => {
  const ramSize = fc.oneof(
    fc.integer({ min: 1, max: (4 * 1024 * MiB) / PAGE_SIZE }).map((pages) => pages * PAGE_SIZE),
    fc.constantFrom(PAGE_SIZE, MiB, TWO_MIB - PAGE_SIZE, TWO_MIB, TWO_MIB + PAGE_SIZE, 3 * MiB, 1024 * MiB, 2048 * MiB, 4000 * MiB),
  );
  const fdtSize = fc.oneof(fc.integer({ min: 1, max: 4 * MiB }), fc.constantFrom(40, 0x765, MiB, MiB + 1, TWO_MIB));
  fc.assert(
    fc.property(ramSize, fdtSize, (size, blob) => {
      const end = RAM_BASE + size;
      const top = Math.min(end, THREE_GIB);
      const counted = Math.max(blob, MiB);
      // The highest 2 MiB boundary with room for the counted size below top.
      const expected = Math.floor((top - counted) / TWO_MIB) * TWO_MIB;
      const fits = expected >= RAM_BASE && expected + blob <= end;
      let address: number;
      try {
        address = fdtPlacement(RAM_BASE, size, blob);
      } catch (e) {
        if (!(e instanceof RangeError) || fits) throw e;
        return;
      }
      if (!fits) throw new Error(`placed at 0x${address.toString(16)} although nothing fits`);
      if (address !== expected) throw new Error(`0x${address.toString(16)}, QEMU says 0x${expected.toString(16)}`);
      if (address % TWO_MIB !== 0 || address < RAM_BASE || address + blob > end) throw new Error("outside RAM or unaligned");
    }),
    fuzzParameters(),
  );
  t.pass();
});

/** One Machine per RAM size, made on first use: a few sizes around the FDT's 2 MiB steps. */
const machines = new Map<number, Machine>();
const machineOf = (ramSize: number) => {
  let machine = machines.get(ramSize);
  if (!machine) machines.set(ramSize, (machine = new Machine({ ramSize, harts: 1, output: () => {} })));
  return machine;
};
const RAM_SIZES = [512 * 1024, MiB, TWO_MIB, 3 * MiB, 4 * MiB, 5 * MiB, 8 * MiB];

test("boot plans with firmware and kernels of random sizes and places: the FDT overlaps nothing, or exit 65", (t) => {
  // An image's content: its seed throughout, its size in its first and last bytes (cheap to make, and
  // an FDT written over any part of it shows).
  const bytes = (length: number, seed: number) => {
    const out = new Uint8Array(length).fill(seed | 1);
    out[0] = length & 0xff;
    out[length - 1] = (length >> 8) & 0xff;
    return out;
  };
  const plan = fc.record({
    ramSize: fc.constantFrom(...RAM_SIZES),
    firmware: fc.option(fc.integer({ min: 1, max: 3 * MiB }), { nil: undefined }),
    kernelElf: fc.boolean(),
    kernelSize: fc.integer({ min: 1, max: 3 * MiB }),
    kernelAt: fc.integer({ min: -4, max: 8 * 16 }).map((k) => RAM_BASE + k * 0x10_0000 / 2),
    seed: fc.nat({ max: 255 }),
  });
  let planned = 0;
  let refused = 0;
  fc.assert(
    fc.property(plan, ({ ramSize, firmware, kernelElf, kernelSize, kernelAt, seed }) => {
      const machine = machineOf(ramSize);
      const kernelBytes = bytes(kernelSize, seed);
      const kernel = kernelElf
        ? { name: "k.elf", bytes: buildElf({ entry: BigInt(kernelAt), segments: [{ paddr: BigInt(kernelAt), data: kernelBytes }] }) }
        : { name: "k.bin", bytes: kernelBytes };
      const images = firmware === undefined
        ? { bios: "none" as const, kernel }
        : { bios: { name: "fw.bin", bytes: bytes(firmware, seed + 1) }, kernel };
      let result: ReturnType<typeof planBoot>;
      try {
        result = planBoot(machine, images);
      } catch (e) {
        if (!(e instanceof BootError || e instanceof ElfError)) throw e;
        if (e.message.includes("\n")) throw new Error(`message of more than one line: ${e.message}`);
        refused++;
        return;
      }
      planned++;
      const fdtEnd = result.fdtAddress + result.fdt.length;
      if (result.fdtAddress < RAM_BASE || fdtEnd > RAM_BASE + ramSize) throw new Error("the FDT lies outside RAM");
      const regions: { at: number; data: Uint8Array }[] = [];
      if (firmware !== undefined) regions.push({ at: RAM_BASE, data: images.bios === "none" ? new Uint8Array() : images.bios.bytes });
      if (kernelElf || firmware !== undefined) {
        const at = kernelElf ? kernelAt : Math.ceil((RAM_BASE + firmware!) / TWO_MIB) * TWO_MIB;
        regions.push({ at, data: kernelBytes });
      }
      for (const { at, data } of regions) {
        if (at < fdtEnd && result.fdtAddress < at + data.length) throw new Error("an image overlaps the FDT");
        const inRam = machine.readRam(at, data.length);
        if (!inRam.every((b, i) => b === data[i])) throw new Error(`image at 0x${at.toString(16)} not intact`);
      }
      const fdt = machine.readRam(result.fdtAddress, result.fdt.length);
      if (!fdt.every((b, i) => b === result.fdt[i])) throw new Error("the FDT in RAM is not the one planned");
    }),
    fuzzParameters(0.5),
  );
  t.log(`${planned} planned, ${refused} refused`);
  t.true(planned > 0 && refused > 0);
});
