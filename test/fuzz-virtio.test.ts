/**
 * Fuzzing virtio-blk's descriptor-chain walker (hypervisor/devices/virtio-blk.ts) with fast-check,
 * through a real Machine with mirrored RAM (its DMA is mirror/dma.ts): descriptors pointing
 * anywhere (RAM, its edges, past it, the device's own MMIO window, the rings themselves, the top
 * of the 64-bit space), loops, huge lengths, random flags, indices past the queue size, bad queue
 * sizes and ring addresses, available indices that run ahead — mixed with well-formed requests.
 *
 * The property, after every QueueNotify: the write returns (no exception, no hang), and either the
 * device is in DEVICE_NEEDS_RESET with its reason and, once DRIVER_OK, a configuration-change
 * interrupt (VIRTIO 1.2 §2.1.2, as QEMU's virtio_error), or every offered chain is in the used ring
 * with its head, a block status, a well-formed read carried the disk's bytes, and the device's
 * writes reached both copies of RAM. Memory stays flat.
 */
import test from "ava";
import fc from "fast-check";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskImage } from "../hypervisor/disk-image.ts";
import { VIRTIO_BLK_BASE } from "../hypervisor/devices/virtio-blk.ts";
import { Machine } from "../hypervisor/machine.ts";
import { compareCopies } from "../mirror/copies.ts";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { fuzzParameters } from "./helpers/fuzz.ts";

// Spec constants (VIRTIO 1.2 §4.2.2, §2.7, §5.2), spelled out independently of the device.
const REG = { status: 0x70, featuresSel: 0x24, features: 0x20, queueSel: 0x30, queueNum: 0x38, queueReady: 0x44, notify: 0x50, interruptStatus: 0x60, descLow: 0x80, descHigh: 0x84, driverLow: 0x90, driverHigh: 0x94, deviceLow: 0xa0, deviceHigh: 0xa4 } as const;
const ACKNOWLEDGE = 1, DRIVER = 2, DRIVER_OK = 4, FEATURES_OK = 8, NEEDS_RESET = 0x40;
const NEXT = 1, WRITE = 2, INDIRECT = 4;
const F_INDIRECT = 1 << 28, F_EVENT_IDX = 1 << 29;
const T_IN = 0, T_OUT = 1;
const SECTOR = 512;
const SECTORS = 64;

const RAM = 1 << 20;
const RAM_END = RAM_BASE + RAM;
const DESC = RAM_BASE + 0x1000;
const AVAIL = RAM_BASE + 0x2000;
const USED = RAM_BASE + 0x3000;
const BUFFERS = RAM_BASE + 0x10000;
const AREA_END = RAM_BASE + 0x30000;

const diskByte = (offset: number) => (offset * 7 + 3) & 0xff;

interface Descriptor {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

/** A well-formed request: header, data, status, as descriptors `first`, `first + 1`, ... */
function request(first: number, type: number, sector: number, sectors: number, slot: number): { descriptors: Descriptor[]; header: Uint8Array } {
  const base = BigInt(BUFFERS + slot * 0x4000);
  const header = new Uint8Array(16);
  new DataView(header.buffer).setUint32(0, type, true);
  new DataView(header.buffer).setBigUint64(8, BigInt(sector), true);
  const descriptors: Descriptor[] = [{ addr: base, len: 16, flags: NEXT, next: first + 1 }];
  if (sectors > 0) descriptors.push({ addr: base + 0x100n, len: sectors * SECTOR, flags: NEXT | (type === T_IN ? WRITE : 0), next: first + 2 });
  descriptors.push({ addr: base + 0x3f00n, len: 1, flags: WRITE, next: 0 });
  return { descriptors, header };
}

const anywhere = fc.oneof(
  fc.constantFrom(0n, BigInt(RAM_BASE) - 16n, BigInt(RAM_END) - 16n, BigInt(RAM_END) - 1n, BigInt(RAM_END), BigInt(VIRTIO_BLK_BASE), BigInt(VIRTIO_BLK_BASE + 0x50), BigInt(DESC), BigInt(USED), 0x1_0000_0000n + BigInt(RAM_BASE), 2n ** 53n, 2n ** 64n - 16n),
  fc.integer({ min: BUFFERS, max: AREA_END - 1 }).map(BigInt),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const length = fc.oneof(fc.constantFrom(0, 1, 15, 16, 512, 4096, RAM, 0x7fff_ffff, 0xffff_ffff), fc.nat({ max: 0xffff_ffff }));
const descriptor: fc.Arbitrary<Descriptor> = fc.record({
  addr: anywhere,
  len: length,
  flags: fc.oneof(fc.constantFrom(0, NEXT, WRITE, NEXT | WRITE, INDIRECT, INDIRECT | NEXT, INDIRECT | WRITE), fc.nat({ max: 0xffff })),
  next: fc.oneof(fc.nat({ max: 8 }), fc.constantFrom(255, 256, 0xffff), fc.nat({ max: 0xffff })),
});
/** Overwrite one field of one descriptor of a well-formed chain. */
const mutation = fc.record({ index: fc.nat({ max: 15 }), field: fc.constantFrom("addr", "len", "flags", "next"), value: descriptor });

/** `arbitrary` in `weight` cases of 4, else `otherwise` (a well-formed part of the scenario). */
function sometimes<T, U>(arbitrary: fc.Arbitrary<T>, weight: number, otherwise: U): fc.Arbitrary<T | U> {
  return fc.oneof({ weight, arbitrary }, { weight: 4 - weight, arbitrary: fc.constant(otherwise) });
}

const scenario = fc.record({
  features: fc.constantFrom(0, F_INDIRECT, F_EVENT_IDX, F_INDIRECT | F_EVENT_IDX),
  queueNum: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(8, 16, 256) }, { weight: 1, arbitrary: fc.constantFrom(0, 3, 257, 512, 0xffff) }),
  rings: fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.tuple(anywhere, anywhere, anywhere) }),
  requests: fc.array(fc.record({ type: fc.oneof(fc.constantFrom(T_IN, T_IN, T_OUT, 4, 8), fc.nat({ max: 0xffff_ffff })), sector: fc.oneof(fc.nat({ max: SECTORS }), fc.nat()), sectors: fc.nat({ max: 8 }) }), { minLength: 1, maxLength: 3 }),
  /** Replace the well-formed table with random descriptors. */
  random: sometimes(fc.array(descriptor, { minLength: 1, maxLength: 10 }), 1, undefined),
  mutations: sometimes(fc.array(mutation, { minLength: 1, maxLength: 3 }), 1, []),
  heads: sometimes(fc.array(fc.oneof(fc.nat({ max: 10 }), fc.nat({ max: 0xffff })), { minLength: 1, maxLength: 4 }), 1, undefined),
  availIdx: sometimes(fc.nat({ max: 0xffff }), 1, undefined),
});

test("the descriptor-chain walker: DEVICE_NEEDS_RESET with a reason, or every chain used correctly; never a throw", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kmv-fuzz-virtio-"));
  const path = join(dir, "disk.img");
  writeFileSync(path, Uint8Array.from({ length: SECTORS * SECTOR }, (_, i) => diskByte(i)));
  const disk = DiskImage.open(path);
  const errors: string[] = [];
  const machine = new Machine({ ramSize: RAM, harts: 1, copies: 2, disk, output: () => {}, onDeviceError: (m) => errors.push(m) });
  const device = machine.virtio!;
  const reg = (offset: number, value: number) => device.write(offset, 4, BigInt(value >>> 0));
  const word = (gpa: number, bytes: number) => {
    const b = machine.readRam(gpa, bytes);
    return b.reduceRight((v, x) => v * 256 + x, 0);
  };
  const rssBefore = process.memoryUsage().rss;
  let reset = 0;
  let used = 0;
  try {
    fc.assert(
      fc.property(scenario, (s) => {
        // The driver's side: a fresh device and rings, the §3.1 handshake, then the chains.
        reg(REG.status, 0);
        machine.writeRam(DESC, new Uint8Array(AREA_END - DESC));
        errors.length = 0;
        reg(REG.status, ACKNOWLEDGE | DRIVER);
        reg(REG.featuresSel, 0);
        reg(REG.features, s.features);
        reg(REG.featuresSel, 1);
        reg(REG.features, 1); // VERSION_1
        reg(REG.status, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        reg(REG.queueSel, 0);
        reg(REG.queueNum, s.queueNum);
        const [desc, avail, usedRing] = s.rings ?? [BigInt(DESC), BigInt(AVAIL), BigInt(USED)];
        for (const [low, high, value] of [[REG.descLow, REG.descHigh, desc], [REG.driverLow, REG.driverHigh, avail], [REG.deviceLow, REG.deviceHigh, usedRing]] as const) {
          reg(low, Number(value & 0xffff_ffffn));
          reg(high, Number(value >> 32n));
        }
        reg(REG.queueReady, 1);
        reg(REG.status, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);

        const table: Descriptor[] = [];
        const wellFormed: { head: number; type: number; sector: number; sectors: number; slot: number }[] = [];
        s.requests.forEach(({ type, sector, sectors }, slot) => {
          const r = request(table.length, type, sector, sectors, slot);
          machine.writeRam(BUFFERS + slot * 0x4000, r.header);
          wellFormed.push({ head: table.length, type, sector, sectors, slot });
          table.push(...r.descriptors);
        });
        let pristine = s.random === undefined && s.mutations.length === 0 && s.heads === undefined && s.availIdx === undefined && s.rings === undefined;
        const descriptors = s.random ?? table;
        for (const m of s.mutations) if (m.index < descriptors.length) descriptors[m.index] = { ...descriptors[m.index]!, [m.field]: m.value[m.field] };
        descriptors.forEach((d, i) => {
          const bytes = new Uint8Array(16);
          const view = new DataView(bytes.buffer);
          view.setBigUint64(0, d.addr, true);
          view.setUint32(8, d.len >>> 0, true);
          view.setUint16(12, d.flags & 0xffff, true);
          view.setUint16(14, d.next & 0xffff, true);
          if (DESC + 16 * i < AVAIL) machine.writeRam(DESC + 16 * i, bytes);
        });
        const heads = s.heads ?? wellFormed.map((r) => r.head);
        const availIdx = s.availIdx ?? heads.length;
        const ring = new Uint8Array(4 + 2 * heads.length);
        const rv = new DataView(ring.buffer);
        rv.setUint16(2, availIdx & 0xffff, true);
        heads.forEach((h, i) => rv.setUint16(4 + 2 * i, h & 0xffff, true));
        machine.writeRam(AVAIL, ring);
        pristine &&= s.queueNum > 0 && s.queueNum <= 256 && (s.queueNum & (s.queueNum - 1)) === 0 && table.length <= s.queueNum;

        // A queue refused at QueueReady (before DRIVER_OK) raises no interrupt, as in QEMU.
        const resetBeforeNotify = (Number(device.read(REG.status, 4)) & NEEDS_RESET) !== 0;
        const started = performance.now();
        reg(REG.notify, 0); // must return, whatever the rings hold
        if (performance.now() - started > 2000) throw new Error("QueueNotify took more than 2 s");

        const status = Number(device.read(REG.status, 4));
        if (status & NEEDS_RESET) {
          reset++;
          if (!device.error || errors.length === 0) throw new Error("DEVICE_NEEDS_RESET without a reason");
          if (!resetBeforeNotify && (Number(device.read(REG.interruptStatus, 4)) & 2) === 0) throw new Error("no configuration-change interrupt");
          if (pristine) throw new Error(`a well-formed request was refused: ${device.error}`);
        } else {
          if (s.rings !== undefined) return; // rings elsewhere (their queue may be idle): nothing more to read here
          const usedIdx = word(USED + 2, 2);
          if (usedIdx !== (availIdx & 0xffff)) throw new Error(`used index ${usedIdx}, ${availIdx & 0xffff} chains offered`);
          used += usedIdx;
          for (let i = 0; i < usedIdx; i++) {
            if (word(USED + 4 + 8 * i, 4) !== (heads[i]! & 0xffff)) throw new Error(`used entry ${i} names another head`);
          }
          if (pristine) {
            for (const r of wellFormed) {
              const blkStatus = machine.readRam(BUFFERS + r.slot * 0x4000 + 0x3f00, 1)[0]!;
              const fits = r.sector + r.sectors <= SECTORS;
              if (r.type === T_IN && fits) {
                if (blkStatus !== 0) throw new Error(`a read within the disk failed with status ${blkStatus}`);
                const data = machine.readRam(BUFFERS + r.slot * 0x4000 + 0x100, r.sectors * SECTOR);
                // Against the image as it is now: earlier cases' writes changed it.
                const onDisk = disk.readBytes(r.sector * SECTOR, r.sectors * SECTOR);
                if (!data.every((b, k) => b === onDisk[k])) throw new Error("a read did not carry the disk's bytes");
              }
              if (r.type === T_OUT && fits && r.sectors > 0) {
                if (blkStatus !== 0) throw new Error(`a write within the disk failed with status ${blkStatus}`);
                const onDisk = disk.readBytes(r.sector * SECTOR, r.sectors * SECTOR);
                const data = machine.readRam(BUFFERS + r.slot * 0x4000 + 0x100, r.sectors * SECTOR);
                if (!data.every((b, k) => b === onDisk[k])) throw new Error("a write did not reach the disk");
              }
              if (blkStatus > 2) throw new Error(`status byte ${blkStatus}`);
            }
          }
        }
        const split = compareCopies(machine.memory.buffer, machine.layout, machine.physicalMap);
        if (split.length > 0) throw new Error(`a device write missed the mirror: ${JSON.stringify(split[0])}`);
      }),
      fuzzParameters(),
    );
  } finally {
    disk.close();
    rmSync(dir, { recursive: true, force: true });
  }
  t.log(`${reset} needed reset, ${used} chains used`);
  t.true(reset > 0 && used > 0);
  t.true(process.memoryUsage().rss - rssBefore < 256 * 2 ** 20, "memory stays flat");
});
