/**
 * Boot flows of QEMU's virt board:
 *  - `--bios none`: the kernel ELF is loaded by its physical addresses and every hart starts at its
 *    entry in M-mode;
 *  - `--bios FILE [--kernel FILE]`: firmware (raw binary or ELF, e.g. OpenSBI's fw_jump.bin) at
 *    0x8000_0000, the kernel (raw binary at the next 2 MiB boundary after the firmware, 0x8020_0000
 *    for OpenSBI, or an ELF at its own addresses), harts start at the firmware.
 * In both, a0 = hart id, a1 = the FDT's address and a2 = OpenSBI's fw_dynamic_info in the boot
 * ROM, as QEMU's reset vector sets them.
 */
import { existsSync } from "node:fs";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { ElfError, parseElf, type ElfSegment } from "./elf.ts";
import { buildVirtFdt, fdtPlacement } from "./fdt.ts";
import type { Machine } from "./machine.ts";
import { MROM_BASE } from "./devices/rom.ts";

export class BootError extends Error {}

/** Debian's OpenSBI, used for `--bios default` as QEMU uses its bundled copy. */
export const DEBIAN_OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";

export interface BootImages {
  /** "none", or firmware bytes with a name for messages. */
  bios: "none" | { name: string; bytes: Uint8Array };
  kernel?: { name: string; bytes: Uint8Array };
  append?: string;
}

export interface BootPlan {
  start: bigint;
  fdtAddress: number;
  fdt: Uint8Array;
  dynamicInfoAddress: number;
}

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const isElf = (bytes: Uint8Array) => ELF_MAGIC.every((b, i) => bytes[i] === b);
const TWO_MIB = 0x20_0000;
/** Offset of fw_dynamic_info in the boot ROM (QEMU puts it right after its reset vector). */
const DYNAMIC_INFO_OFFSET = 0x28;
const FW_DYNAMIC_INFO_MAGIC = 0x4942534fn; // "OSBI"
const FW_DYNAMIC_INFO_VERSION = 2n;
const NEXT_MODE_S = 1n;

function loadRaw(machine: Machine, name: string, bytes: Uint8Array, address: number): void {
  if (bytes.length === 0) throw new BootError(`${name}: the file is empty`);
  const offset = address - RAM_BASE;
  if (offset + bytes.length > machine.layout.ramSize) {
    throw new BootError(
      `${name}: ${bytes.length} bytes at 0x${address.toString(16)} do not fit in ${machine.layout.ramSize >> 20} MiB of RAM`,
    );
  }
  machine.writeRam(address, bytes);
}

/** Guest-physical bytes [start, end) an image occupies, named for messages. */
interface Region {
  name: string;
  start: number;
  end: number;
}

/** Where an ELF's non-empty segments lie in RAM (a header prefix below RAM is not loaded). */
function elfRegions(name: string, segments: readonly ElfSegment[]): Region[] {
  return segments
    .filter((s) => s.memSize > 0n)
    .map((s, k) => ({ name: `${name} (segment ${k})`, start: Math.max(RAM_BASE, Number(s.paddr)), end: Number(s.paddr + s.memSize) }));
}

/** Load an image as QEMU would; returns its entry and what it occupies. */
function loadImage(machine: Machine, image: { name: string; bytes: Uint8Array }, rawAddress: number): { entry: bigint; regions: Region[] } {
  if (isElf(image.bytes)) {
    const elf = machine.loadElf(image.bytes, image.name);
    return { entry: elf.entry, regions: elfRegions(image.name, elf.segments) };
  }
  loadRaw(machine, image.name, image.bytes, rawAddress);
  return { entry: BigInt(rawAddress), regions: [{ name: image.name, start: rawAddress, end: rawAddress + image.bytes.length }] };
}

/**
 * Images must not overlap (exit 65), as QEMU's loader refuses overlapping ROM regions ("rom:
 * requested regions overlap"): the device tree written over a kernel in a small RAM, or a kernel
 * ELF linked over the firmware, would otherwise boot into garbage.
 */
export function checkNoOverlap(regions: readonly Region[]): void {
  const sorted = [...regions].sort((a, b) => a.start - b.start);
  let reach: Region | undefined; // the region reaching highest so far
  for (const region of sorted) {
    if (reach && region.start < reach.end) {
      const range = (r: Region) => `[0x${r.start.toString(16)}, 0x${r.end.toString(16)})`;
      throw new BootError(`${reach.name} ${range(reach)} and ${region.name} ${range(region)} overlap; give the VM more memory (-m) or link the images apart`);
    }
    if (!reach || region.end > reach.end) reach = region;
  }
}

export function planBoot(machine: Machine, images: BootImages): BootPlan {
  let start: bigint;
  let nextStage = 0n;
  const regions: Region[] = [];
  if (images.bios === "none") {
    // Without a kernel there is nothing to run; callers use such a plan only for its FDT (--dumpdtb).
    if (!images.kernel) start = BigInt(RAM_BASE);
    else if (!isElf(images.kernel.bytes)) {
      throw new BootError(`${images.kernel.name}: with --bios none the kernel must be an ELF executable (got a raw binary)`);
    }
    else {
      const elf = machine.loadElf(images.kernel.bytes, images.kernel.name);
      start = elf.entry;
      regions.push(...elfRegions(images.kernel.name, elf.segments));
    }
  } else {
    const firmware = loadImage(machine, images.bios, RAM_BASE);
    start = firmware.entry;
    regions.push(...firmware.regions.map((r) => ({ ...r, name: `firmware ${r.name}` })));
    if (images.kernel) {
      const firmwareEnd = Math.max(...firmware.regions.map((r) => r.end));
      const kernelAddress = Math.ceil(firmwareEnd / TWO_MIB) * TWO_MIB;
      const kernel = loadImage(machine, images.kernel, kernelAddress);
      nextStage = kernel.entry;
      regions.push(...kernel.regions.map((r) => ({ ...r, name: `kernel ${r.name}` })));
    }
  }

  const fdt = buildVirtFdt({
    harts: machine.harts.length,
    ramBase: RAM_BASE,
    ramSize: machine.layout.ramSize,
    bootargs: images.append,
    hasVirtioBlock: machine.virtio !== undefined,
  });
  let fdtAddress: number;
  try {
    fdtAddress = fdtPlacement(RAM_BASE, machine.layout.ramSize, fdt.length);
  } catch (e) {
    if (e instanceof RangeError) throw new BootError(`the device tree does not fit: ${e.message}; give the VM more memory (-m)`);
    throw e;
  }
  checkNoOverlap([...regions, { name: "the device tree", start: fdtAddress, end: fdtAddress + fdt.length }]);
  machine.writeRam(fdtAddress, fdt);

  // OpenSBI's fw_dynamic reads where to go next from this structure (a2).
  const info = new DataView(new ArrayBuffer(48));
  info.setBigUint64(0, FW_DYNAMIC_INFO_MAGIC, true);
  info.setBigUint64(8, FW_DYNAMIC_INFO_VERSION, true);
  info.setBigUint64(16, nextStage, true);
  info.setBigUint64(24, NEXT_MODE_S, true);
  info.setBigUint64(32, 0n, true); // options
  info.setBigUint64(40, 0n, true); // boot hart: any
  machine.rom.load(DYNAMIC_INFO_OFFSET, new Uint8Array(info.buffer));
  return { start, fdtAddress, fdt, dynamicInfoAddress: MROM_BASE + DYNAMIC_INFO_OFFSET };
}

/** Resolve `--bios` names: none, default (Debian's OpenSBI), or a file path. */
export function resolveBios(bios: string): "none" | string {
  if (bios === "none") return "none";
  if (bios === "default") {
    if (!existsSync(DEBIAN_OPENSBI)) {
      throw new BootError(`--bios default needs Debian's OpenSBI (${DEBIAN_OPENSBI}): apt-get install opensbi`);
    }
    return DEBIAN_OPENSBI;
  }
  return bios;
}

/** Reject firmware we know cannot run here, with the reason. */
export function checkFirmware(name: string, bytes: Uint8Array): void {
  if (isElf(bytes)) {
    try {
      parseElf(bytes, name);
    } catch (e) {
      if (e instanceof ElfError) throw new BootError(`firmware ${e.message}`);
      throw e;
    }
    return;
  }
  if (bytes.length >= 4 && bytes[0] === 0x4d && bytes[1] === 0x5a) {
    throw new BootError(`${name}: this is a PE/EFI image (MZ header); kmemvisor boots raw or ELF firmware such as OpenSBI's fw_jump.bin`);
  }
  if (bytes.length >= 4 && bytes[0] === 0x27 && bytes[1] === 0x05 && bytes[2] === 0x19 && bytes[3] === 0x56) {
    throw new BootError(`${name}: this is a U-Boot legacy uImage; pass u-boot.bin with --kernel and OpenSBI with --bios`);
  }
}
