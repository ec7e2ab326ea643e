/**
 * Fuzzing the ELF loader and the boot plan (hypervisor/elf.ts, hypervisor/boot.ts) with
 * fast-check: random bytes behind an ELF magic, and well-formed images whose headers and program
 * headers are then mutated (addresses and sizes from the edges of RAM and of the 64-bit space,
 * empty and huge segments, odd entries, bad counts and offsets). The property: loading either fails
 * with an ElfError or BootError (exit 65), one line naming the file, or succeeds with every
 * segment's bytes in RAM, zeroed .bss, an even entry and a device tree that overlaps nothing;
 * never another exception, a hang, or memory that grows with what a header claims.
 */
import test from "ava";
import fc from "fast-check";
import { BootError, planBoot } from "../hypervisor/boot.ts";
import { ElfError, parseElf } from "../hypervisor/elf.ts";
import { Machine } from "../hypervisor/machine.ts";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { buildElf, type SegmentSpec } from "./helpers/elf-writer.ts";
import { fuzzParameters } from "./helpers/fuzz.ts";

const RAM = 4 * 2 ** 20;
const RAM_END = BigInt(RAM_BASE + RAM);
const FILE = "fuzz.elf";

/** Addresses where the interesting things happen: RAM's edges, below it, the top of the space. */
const address = fc.oneof(
  fc.constantFrom(0n, 0x1000n, BigInt(RAM_BASE) - 0x1000n, BigInt(RAM_BASE) - 8n, BigInt(RAM_BASE), RAM_END - 0x1000n, RAM_END - 8n, RAM_END, 0x8020_0000n, 0x1000_1000n, 2n ** 63n, 2n ** 64n - 0x1000n),
  fc.bigInt({ min: BigInt(RAM_BASE), max: RAM_END }).map((a) => a & ~7n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const size = fc.oneof(
  fc.constantFrom(0n, 1n, 8n, 0x1000n, BigInt(RAM), 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 0x2_0000n }),
);
/** Mostly plausible segments (in RAM, PT_LOAD), so that loads succeed as well as fail. */
const segment: fc.Arbitrary<SegmentSpec> = fc.record({
  type: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) }),
  paddr: fc.oneof({ weight: 3, arbitrary: fc.bigInt({ min: BigInt(RAM_BASE) - 0x800n, max: RAM_END }).map((a) => a & ~0xfffn) }, { weight: 1, arbitrary: address }),
  data: fc.uint8Array({ maxLength: 64 }),
  memSize: fc.option(size, { nil: undefined }),
  flags: fc.integer({ min: 0, max: 7 }),
});
/** A byte overwrite inside the ELF header and program headers (the first 64 + 4·56 bytes). */
const mutation = fc.record({ at: fc.nat({ max: 64 + 4 * 56 - 1 }), value: fc.integer({ min: 0, max: 255 }) });

const image = fc.oneof(
  // A well-formed image, then some header bytes overwritten.
  fc.record({
    entry: fc.oneof(address, fc.constant(BigInt(RAM_BASE)), fc.constant(BigInt(RAM_BASE) + 1n)),
    segments: fc.array(segment, { minLength: 0, maxLength: 4 }),
    mutations: fc.oneof(fc.constant([]), fc.array(mutation, { maxLength: 6 })),
  }).map(({ entry, segments, mutations }) => {
    const bytes = buildElf({ entry, segments });
    for (const { at, value } of mutations) if (at < bytes.length) bytes[at] = value;
    return bytes;
  }),
  // Noise behind the magic and class bytes.
  fc.uint8Array({ minLength: 0, maxLength: 600 }).map((noise) => {
    const bytes = new Uint8Array(Math.max(noise.length, 8));
    bytes.set(noise);
    bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
    return bytes;
  }),
);

test("the ELF loader and boot plan: a clear ElfError/BootError or a correct load, for any header", (t) => {
  const machine = new Machine({ ramSize: RAM, harts: 1, output: () => {} });
  const rssBefore = process.memoryUsage().rss;
  let loaded = 0;
  let refused = 0;
  fc.assert(
    fc.property(image, (bytes) => {
      const started = performance.now();
      let plan: ReturnType<typeof planBoot>;
      try {
        plan = planBoot(machine, { bios: "none", kernel: { name: FILE, bytes } });
      } catch (e) {
        if (!(e instanceof ElfError || e instanceof BootError)) throw e; // anything else: a crash
        if (!e.message.startsWith(FILE) && !/overlap|device tree/.test(e.message)) throw new Error(`message does not name the file: ${e.message}`);
        if (e.message.includes("\n")) throw new Error(`message of more than one line: ${e.message}`);
        refused++;
        return;
      } finally {
        if (performance.now() - started > 2000) throw new Error("a load took more than 2 s");
      }
      loaded++;
      const elf = parseElf(bytes, FILE);
      if ((elf.entry & 1n) !== 0n) throw new Error("an odd entry was accepted");
      const fdtEnd = plan.fdtAddress + plan.fdt.length;
      for (const s of elf.segments) {
        const start = s.paddr < BigInt(RAM_BASE) ? BigInt(RAM_BASE) : s.paddr; // a header prefix is dropped
        const end = s.paddr + s.memSize;
        if (start < BigInt(RAM_BASE) || end > RAM_END) throw new Error(`segment [${s.paddr}, ${end}) accepted outside RAM`);
        if (Number(start) < fdtEnd && plan.fdtAddress < Number(end)) throw new Error("a segment overlaps the device tree");
        const skip = Number(start - s.paddr);
        const inRam = machine.readRam(Number(start), Number(end - start));
        const expected = new Uint8Array(inRam.length);
        expected.set(s.fileData.subarray(Math.min(skip, s.fileData.length)));
        if (!inRam.every((b, i) => b === expected[i])) throw new Error("segment bytes or .bss not as the file says");
      }
      const fdt = machine.readRam(plan.fdtAddress, plan.fdt.length);
      if (!fdt.every((b, i) => b === plan.fdt[i])) throw new Error("the device tree in RAM is not the one planned");
    }),
    fuzzParameters(),
  );
  t.log(`${loaded} loaded, ${refused} refused`);
  t.true(refused > 0);
  t.true(process.memoryUsage().rss - rssBefore < 256 * 2 ** 20, "memory did not grow with the claimed sizes");
});
