/**
 * virtio-blk over virtio-mmio (modern): a small driver written here from the VIRTIO
 * spec (its own register constants, not the device's) does the §3.1 handshake and
 * submits requests through split rings in a fake guest RAM, while the disk is a real
 * temporary image file.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DiskImage } from '../hypervisor/disk-image.ts';
import { DmaError, type DmaMemory } from '../shared-mem/access.ts';
import {
  LinearDmaMemory,
  VIRTIO_BLK_BASE,
  VIRTIO_BLK_IRQ,
  VIRTIO_BLK_SIZE,
  VirtioBlock,
} from '../hypervisor/devices/virtio-blk.ts';

// ---- Spec constants, spelled out independently of the device ----
const R = {
  magic: 0x000,
  version: 0x004,
  deviceId: 0x008,
  vendorId: 0x00c,
  deviceFeatures: 0x010,
  deviceFeaturesSel: 0x014,
  driverFeatures: 0x020,
  driverFeaturesSel: 0x024,
  queueSel: 0x030,
  queueNumMax: 0x034,
  queueNum: 0x038,
  queueReady: 0x044,
  queueNotify: 0x050,
  interruptStatus: 0x060,
  interruptAck: 0x064,
  status: 0x070,
  queueDescLow: 0x080,
  queueDescHigh: 0x084,
  queueDriverLow: 0x090,
  queueDriverHigh: 0x094,
  queueDeviceLow: 0x0a0,
  queueDeviceHigh: 0x0a4,
  configGeneration: 0x0fc,
  config: 0x100,
} as const;
const S_ACKNOWLEDGE = 1;
const S_DRIVER = 2;
const S_DRIVER_OK = 4;
const S_FEATURES_OK = 8;
const S_NEEDS_RESET = 0x40;
const F_SEG_MAX = 1n << 2n;
const F_RO = 1n << 5n;
const F_BLK_SIZE = 1n << 6n;
const F_FLUSH = 1n << 9n;
const F_INDIRECT = 1n << 28n;
const F_EVENT_IDX = 1n << 29n;
const F_VERSION_1 = 1n << 32n;
const D_NEXT = 1;
const D_WRITE = 2;
const D_INDIRECT = 4;
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const ST_OK = 0;
const ST_IOERR = 1;
const ST_UNSUPP = 2;

const RAM_BASE = 0x8000_0000;
const RAM_SIZE = 1 << 20;
const DESC = RAM_BASE + 0x1000;
const AVAIL = RAM_BASE + 0x2000;
const USED = RAM_BASE + 0x3000;
const INDIRECT_TABLE = RAM_BASE + 0x4000;
const HEADER = RAM_BASE + 0x5000;
const STATUS = RAM_BASE + 0x6000;
const DATA = RAM_BASE + 0x10000;
const SECTORS = 64;

/** Guest RAM as a plain ArrayBuffer; counts the device's accesses. */
class FakeDma implements DmaMemory {
  readonly bytes = new Uint8Array(new ArrayBuffer(RAM_SIZE));
  readonly view = new DataView(this.bytes.buffer);
  deviceWrites = 0;
  private off(gpa: number, length: number): number {
    if (gpa < RAM_BASE || gpa + length > RAM_BASE + RAM_SIZE) throw new DmaError(gpa, length);
    return gpa - RAM_BASE;
  }
  read(gpa: number, length: number): Uint8Array {
    const o = this.off(gpa, length);
    return this.bytes.slice(o, o + length);
  }
  write(gpa: number, data: Uint8Array): void {
    this.deviceWrites++;
    this.bytes.set(data, this.off(gpa, data.length));
  }
  readU16(gpa: number): number {
    return this.view.getUint16(this.off(gpa, 2), true);
  }
  readU32(gpa: number): number {
    return this.view.getUint32(this.off(gpa, 4), true);
  }
  readU64(gpa: number): bigint {
    return this.view.getBigUint64(this.off(gpa, 8), true);
  }
  writeU16(gpa: number, value: number): void {
    this.deviceWrites++;
    this.view.setUint16(this.off(gpa, 2), value, true);
  }
  writeU32(gpa: number, value: number): void {
    this.deviceWrites++;
    this.view.setUint32(this.off(gpa, 4), value, true);
  }
  // Driver-side helpers (not counted as device writes).
  set16(gpa: number, v: number): void {
    this.view.setUint16(gpa - RAM_BASE, v, true);
  }
  set32(gpa: number, v: number): void {
    this.view.setUint32(gpa - RAM_BASE, v, true);
  }
  set64(gpa: number, v: bigint): void {
    this.view.setBigUint64(gpa - RAM_BASE, v, true);
  }
  get16(gpa: number): number {
    return this.view.getUint16(gpa - RAM_BASE, true);
  }
  get32(gpa: number): number {
    return this.view.getUint32(gpa - RAM_BASE, true);
  }
  get8(gpa: number): number {
    return this.bytes[gpa - RAM_BASE]!;
  }
  fill(gpa: number, data: Uint8Array): void {
    this.bytes.set(data, gpa - RAM_BASE);
  }
  slice(gpa: number, length: number): Uint8Array {
    return this.bytes.slice(gpa - RAM_BASE, gpa - RAM_BASE + length);
  }
}

interface Buf {
  addr: number;
  len: number;
  write?: boolean;
}

/** A minimal virtio-mmio block driver. */
class Driver {
  readonly mem = new FakeDma();
  /** The line's changes of level, and every signal the device gave (QEMU signals each change of status). */
  readonly irqEdges: boolean[] = [];
  readonly irqSignals: boolean[] = [];
  private irqLevel = false;
  readonly errors: string[] = [];
  readonly dev: VirtioBlock;
  availIdx = 0;
  lastUsed = 0;
  nextDesc = 0;

  readonly num: number;

  constructor(
    readonly disk: DiskImage,
    options: { num?: number; serial?: string; memory?: (ram: FakeDma) => DmaMemory } = {},
  ) {
    this.num = options.num ?? 16;
    this.dev = new VirtioBlock({
      disk,
      memory: options.memory ? options.memory(this.mem) : this.mem,
      irq: (level) => {
        this.irqSignals.push(level);
        if (level !== this.irqLevel) this.irqEdges.push(level);
        this.irqLevel = level;
      },
      onError: (m) => this.errors.push(m),
      ...('serial' in options ? { serial: options.serial } : { serial: 'kmemvisor-test-serial-too-long' }),
    });
  }

  r32(off: number): number {
    return Number(this.dev.read(off, 4));
  }
  w32(off: number, v: number): void {
    this.dev.write(off, 4, BigInt(v >>> 0));
  }
  deviceFeatures(): bigint {
    this.w32(R.deviceFeaturesSel, 0);
    const lo = BigInt(this.r32(R.deviceFeatures));
    this.w32(R.deviceFeaturesSel, 1);
    const hi = BigInt(this.r32(R.deviceFeatures));
    return (hi << 32n) | lo;
  }
  /** §3.1.1 initialisation; returns the status read back after FEATURES_OK. */
  init(want: bigint = F_VERSION_1 | F_INDIRECT | F_SEG_MAX | F_BLK_SIZE | F_FLUSH): number {
    this.w32(R.status, 0);
    this.w32(R.status, S_ACKNOWLEDGE);
    this.w32(R.status, S_ACKNOWLEDGE | S_DRIVER);
    // A real driver would accept want & offered; accepting `want` as is lets tests try bad sets.
    void this.deviceFeatures();
    const features = want;
    this.w32(R.driverFeaturesSel, 0);
    this.w32(R.driverFeatures, Number(features & 0xffff_ffffn));
    this.w32(R.driverFeaturesSel, 1);
    this.w32(R.driverFeatures, Number(features >> 32n));
    this.w32(R.status, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    const status = this.r32(R.status);
    if (!(status & S_FEATURES_OK)) return status;
    this.w32(R.queueSel, 0);
    if (this.r32(R.queueReady) !== 0) throw new Error('queue already live');
    if (this.r32(R.queueNumMax) < this.num) throw new Error('queue too small');
    this.w32(R.queueNum, this.num);
    this.w32(R.queueDescLow, DESC);
    this.w32(R.queueDescHigh, 0);
    this.w32(R.queueDriverLow, AVAIL);
    this.w32(R.queueDriverHigh, 0);
    this.w32(R.queueDeviceLow, USED);
    this.w32(R.queueDeviceHigh, 0);
    this.w32(R.queueReady, 1);
    this.w32(R.status, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    return this.r32(R.status);
  }
  writeDesc(table: number, i: number, addr: number | bigint, len: number, flags: number, next: number): void {
    const d = table + 16 * i;
    this.mem.set64(d, BigInt(addr));
    this.mem.set32(d + 8, len);
    this.mem.set16(d + 12, flags);
    this.mem.set16(d + 14, next);
  }
  /** Put a chain of direct descriptors in the ring; returns its head. */
  chain(bufs: Buf[]): number {
    const head = this.nextDesc;
    bufs.forEach((b, k) => {
      const i = (head + k) % this.num;
      const last = k === bufs.length - 1;
      this.writeDesc(DESC, i, b.addr, b.len, (b.write ? D_WRITE : 0) | (last ? 0 : D_NEXT), last ? 0 : (i + 1) % this.num);
    });
    this.nextDesc = (head + bufs.length) % this.num;
    return head;
  }
  /** One ring descriptor pointing at an indirect table holding `bufs`; returns its head. */
  indirect(bufs: Buf[], table = INDIRECT_TABLE): number {
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.writeDesc(table, k, b.addr, b.len, (b.write ? D_WRITE : 0) | (last ? 0 : D_NEXT), last ? 0 : k + 1);
    });
    const head = this.nextDesc;
    this.writeDesc(DESC, head, table, 16 * bufs.length, D_INDIRECT, 0);
    this.nextDesc = (head + 1) % this.num;
    return head;
  }
  /** Make `head` available (without notifying). */
  offer(head: number): void {
    this.mem.set16(AVAIL + 4 + 2 * (this.availIdx % this.num), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.set16(AVAIL + 2, this.availIdx);
  }
  notify(): void {
    this.w32(R.queueNotify, 0);
  }
  /** New used elements since the last call. */
  takeUsed(): Array<{ id: number; len: number }> {
    const out = [];
    const usedIdx = this.mem.get16(USED + 2);
    while (this.lastUsed !== usedIdx) {
      const e = USED + 4 + 8 * (this.lastUsed % this.num);
      out.push({ id: this.mem.get32(e), len: this.mem.get32(e + 4) });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
  header(type: number, sector: bigint | number, at = HEADER): Buf {
    this.mem.set32(at, type);
    this.mem.set32(at + 4, 0);
    this.mem.set64(at + 8, BigInt(sector));
    this.mem.fill(STATUS, Uint8Array.of(0xff));
    return { addr: at, len: 16 };
  }
  /** Submit a request as a 3-descriptor chain and notify; returns status and used len. */
  request(type: number, sector: number | bigint, data: Buf | undefined, useIndirect = false): { status: number; len: number; id: number } {
    const bufs = [this.header(type, sector)];
    if (data) bufs.push(data);
    bufs.push({ addr: STATUS, len: 1, write: true });
    const head = useIndirect ? this.indirect(bufs) : this.chain(bufs);
    this.offer(head);
    this.notify();
    const used = this.takeUsed();
    if (used.length !== 1 || used[0]!.id !== head) throw new Error(`expected one used element for ${head}, got ${JSON.stringify(used)}`);
    return { status: this.mem.get8(STATUS), len: used[0]!.len, id: head };
  }
  ack(): void {
    this.w32(R.interruptAck, this.r32(R.interruptStatus));
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kmemvisor-vblk-'));
let counter = 0;
const opened: DiskImage[] = [];

test.after.always(() => {
  for (const d of opened) d.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function pattern(sector: number, i: number): number {
  return (sector * 31 + i * 7 + 1) & 0xff;
}

function makeImage(options: { readOnly?: boolean } = {}): { file: string; disk: DiskImage } {
  const file = path.join(dir, `disk${counter++}.img`);
  const data = new Uint8Array(SECTORS * 512);
  for (let s = 0; s < SECTORS; s++) for (let i = 0; i < 512; i++) data[s * 512 + i] = pattern(s, i);
  fs.writeFileSync(file, data);
  const disk = DiskImage.open(file, options);
  opened.push(disk);
  return { file, disk };
}

function expectedSectors(first: number, count: number): Uint8Array {
  const out = new Uint8Array(count * 512);
  for (let s = 0; s < count; s++) for (let i = 0; i < 512; i++) out[s * 512 + i] = pattern(first + s, i);
  return out;
}

function ready(t: ExecutionContext, want?: bigint): Driver {
  const drv = new Driver(makeImage().disk);
  const status = drv.init(want);
  t.is(status, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
  return drv;
}

// ---- Identification, features, configuration ----

test('identification registers, features and configuration space', (t) => {
  const { disk } = makeImage();
  const drv = new Driver(disk);
  t.is(drv.dev.base, VIRTIO_BLK_BASE);
  t.is(VIRTIO_BLK_BASE, 0x1000_1000);
  t.is(drv.dev.size, VIRTIO_BLK_SIZE);
  t.is(VIRTIO_BLK_IRQ, 1);
  t.is(drv.r32(R.magic), 0x74726976);
  t.is(drv.r32(R.version), 2);
  t.is(drv.r32(R.deviceId), 2);
  t.is(drv.r32(R.vendorId), 0x554d4551);
  const f = drv.deviceFeatures();
  t.is(f, F_VERSION_1 | F_INDIRECT | F_EVENT_IDX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH);
  t.is(f & F_RO, 0n, 'a writable image is not offered as read-only');
  t.is(drv.dev.read(R.config, 8), BigInt(SECTORS), 'capacity in sectors');
  t.is(drv.r32(R.config), SECTORS);
  t.is(drv.r32(R.config + 4), 0);
  t.true(drv.r32(R.config + 12) >= 1, 'seg_max');
  t.is(drv.r32(R.config + 20), 512, 'blk_size');
  t.is(Number(drv.dev.read(R.config + 20, 2)), 512);
  t.is(Number(drv.dev.read(R.config + 21, 1)), 2);
  t.is(drv.r32(R.configGeneration), 0);
  t.is(drv.r32(R.queueNumMax), 256);
  drv.w32(R.queueSel, 1);
  t.is(drv.r32(R.queueNumMax), 0, 'only one queue');
  // Non-32-bit register accesses are ignored.
  t.is(drv.dev.read(R.magic, 2), 0n);
  t.is(drv.dev.read(R.magic, 1), 0n);
});

test('feature negotiation: unoffered bits refused; a driver writing only the low feature word accepted, as QEMU does', (t) => {
  const { disk } = makeImage();
  const drv = new Driver(disk);
  // xv6-riscv writes only DriverFeatures[31:0], so VERSION_1 (bit 32) stays unaccepted;
  // QEMU's modern transport accepts that, and so must we, or stock xv6 cannot boot.
  let status = drv.init(F_INDIRECT | F_BLK_SIZE);
  t.is(status & S_FEATURES_OK, S_FEATURES_OK);
  // Accepting a feature the device did not offer (RO on a writable disk) is refused.
  status = drv.init(F_VERSION_1 | F_RO);
  t.is(status & S_FEATURES_OK, 0);
  // With FEATURES_OK clear the queue is not served even if DRIVER_OK is forced.
  drv.w32(R.status, S_ACKNOWLEDGE | S_DRIVER | S_DRIVER_OK);
  status = drv.init(F_VERSION_1);
  t.is(status, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
  t.is(drv.r32(R.queueReady), 1);
  t.is(drv.r32(R.queueDescLow), DESC);
  t.is(drv.r32(R.queueDriverLow), AVAIL);
  t.is(drv.r32(R.queueDeviceLow), USED);
  // Features cannot change once FEATURES_OK is set.
  drv.w32(R.driverFeaturesSel, 0);
  drv.w32(R.driverFeatures, 0xffff_ffff);
  const r = drv.request(T_GET_ID, 0, { addr: DATA, len: 20, write: true });
  t.is(r.status, ST_OK);
});

test('request before DRIVER_OK is not served', (t) => {
  const { disk } = makeImage();
  const drv = new Driver(disk);
  drv.w32(R.status, S_ACKNOWLEDGE | S_DRIVER);
  drv.offer(drv.chain([drv.header(T_FLUSH, 0), { addr: STATUS, len: 1, write: true }]));
  drv.notify();
  t.deepEqual(drv.takeUsed(), []);
  t.is(drv.mem.deviceWrites, 0);
});

// ---- Data transfer ----

test('read sectors through a 3-descriptor chain; interrupt raised and acknowledged', (t) => {
  const drv = ready(t);
  const r = drv.request(T_IN, 5, { addr: DATA, len: 1024, write: true });
  t.is(r.status, ST_OK);
  t.is(r.len, 1024 + 1, 'used length = data + status byte');
  t.deepEqual(drv.mem.slice(DATA, 1024), expectedSectors(5, 2));
  t.is(drv.r32(R.interruptStatus), 1);
  t.true(drv.dev.irqLevel);
  t.deepEqual(drv.irqEdges, [true]);
  drv.w32(R.interruptAck, 1);
  t.is(drv.r32(R.interruptStatus), 0);
  t.false(drv.dev.irqLevel);
  t.deepEqual(drv.irqEdges, [true, false]);
});

test('write sectors through a 3-descriptor chain lands in the image file', (t) => {
  const { file, disk } = makeImage();
  const drv = new Driver(disk);
  drv.init();
  const data = new Uint8Array(1536).map((_, i) => (i * 13 + 5) & 0xff);
  drv.mem.fill(DATA, data);
  const r = drv.request(T_OUT, 10, { addr: DATA, len: data.length });
  t.is(r.status, ST_OK);
  t.is(r.len, 1, 'only the status byte was written');
  const onDisk = new Uint8Array(fs.readFileSync(file));
  t.deepEqual(onDisk.subarray(10 * 512, 13 * 512), data);
  t.deepEqual(onDisk.subarray(9 * 512, 10 * 512), expectedSectors(9, 1), 'neighbours untouched');
  t.deepEqual(onDisk.subarray(13 * 512, 14 * 512), expectedSectors(13, 1));
  // Read it back through the device.
  drv.mem.fill(DATA, new Uint8Array(1536));
  t.is(drv.request(T_IN, 10, { addr: DATA, len: 1536, write: true }).status, ST_OK);
  t.deepEqual(drv.mem.slice(DATA, 1536), data);
});

test('indirect descriptor tables, with data split over several buffers', (t) => {
  const { file, disk } = makeImage();
  const drv = new Driver(disk);
  drv.init();
  // Write 2 sectors from three odd-sized pieces, header split over two descriptors.
  const pieces = [
    { addr: DATA, len: 100 },
    { addr: DATA + 0x1000, len: 700 },
    { addr: DATA + 0x3000, len: 224 },
  ];
  const data = new Uint8Array(1024).map((_, i) => (i * 3 + 77) & 0xff);
  let pos = 0;
  for (const p of pieces) {
    drv.mem.fill(p.addr, data.subarray(pos, pos + p.len));
    pos += p.len;
  }
  drv.header(T_OUT, 20);
  let head = drv.indirect([
    { addr: HEADER, len: 8 },
    { addr: HEADER + 8, len: 8 },
    ...pieces,
    { addr: STATUS, len: 1, write: true },
  ]);
  drv.offer(head);
  drv.notify();
  let used = drv.takeUsed();
  t.deepEqual(used, [{ id: head, len: 1 }]);
  t.is(drv.mem.get8(STATUS), ST_OK);
  t.deepEqual(new Uint8Array(fs.readFileSync(file)).subarray(20 * 512, 22 * 512), data);

  // Read 3 sectors into pieces, the last of which also carries the status byte.
  drv.header(T_IN, 1);
  head = drv.indirect([
    { addr: HEADER, len: 16 },
    { addr: DATA + 0x8000, len: 1000, write: true },
    { addr: DATA + 0x9000, len: 537, write: true }, // 536 data bytes + status
  ]);
  drv.offer(head);
  drv.notify();
  used = drv.takeUsed();
  t.deepEqual(used, [{ id: head, len: 1537 }]);
  t.is(drv.mem.get8(DATA + 0x9000 + 536), ST_OK);
  const got = new Uint8Array(1536);
  got.set(drv.mem.slice(DATA + 0x8000, 1000), 0);
  got.set(drv.mem.slice(DATA + 0x9000, 536), 1000);
  t.deepEqual(got, expectedSectors(1, 3));

  // The plain helper form: a 3-entry indirect table.
  const r = drv.request(T_IN, 63, { addr: DATA, len: 512, write: true }, true);
  t.is(r.status, ST_OK);
  t.deepEqual(drv.mem.slice(DATA, 512), expectedSectors(63, 1));

  // The device ignores the WRITE flag on the descriptor that points at the table (§2.7.5.3.2).
  drv.header(T_IN, 2);
  head = drv.indirect([
    { addr: HEADER, len: 16 },
    { addr: DATA, len: 512, write: true },
    { addr: STATUS, len: 1, write: true },
  ]);
  drv.writeDesc(DESC, head, INDIRECT_TABLE, 48, D_INDIRECT | D_WRITE, 0);
  drv.offer(head);
  drv.notify();
  t.deepEqual(drv.takeUsed(), [{ id: head, len: 513 }]);
  t.deepEqual(drv.mem.slice(DATA, 512), expectedSectors(2, 1));
  t.is(drv.r32(R.status) & S_NEEDS_RESET, 0);
});

test('queue size and addresses are frozen while the queue is ready', (t) => {
  const drv = ready(t);
  drv.w32(R.queueNum, 0);
  drv.w32(R.queueDescLow, 0x1234);
  drv.w32(R.queueDescHigh, 0xffff_ffff);
  t.is(drv.r32(R.queueDescLow), DESC);
  t.is(drv.r32(R.queueDescHigh), 0);
  t.is(drv.request(T_IN, 4, { addr: DATA, len: 512, write: true }).status, ST_OK);
  t.deepEqual(drv.mem.slice(DATA, 512), expectedSectors(4, 1));
  // Once the queue is disabled it can be reprogrammed; a ring above 2^53 is outside RAM.
  drv.w32(R.queueReady, 0);
  t.is(drv.r32(R.queueReady), 0);
  drv.w32(R.queueDeviceHigh, 0xffff_ffff);
  t.is(drv.r32(R.queueDeviceHigh), 0xffff_ffff);
  drv.w32(R.queueReady, 1);
  drv.offer(drv.chain([drv.header(T_FLUSH, 0), { addr: STATUS, len: 1, write: true }]));
  t.notThrows(() => drv.notify());
  t.is(drv.r32(R.status) & S_NEEDS_RESET, S_NEEDS_RESET);
  t.regex(drv.dev.error ?? '', /outside guest RAM/);
});

test('several requests handled in one notification', (t) => {
  const drv = ready(t);
  const heads = [0, 1, 2].map((k) => {
    const hdr = HEADER + 32 * k;
    drv.mem.set32(hdr, T_IN);
    drv.mem.set64(hdr + 8, BigInt(k));
    return drv.chain([
      { addr: hdr, len: 16 },
      { addr: DATA + 512 * k, len: 512, write: true },
      { addr: STATUS + k, len: 1, write: true },
    ]);
  });
  for (const h of heads) drv.offer(h);
  drv.notify();
  t.deepEqual(
    drv.takeUsed(),
    heads.map((id) => ({ id, len: 513 })),
  );
  t.deepEqual(drv.mem.slice(DATA, 1536), expectedSectors(0, 3));
  t.deepEqual(drv.irqEdges, [true], 'one interrupt for the batch');
});

// ---- Other request types and errors ----

test('flush, GET_ID and unsupported types', (t) => {
  const drv = ready(t);
  let r = drv.request(T_FLUSH, 0, undefined);
  t.is(r.status, ST_OK);
  t.is(r.len, 1);

  r = drv.request(T_GET_ID, 0, { addr: DATA, len: 20, write: true });
  t.is(r.status, ST_OK);
  t.is(r.len, 21);
  t.is(new TextDecoder().decode(drv.mem.slice(DATA, 20)), 'kmemvisor-test-seria', 'serial cut to 20 bytes');

  drv.mem.fill(DATA, new Uint8Array(20).fill(0xee));
  r = drv.request(T_GET_ID, 0, { addr: DATA, len: 8, write: true });
  t.is(r.status, ST_OK);
  t.is(r.len, 9, 'a short buffer gets what fits');
  t.is(new TextDecoder().decode(drv.mem.slice(DATA, 8)), 'kmemviso');
  t.is(drv.mem.get8(DATA + 8), 0xee);

  for (const type of [2, 11, 13, 0x8000_0000]) {
    r = drv.request(type, 0, { addr: DATA, len: 512, write: true });
    t.is(r.status, ST_UNSUPP, `type ${type}`);
    t.is(r.len, 1);
  }
});

test('GET_ID pads a short serial with zeros; default serial is the file name', (t) => {
  const { file, disk } = makeImage();
  const drv = new Driver(disk, { serial: 'abc' });
  drv.init();
  drv.mem.fill(DATA, new Uint8Array(20).fill(0xee));
  t.is(drv.request(T_GET_ID, 0, { addr: DATA, len: 20, write: true }).status, ST_OK);
  t.deepEqual(drv.mem.slice(DATA, 20), Uint8Array.of(0x61, 0x62, 0x63, ...new Array<number>(17).fill(0)));

  const drv2 = new Driver(disk, { serial: undefined });
  drv2.init();
  t.is(drv2.request(T_GET_ID, 0, { addr: DATA, len: 20, write: true }).status, ST_OK);
  const name = path.basename(file);
  t.is(new TextDecoder().decode(drv2.mem.slice(DATA, name.length)), name);
});

test('I/O beyond the capacity or not in whole sectors is IOERR', (t) => {
  const { file, disk } = makeImage();
  const drv = new Driver(disk);
  drv.init();
  const before = fs.readFileSync(file);
  let r = drv.request(T_IN, SECTORS - 1, { addr: DATA, len: 1024, write: true });
  t.is(r.status, ST_IOERR);
  t.is(r.len, 1);
  r = drv.request(T_IN, SECTORS, { addr: DATA, len: 512, write: true });
  t.is(r.status, ST_IOERR);
  r = drv.request(T_IN, 0xffff_ffff_ffff_ffffn, { addr: DATA, len: 512, write: true });
  t.is(r.status, ST_IOERR);
  r = drv.request(T_OUT, SECTORS - 1, { addr: DATA, len: 1024 });
  t.is(r.status, ST_IOERR);
  r = drv.request(T_OUT, 0, { addr: DATA, len: 100 });
  t.is(r.status, ST_IOERR, 'partial sector');
  r = drv.request(T_IN, 0, { addr: DATA, len: 300, write: true });
  t.is(r.status, ST_IOERR, 'partial sector');
  t.deepEqual(fs.readFileSync(file), before, 'nothing written');
  // The last sector itself is fine.
  r = drv.request(T_IN, SECTORS - 1, { addr: DATA, len: 512, write: true });
  t.is(r.status, ST_OK);
  t.is(drv.r32(R.status) & S_NEEDS_RESET, 0);
});

test('read-only image: RO offered, writes fail with IOERR, reads work', (t) => {
  const { file, disk } = makeImage({ readOnly: true });
  const drv = new Driver(disk);
  t.is(drv.deviceFeatures() & F_RO, F_RO);
  t.is(drv.init(F_VERSION_1 | F_RO | F_FLUSH) & S_DRIVER_OK, S_DRIVER_OK);
  const before = fs.readFileSync(file);
  drv.mem.fill(DATA, new Uint8Array(512).fill(0x5a));
  let r = drv.request(T_OUT, 0, { addr: DATA, len: 512 });
  t.is(r.status, ST_IOERR);
  t.deepEqual(fs.readFileSync(file), before);
  r = drv.request(T_IN, 3, { addr: DATA, len: 512, write: true });
  t.is(r.status, ST_OK);
  t.deepEqual(drv.mem.slice(DATA, 512), expectedSectors(3, 1));
  t.is(drv.request(T_FLUSH, 0, undefined).status, ST_OK);
});

// ---- Notification suppression ----

test('VIRTQ_AVAIL_F_NO_INTERRUPT suppresses the interrupt without event idx', (t) => {
  const drv = ready(t);
  drv.mem.set16(AVAIL, 1); // NO_INTERRUPT
  t.is(drv.request(T_FLUSH, 0, undefined).status, ST_OK);
  t.is(drv.r32(R.interruptStatus), 0);
  t.deepEqual(drv.irqEdges, []);
  drv.mem.set16(AVAIL, 0);
  t.is(drv.request(T_FLUSH, 0, undefined).status, ST_OK);
  t.is(drv.r32(R.interruptStatus), 1);
  t.deepEqual(drv.irqEdges, [true]);
});

test('event idx: used_event suppresses interrupts, avail_event is published', (t) => {
  const num = 16;
  const drv = ready(t, F_VERSION_1 | F_EVENT_IDX | F_FLUSH);
  const usedEvent = AVAIL + 4 + 2 * num;
  const availEvent = USED + 4 + 8 * num;
  drv.mem.set16(AVAIL, 1); // NO_INTERRUPT must be ignored with event idx
  drv.mem.set16(usedEvent, 0); // interrupt after used entry 0
  t.is(drv.request(T_FLUSH, 0, undefined).status, ST_OK);
  t.is(drv.r32(R.interruptStatus), 1);
  t.is(drv.mem.get16(availEvent), 1, 'device asks to be notified for avail entry 1');
  drv.ack();
  t.deepEqual(drv.irqEdges, [true, false]);

  // Ask for an interrupt only once used entry 2 is written (the second request from now).
  drv.mem.set16(usedEvent, 2);
  t.is(drv.request(T_FLUSH, 0, undefined).status, ST_OK); // used idx 1 -> 2
  t.is(drv.r32(R.interruptStatus), 0, 'suppressed');
  t.deepEqual(drv.irqEdges, [true, false]);
  t.is(drv.mem.get16(availEvent), 2);
  t.is(drv.request(T_FLUSH, 0, undefined).status, ST_OK); // used idx 2 -> 3
  t.is(drv.r32(R.interruptStatus), 1, 'used_event reached');
  t.deepEqual(drv.irqEdges, [true, false, true]);
  drv.ack();

  // A batch that jumps over used_event still interrupts once.
  drv.mem.set16(usedEvent, 4);
  for (let k = 0; k < 3; k++) drv.offer(drv.chain([drv.header(T_FLUSH, 0), { addr: STATUS + k, len: 1, write: true }]));
  drv.notify(); // used idx 3 -> 6
  t.is(drv.takeUsed().length, 3);
  t.is(drv.r32(R.interruptStatus), 1);
  t.is(drv.mem.get16(availEvent), 6);
});

// ---- Malformed rings ----

function expectNeedsReset(t: ExecutionContext, drv: Driver, pattern: RegExp): void {
  t.notThrows(() => drv.notify());
  t.is(drv.r32(R.status) & S_NEEDS_RESET, S_NEEDS_RESET);
  t.is(drv.r32(R.interruptStatus) & 2, 2, 'configuration-change interrupt');
  t.true(drv.dev.irqLevel);
  t.regex(drv.dev.error ?? '', pattern);
  t.is(drv.errors.length, 1);
  t.deepEqual(drv.takeUsed(), [], 'nothing completed');
}

test('a descriptor loop sets DEVICE_NEEDS_RESET without throwing; reset recovers', (t) => {
  const drv = ready(t);
  drv.header(T_OUT, 0);
  drv.writeDesc(DESC, 0, HEADER, 16, D_NEXT, 1);
  drv.writeDesc(DESC, 1, DATA, 512, D_NEXT, 0); // back to 0
  drv.offer(0);
  expectNeedsReset(t, drv, /loop/);
  // The queue is dead until reset, even for well-formed requests.
  drv.nextDesc = 2;
  drv.offer(drv.chain([drv.header(T_FLUSH, 0), { addr: STATUS, len: 1, write: true }]));
  drv.notify();
  t.deepEqual(drv.takeUsed(), []);
  // The driver cannot clear NEEDS_RESET by writing the status...
  drv.w32(R.status, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
  t.is(drv.r32(R.status) & S_NEEDS_RESET, S_NEEDS_RESET);
  // ...only a reset does, and the line drops.
  drv.w32(R.status, 0);
  t.is(drv.r32(R.status), 0);
  t.is(drv.r32(R.interruptStatus), 0);
  t.false(drv.dev.irqLevel);
  t.is(drv.r32(R.queueReady), 0);
  t.is(drv.dev.error, undefined);
  drv.availIdx = 0;
  drv.lastUsed = 0;
  drv.nextDesc = 0;
  drv.mem.set16(AVAIL + 2, 0);
  drv.mem.set16(USED + 2, 0);
  t.is(drv.init() & S_DRIVER_OK, S_DRIVER_OK);
  t.is(drv.request(T_IN, 7, { addr: DATA, len: 512, write: true }).status, ST_OK);
  t.deepEqual(drv.mem.slice(DATA, 512), expectedSectors(7, 1));
});

test('malformed requests: each sets DEVICE_NEEDS_RESET', (t) => {
  const cases: Array<[string, (drv: Driver) => void, RegExp]> = [
    ['head index out of range', (d) => d.offer(40), /index 40 out of range/],
    [
      'next index out of range',
      (d) => {
        d.writeDesc(DESC, 0, HEADER, 16, D_NEXT, 99);
        d.offer(0);
      },
      /index 99 out of range/,
    ],
    [
      'loop inside an indirect table',
      (d) => {
        d.writeDesc(INDIRECT_TABLE, 0, HEADER, 16, D_NEXT, 1);
        d.writeDesc(INDIRECT_TABLE, 1, HEADER, 16, D_NEXT, 0);
        d.writeDesc(DESC, 0, INDIRECT_TABLE, 32, D_INDIRECT, 0);
        d.offer(0);
      },
      /loop/,
    ],
    [
      'nested indirect table',
      (d) => {
        d.writeDesc(INDIRECT_TABLE, 0, INDIRECT_TABLE + 0x100, 16, D_INDIRECT, 0);
        d.writeDesc(DESC, 0, INDIRECT_TABLE, 16, D_INDIRECT, 0);
        d.offer(0);
      },
      /indirect descriptor inside/,
    ],
    [
      'indirect table length not a multiple of 16',
      (d) => {
        d.writeDesc(DESC, 0, INDIRECT_TABLE, 20, D_INDIRECT, 0);
        d.offer(0);
      },
      /multiple of 16/,
    ],
    [
      'indirect table outside RAM',
      (d) => {
        d.writeDesc(DESC, 0, 0x1000, 48, D_INDIRECT, 0);
        d.offer(0);
      },
      /outside guest RAM/,
    ],
    [
      'data buffer outside RAM',
      (d) => {
        d.offer(d.chain([d.header(T_IN, 0), { addr: RAM_BASE + RAM_SIZE - 256, len: 512, write: true }, { addr: STATUS, len: 1, write: true }]));
      },
      /outside guest RAM/,
    ],
    [
      'buffer above 2^64',
      (d) => {
        d.writeDesc(DESC, 0, HEADER, 16, D_NEXT, 1);
        d.writeDesc(DESC, 1, 0xffff_ffff_ffff_ff00n, 512, D_WRITE, 0);
        d.offer(0);
      },
      /wraps/,
    ],
    [
      'readable after writable',
      (d) => {
        d.offer(d.chain([d.header(T_OUT, 0), { addr: STATUS, len: 1, write: true }, { addr: DATA, len: 512 }]));
      },
      /readable buffer after a device-writable/,
    ],
    ['no status byte', (d) => d.offer(d.chain([d.header(T_FLUSH, 0)])), /no status byte/],
    [
      'short header',
      (d) => {
        d.header(T_FLUSH, 0);
        d.offer(d.chain([{ addr: HEADER, len: 8 }, { addr: STATUS, len: 1, write: true }]));
      },
      /header too short/,
    ],
    [
      'available index far ahead',
      (d) => {
        d.mem.set16(AVAIL + 2, 100);
      },
      /available index moved 100/,
    ],
  ];
  for (const [name, setup, pattern] of cases) {
    const drv = ready(t);
    setup(drv);
    const before = drv.mem.deviceWrites;
    t.notThrows(() => drv.notify(), name);
    t.is(drv.r32(R.status) & S_NEEDS_RESET, S_NEEDS_RESET, name);
    t.is(drv.r32(R.interruptStatus) & 2, 2, name);
    t.regex(drv.dev.error ?? '', pattern, name);
    t.deepEqual(drv.takeUsed(), [], name);
    t.true(drv.mem.deviceWrites - before <= 1, `${name}: at most avail_event/partial data written`);
  }
});

test('invalid queue size at QueueReady sets DEVICE_NEEDS_RESET', (t) => {
  const { disk } = makeImage();
  const drv = new Driver(disk, { num: 12 });
  drv.init();
  t.is(drv.r32(R.status) & S_NEEDS_RESET, S_NEEDS_RESET);
  t.is(drv.r32(R.queueReady), 0);
  t.regex(drv.dev.error ?? '', /queue size 12/);
});

test('DmaError from memory is contained; other errors propagate', (t) => {
  const { disk } = makeImage();
  class PoisonError extends Error {}
  let poison = false;
  let mem!: FakeDma;
  const memory: DmaMemory = {
    read: (a, n) => mem.read(a, n),
    write: (a, d) => {
      if (poison) throw new PoisonError('machine check');
      mem.write(a, d);
    },
    readU16: (a) => mem.readU16(a),
    readU32: (a) => mem.readU32(a),
    readU64: (a) => mem.readU64(a),
    writeU16: (a, v) => mem.writeU16(a, v),
    writeU32: (a, v) => mem.writeU32(a, v),
  };
  const drv = new Driver(disk, { memory: (ram) => ((mem = ram), memory) });
  drv.init();
  poison = true;
  drv.offer(drv.chain([drv.header(T_IN, 0), { addr: DATA, len: 512, write: true }, { addr: STATUS, len: 1, write: true }]));
  t.throws(() => drv.notify(), { instanceOf: PoisonError });
});

test('LinearDmaMemory bounds and little-endian accessors', (t) => {
  const bytes = new Uint8Array(64);
  const m = new LinearDmaMemory(bytes, 0x8000_0000);
  m.writeU32(0x8000_0000, 0x11223344);
  t.is(bytes[0], 0x44);
  t.is(m.readU16(0x8000_0002), 0x1122);
  m.writeU16(0x8000_003e, 0xbeef);
  t.is(m.readU64(0x8000_0038), 0xbeef_0000_0000_0000n);
  m.write(0x8000_0010, Uint8Array.of(1, 2, 3));
  t.deepEqual(m.read(0x8000_0010, 3), Uint8Array.of(1, 2, 3));
  t.throws(() => m.readU32(0x8000_003e), { instanceOf: DmaError });
  t.throws(() => m.read(0x7fff_ffff, 2), { instanceOf: DmaError });
  t.throws(() => m.write(0x8000_0040, Uint8Array.of(1)), { instanceOf: DmaError });
});
