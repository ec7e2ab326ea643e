/**
 * virtio block device on the virtio-mmio transport, modern interface (Version 2), as
 * QEMU's virt board has it at 0x1000_1000 (window 0x1000, PLIC source 1) with
 * `force-legacy=false`. Follows VIRTIO 1.1/1.2: §4.2 (MMIO transport), §2.7 (split
 * virtqueues, indirect descriptors, event index) and §5.2 (block device).
 *
 * - One request queue (queue 0), QueueNumMax 256, split ring only.
 * - Offered features: VERSION_1, INDIRECT_DESC, EVENT_IDX, SEG_MAX, BLK_SIZE, FLUSH,
 *   and RO when the image was opened read-only. FEATURES_OK stays clear when the driver
 *   accepts a feature that was not offered. A driver that leaves VERSION_1 out is still
 *   accepted, as QEMU accepts it: xv6-riscv, for one, writes only the low 32 feature bits
 *   and then drives the device by the modern rules.
 * - Requests run synchronously inside the QueueNotify write: by the time the guest's
 *   store retires, the used ring is updated and the interrupt raised, as with QEMU's
 *   synchronous block backends.
 * - Guest memory is reached ONLY through the DmaMemory passed in, so the hypervisor can
 *   mirror DMA writes and check poisoned frames there.
 * - A driver error (descriptor index out of range, a loop, a bad indirect table, a
 *   buffer outside RAM, a missing header or status byte, readable after writable
 *   buffers) never throws out of the device: it sets DEVICE_NEEDS_RESET (0x40), raises a
 *   configuration-change interrupt (as QEMU's virtio_error does for modern devices) and
 *   ignores the queue until the driver resets the device.
 * - Register accesses other than 32-bit are ignored (reads give 0), as in QEMU; the
 *   configuration space at 0x100 accepts 8-, 16-, 32- and 64-bit reads.
 */
import * as path from 'node:path';
import { DiskImageError } from '../disk-image.ts';
import type { DiskImage } from '../disk-image.ts';
import { Mutex } from '../../sync/mutex.ts';
import type { AccessWidth, MmioDevice } from './device.ts';
import { DmaError, type DmaMemory } from '../../shared-mem/access.ts';

export const VIRTIO_BLK_BASE = 0x1000_1000;
export const VIRTIO_BLK_SIZE = 0x1000;
/** The device's interrupt source on the virt board's PLIC. */
export const VIRTIO_BLK_IRQ = 1;
/** Largest queue the device accepts (QueueNumMax), QEMU's default for virtio-blk. */
export const VIRTIO_BLK_QUEUE_NUM_MAX = 256;

// ---- Guest memory seen by the device ----

/**
 * DmaMemory over one contiguous byte array holding RAM that starts at `base` (for
 * example a test's fake RAM). The machine itself uses mirror/dma.ts, which goes through
 * the p2m and reaches every mirror copy.
 */
export class LinearDmaMemory implements DmaMemory {
  private readonly view: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly base: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private offset(gpa: number, length: number): number {
    const off = gpa - this.base;
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || length < 0 || off < 0 || off + length > this.bytes.length) {
      throw new DmaError(gpa, length);
    }
    return off;
  }
  read(gpa: number, length: number): Uint8Array {
    const off = this.offset(gpa, length);
    return this.bytes.slice(off, off + length);
  }
  write(gpa: number, data: Uint8Array): void {
    this.bytes.set(data, this.offset(gpa, data.length));
  }
  readU16(gpa: number): number {
    return this.view.getUint16(this.offset(gpa, 2), true);
  }
  readU32(gpa: number): number {
    return this.view.getUint32(this.offset(gpa, 4), true);
  }
  readU64(gpa: number): bigint {
    return this.view.getBigUint64(this.offset(gpa, 8), true);
  }
  writeU16(gpa: number, value: number): void {
    this.view.setUint16(this.offset(gpa, 2), value, true);
  }
  writeU32(gpa: number, value: number): void {
    this.view.setUint32(this.offset(gpa, 4), value >>> 0, true);
  }
}

// ---- virtio-mmio registers (VIRTIO 1.2 §4.2.2) ----
const REG_MAGIC = 0x000;
const REG_VERSION = 0x004;
const REG_DEVICE_ID = 0x008;
const REG_VENDOR_ID = 0x00c;
const REG_DEVICE_FEATURES = 0x010;
const REG_DEVICE_FEATURES_SEL = 0x014;
const REG_DRIVER_FEATURES = 0x020;
const REG_DRIVER_FEATURES_SEL = 0x024;
const REG_QUEUE_SEL = 0x030;
const REG_QUEUE_NUM_MAX = 0x034;
const REG_QUEUE_NUM = 0x038;
const REG_QUEUE_READY = 0x044;
const REG_QUEUE_NOTIFY = 0x050;
const REG_INTERRUPT_STATUS = 0x060;
const REG_INTERRUPT_ACK = 0x064;
/** The registers a driver touches per request, which harts reach without the main thread. */
export const VIRTIO_MMIO_QUEUE_NOTIFY = REG_QUEUE_NOTIFY;
export const VIRTIO_MMIO_INTERRUPT_STATUS = REG_INTERRUPT_STATUS;
export const VIRTIO_MMIO_INTERRUPT_ACK = REG_INTERRUPT_ACK;
const REG_STATUS = 0x070;
const REG_QUEUE_DESC_LOW = 0x080;
const REG_QUEUE_DESC_HIGH = 0x084;
const REG_QUEUE_DRIVER_LOW = 0x090;
const REG_QUEUE_DRIVER_HIGH = 0x094;
const REG_QUEUE_DEVICE_LOW = 0x0a0;
const REG_QUEUE_DEVICE_HIGH = 0x0a4;
const REG_SHM_SEL = 0x0ac;
const REG_SHM_LEN_LOW = 0x0b0;
const REG_SHM_LEN_HIGH = 0x0b4;
const REG_SHM_BASE_LOW = 0x0b8;
const REG_SHM_BASE_HIGH = 0x0bc;
const REG_CONFIG_GENERATION = 0x0fc;
const REG_CONFIG = 0x100;

const MAGIC = 0x7472_6976; // "virt"
const VERSION_MODERN = 2;
const DEVICE_ID_BLOCK = 2;
const VENDOR_ID_QEMU = 0x554d_4551; // "QEMU"

// Device status bits (§2.1).
const STATUS_DRIVER_OK = 0x04;
const STATUS_FEATURES_OK = 0x08;
const STATUS_NEEDS_RESET = 0x40;
const STATUS_FAILED = 0x80;

// InterruptStatus bits.
const INT_USED_BUFFER = 0x1;
const INT_CONFIG_CHANGE = 0x2;

// Feature bits.
const F_BLK_SEG_MAX = 2;
const F_BLK_RO = 5;
const F_BLK_BLK_SIZE = 6;
const F_BLK_FLUSH = 9;
const F_RING_INDIRECT_DESC = 28;
const F_RING_EVENT_IDX = 29;
const F_VERSION_1 = 32;

// Split virtqueue layout (§2.7).
const DESC_SIZE = 16;
const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;
const AVAIL_F_NO_INTERRUPT = 1;

// Block requests (§5.2.6).
const BLK_T_IN = 0;
const BLK_T_OUT = 1;
const BLK_T_FLUSH = 4;
const BLK_T_GET_ID = 8;
const BLK_S_OK = 0;
const BLK_S_IOERR = 1;
const BLK_S_UNSUPP = 2;
const BLK_HEADER_SIZE = 16;
const BLK_ID_BYTES = 20;
const SECTOR = 512;
/** Largest piece of a request moved through host memory at once. */
const CHUNK = 1 << 20;

// Configuration space layout (struct virtio_blk_config).
const CFG_CAPACITY = 0;
const CFG_SEG_MAX = 12;
const CFG_BLK_SIZE = 20;
/** Through num_queues and the discard / write-zeroes fields, zero when not offered. */
const CFG_SIZE = 0x3c;

const U64_LIMIT = 1n << 64n;

/** A driver error in the rings; turns into DEVICE_NEEDS_RESET. */
class VirtqueueError extends Error {
  override readonly name = 'VirtqueueError';
}

interface Segment {
  addr: number;
  len: number;
}

interface Queue {
  num: number;
  ready: boolean;
  /** Ring addresses as the driver wrote them: [low, high] 32-bit halves. */
  regs: { desc: [number, number]; driver: [number, number]; device: [number, number] };
  /** Addresses in use, fixed when the queue is made ready. */
  desc: number;
  driver: number; // available ring
  device: number; // used ring
  /** Next available-ring slot the device will read (free-running u16). */
  lastAvail: number;
  /** Next used-ring slot the device will write (free-running u16). */
  usedIdx: number;
  /** Used index when the driver was last considered for an interrupt (event idx). */
  signalledUsed: number;
  signalledValid: boolean;
}

function newQueue(): Queue {
  return {
    num: VIRTIO_BLK_QUEUE_NUM_MAX,
    ready: false,
    regs: { desc: [0, 0], driver: [0, 0], device: [0, 0] },
    desc: 0,
    driver: 0,
    device: 0,
    lastAvail: 0,
    usedIdx: 0,
    signalledUsed: 0,
    signalledValid: false,
  };
}

/** §2.7.10: should an index moving from `old` to `next` trigger an event at `event`? */
function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}

/**
 * A 64-bit address from its halves. Above 2^53 the number is inexact, but such an
 * address is far outside RAM and the DmaMemory rejects it.
 */
function address([low, high]: [number, number]): number {
  return high * 0x1_0000_0000 + low;
}

/** The shared interrupt-status block, in i32 words: the lock alone in its host cache line, then the rest. */
const IrqSlot = { LOCK: 0, STATUS: 16, PRESENT: 17 } as const;
/** Bytes of shared state a virtio-mmio interrupt status needs (shared-mem/layout.ts reserves them). */
export const VIRTIO_IRQ_STATE_BYTES = 128;

/**
 * A virtio-mmio device's InterruptStatus register and its interrupt line, in shared memory. The
 * device (main thread) raises bits as it uses buffers; a hart's worker reads the register and
 * acknowledges bits itself, which is all a driver does per interrupt (Linux's vm_interrupt), so
 * neither costs a round trip. The lock makes "change the bits, drive the line to match" one step
 * whichever thread does it.
 */
export class VirtioInterruptStatus {
  private readonly words: Int32Array;
  private readonly lock: Mutex;

  constructor(
    state: { buffer: ArrayBufferLike; offset: number; attach?: boolean },
    private readonly irq: (level: boolean) => void,
  ) {
    this.words = new Int32Array(state.buffer, state.offset, VIRTIO_IRQ_STATE_BYTES / 4);
    this.lock = new Mutex(new Int32Array(state.buffer), (state.offset >>> 2) + IrqSlot.LOCK);
    if (!state.attach) {
      this.words.fill(0);
      Atomics.store(this.words, IrqSlot.PRESENT, 1);
    }
  }

  /** Whether a device owns this block (harts route its registers only then). */
  get present(): boolean {
    return Atomics.load(this.words, IrqSlot.PRESENT) === 1;
  }

  get value(): number {
    return Atomics.load(this.words, IrqSlot.STATUS);
  }

  /** The line's level: high while any status bit is set. */
  get level(): boolean {
    return this.value !== 0;
  }

  raise(bits: number): void {
    this.change(bits, bits);
  }

  acknowledge(bits: number): void {
    this.change(bits, 0);
  }

  clear(): void {
    this.change(-1, 0);
  }

  private change(mask: number, value: number): void {
    this.lock.acquire();
    try {
      const status = (Atomics.load(this.words, IrqSlot.STATUS) & ~mask) | (value & mask);
      Atomics.store(this.words, IrqSlot.STATUS, status);
      // Signalled on every change, as QEMU's virtio-mmio does: its PLIC takes each raise as a
      // new request (plic.ts), so a buffer used while the last interrupt is in service is not lost.
      this.irq(status !== 0);
    } finally {
      this.lock.release();
    }
  }
}

export interface VirtioBlockOptions {
  disk: DiskImage;
  memory: DmaMemory;
  /** Drives the PLIC source; called when the interrupt line changes level. */
  irq: (level: boolean) => void;
  base?: number;
  /** Answer to GET_ID, at most 20 bytes (zero-padded); defaults to the image file name. */
  serial?: string;
  /** Told about driver errors that put the device into DEVICE_NEEDS_RESET. */
  onError?: (message: string) => void;
  /** Where InterruptStatus lives (VIRTIO_IRQ_STATE_BYTES), for harts to reach; default: a private block. */
  interruptState?: { buffer: ArrayBufferLike; offset: number };
}

export class VirtioBlock implements MmioDevice {
  readonly name = 'virtio-blk';
  readonly base: number;
  readonly size = VIRTIO_BLK_SIZE;

  private readonly disk: DiskImage;
  private readonly memory: DmaMemory;
  private readonly interrupt: VirtioInterruptStatus;
  private readonly onError: ((message: string) => void) | undefined;
  private readonly deviceFeatures: bigint;
  private readonly config: Uint8Array;
  private readonly serial: Uint8Array;

  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures = 0n;
  private queueSel = 0;
  private queue: Queue = newQueue();
  private lastError: string | undefined;

  constructor(options: VirtioBlockOptions) {
    this.base = options.base ?? VIRTIO_BLK_BASE;
    this.disk = options.disk;
    this.memory = options.memory;
    this.interrupt = new VirtioInterruptStatus(
      options.interruptState ?? { buffer: new SharedArrayBuffer(VIRTIO_IRQ_STATE_BYTES), offset: 0 },
      options.irq,
    );
    this.onError = options.onError;

    let features =
      (1n << BigInt(F_VERSION_1)) |
      (1n << BigInt(F_RING_INDIRECT_DESC)) |
      (1n << BigInt(F_RING_EVENT_IDX)) |
      (1n << BigInt(F_BLK_SEG_MAX)) |
      (1n << BigInt(F_BLK_BLK_SIZE)) |
      (1n << BigInt(F_BLK_FLUSH));
    if (this.disk.readOnly) features |= 1n << BigInt(F_BLK_RO);
    this.deviceFeatures = features;

    this.config = new Uint8Array(CFG_SIZE);
    const cfg = new DataView(this.config.buffer);
    cfg.setBigUint64(CFG_CAPACITY, BigInt(this.disk.sectors), true);
    // Two descriptors of a chain carry the header and the status byte (QEMU: num - 2).
    cfg.setUint32(CFG_SEG_MAX, VIRTIO_BLK_QUEUE_NUM_MAX - 2, true);
    cfg.setUint32(CFG_BLK_SIZE, SECTOR, true);

    this.serial = new Uint8Array(BLK_ID_BYTES);
    const id = new TextEncoder().encode(options.serial ?? path.basename(this.disk.path));
    this.serial.set(id.subarray(0, BLK_ID_BYTES));
  }

  /** Current level of the interrupt line. */
  get irqLevel(): boolean {
    return this.interrupt.level;
  }

  /** The device status register as the driver sees it. */
  get deviceStatus(): number {
    return this.status;
  }

  /** Why the device last entered DEVICE_NEEDS_RESET (cleared by a reset). */
  get error(): string | undefined {
    return this.lastError;
  }

  read(offset: number, width: AccessWidth): bigint {
    if (offset >= REG_CONFIG) return this.readConfig(offset - REG_CONFIG, width);
    if (width !== 4 || offset & 3) return 0n;
    return BigInt(this.readRegister(offset) >>> 0);
  }

  write(offset: number, width: AccessWidth, value: bigint): void {
    // The configuration space holds nothing writable for the features offered
    // (writeback needs CONFIG_WCE), so config writes are ignored.
    if (offset >= REG_CONFIG) return;
    if (width !== 4 || offset & 3) return;
    this.writeRegister(offset, Number(value & 0xffff_ffffn));
  }

  private readRegister(offset: number): number {
    const q = this.queue;
    const selected = this.queueSel === 0;
    switch (offset) {
      case REG_MAGIC:
        return MAGIC;
      case REG_VERSION:
        return VERSION_MODERN;
      case REG_DEVICE_ID:
        return DEVICE_ID_BLOCK;
      case REG_VENDOR_ID:
        return VENDOR_ID_QEMU;
      case REG_DEVICE_FEATURES:
        return this.deviceFeaturesSel > 1 ? 0 : Number((this.deviceFeatures >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn);
      case REG_QUEUE_NUM_MAX:
        return selected ? VIRTIO_BLK_QUEUE_NUM_MAX : 0;
      case REG_QUEUE_READY:
        return selected && q.ready ? 1 : 0;
      case REG_INTERRUPT_STATUS:
        return this.interrupt.value;
      case REG_STATUS:
        return this.status;
      case REG_QUEUE_DESC_LOW:
        return selected ? q.regs.desc[0] : 0;
      case REG_QUEUE_DESC_HIGH:
        return selected ? q.regs.desc[1] : 0;
      case REG_QUEUE_DRIVER_LOW:
        return selected ? q.regs.driver[0] : 0;
      case REG_QUEUE_DRIVER_HIGH:
        return selected ? q.regs.driver[1] : 0;
      case REG_QUEUE_DEVICE_LOW:
        return selected ? q.regs.device[0] : 0;
      case REG_QUEUE_DEVICE_HIGH:
        return selected ? q.regs.device[1] : 0;
      case REG_SHM_LEN_LOW:
      case REG_SHM_LEN_HIGH:
      case REG_SHM_BASE_LOW:
      case REG_SHM_BASE_HIGH:
        return 0xffff_ffff; // no shared memory regions: length reads as ~0 (§4.2.2)
      case REG_CONFIG_GENERATION:
        return 0; // the configuration never changes while the device runs
      default:
        return 0; // write-only and reserved registers
    }
  }

  private writeRegister(offset: number, v: number): void {
    const q = this.queue;
    const selected = this.queueSel === 0;
    // Size and ring addresses are fixed while the queue is live (§4.2.3.2).
    const configurable = selected && !q.ready;
    switch (offset) {
      case REG_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = v;
        return;
      case REG_DRIVER_FEATURES:
        // Features are fixed once FEATURES_OK is set (§3.1.1).
        if (this.status & STATUS_FEATURES_OK || this.driverFeaturesSel > 1) return;
        {
          const shift = BigInt(32 * this.driverFeaturesSel);
          this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(v) << shift);
        }
        return;
      case REG_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = v;
        return;
      case REG_QUEUE_SEL:
        this.queueSel = v;
        return;
      case REG_QUEUE_NUM:
        if (configurable) q.num = v;
        return;
      case REG_QUEUE_READY:
        if (selected) this.setQueueReady(v & 1);
        return;
      case REG_QUEUE_NOTIFY:
        if (v === 0) this.processQueue();
        return;
      case REG_INTERRUPT_ACK:
        this.interrupt.acknowledge(v);
        return;
      case REG_STATUS:
        this.writeStatus(v & 0xff);
        return;
      case REG_QUEUE_DESC_LOW:
        if (configurable) q.regs.desc[0] = v;
        return;
      case REG_QUEUE_DESC_HIGH:
        if (configurable) q.regs.desc[1] = v;
        return;
      case REG_QUEUE_DRIVER_LOW:
        if (configurable) q.regs.driver[0] = v;
        return;
      case REG_QUEUE_DRIVER_HIGH:
        if (configurable) q.regs.driver[1] = v;
        return;
      case REG_QUEUE_DEVICE_LOW:
        if (configurable) q.regs.device[0] = v;
        return;
      case REG_QUEUE_DEVICE_HIGH:
        if (configurable) q.regs.device[1] = v;
        return;
      case REG_SHM_SEL:
      default:
        return; // read-only and reserved registers
    }
  }

  private readConfig(offset: number, width: AccessWidth): bigint {
    let value = 0n;
    for (let i = width - 1; i >= 0; i--) {
      value = (value << 8n) | BigInt(this.config[offset + i] ?? 0);
    }
    return value;
  }

  private writeStatus(v: number): void {
    if (v === 0) {
      this.reset();
      return;
    }
    const wasFeaturesOk = (this.status & STATUS_FEATURES_OK) !== 0;
    if (v & STATUS_FEATURES_OK && !wasFeaturesOk && !this.featuresAcceptable()) {
      v &= ~STATUS_FEATURES_OK; // the driver reads it back and gives up (§3.1.1 step 6)
    }
    // NEEDS_RESET belongs to the device: only a reset clears it.
    this.status = (v & ~STATUS_NEEDS_RESET) | (this.status & STATUS_NEEDS_RESET);
  }

  private featuresAcceptable(): boolean {
    return (this.driverFeatures & ~this.deviceFeatures) === 0n; // nothing accepted that was not offered
  }

  private hasFeature(bit: number): boolean {
    return (this.driverFeatures & (1n << BigInt(bit))) !== 0n;
  }

  private setQueueReady(ready: number): void {
    const q = this.queue;
    if (!ready) {
      q.ready = false;
      return;
    }
    // A split ring's size is a power of two no larger than QueueNumMax (§2.6).
    if (q.num === 0 || q.num > VIRTIO_BLK_QUEUE_NUM_MAX || (q.num & (q.num - 1)) !== 0) {
      this.deviceError(`queue size ${q.num} is not a power of two in 1..${VIRTIO_BLK_QUEUE_NUM_MAX}`);
      return;
    }
    q.desc = address(q.regs.desc);
    q.driver = address(q.regs.driver);
    q.device = address(q.regs.device);
    q.ready = true;
  }

  private reset(): void {
    this.status = 0;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeatures = 0n;
    this.queueSel = 0;
    this.queue = newQueue();
    this.interrupt.clear();
    this.lastError = undefined;
  }

  /** The driver broke the protocol: stop using the queue until it resets us (§2.1.2). */
  private deviceError(message: string): void {
    this.lastError = message;
    this.status |= STATUS_NEEDS_RESET;
    if (this.status & STATUS_DRIVER_OK) {
      this.interrupt.raise(INT_CONFIG_CHANGE);
    }
    this.onError?.(`virtio-blk: ${message}; device needs reset`);
  }

  // ---- The request queue ----

  private processQueue(): void {
    const q = this.queue;
    // Buffers are used only once the driver finished the handshake with agreed features.
    const live = STATUS_DRIVER_OK | STATUS_FEATURES_OK;
    if (!q.ready || (this.status & live) !== live || this.status & (STATUS_NEEDS_RESET | STATUS_FAILED)) return;
    const mem = this.memory;
    const startUsed = q.usedIdx;
    try {
      for (;;) {
        const availIdx = mem.readU16(q.driver + 2);
        const pending = (availIdx - q.lastAvail) & 0xffff;
        if (pending > q.num) {
          throw new VirtqueueError(`available index moved ${pending} entries ahead of the device, more than the queue size ${q.num}`);
        }
        if (pending === 0) break;
        const head = mem.readU16(q.driver + 4 + 2 * (q.lastAvail % q.num));
        q.lastAvail = (q.lastAvail + 1) & 0xffff;
        if (this.hasFeature(F_RING_EVENT_IDX)) {
          // avail_event: "notify me when you make entry lastAvail available" (§2.7.10).
          mem.writeU16(q.device + 4 + 8 * q.num, q.lastAvail);
        }
        const { readable, writable } = this.walkChain(head);
        const written = this.handleRequest(readable, writable);
        const slot = q.device + 4 + 8 * (q.usedIdx % q.num);
        mem.writeU32(slot, head);
        mem.writeU32(slot + 4, written);
        q.usedIdx = (q.usedIdx + 1) & 0xffff;
        mem.writeU16(q.device + 2, q.usedIdx);
      }
      if (q.usedIdx !== startUsed) this.maybeInterrupt();
    } catch (e) {
      if (e instanceof VirtqueueError || e instanceof DmaError) {
        this.deviceError(e.message);
        return;
      }
      throw e;
    }
  }

  /** Decide whether the driver wants to hear about the new used entries (§2.7.7, §2.7.10). */
  private maybeInterrupt(): void {
    const q = this.queue;
    let notify: boolean;
    if (this.hasFeature(F_RING_EVENT_IDX)) {
      const usedEvent = this.memory.readU16(q.driver + 4 + 2 * q.num);
      notify = !q.signalledValid || needEvent(usedEvent, q.usedIdx, q.signalledUsed);
      q.signalledUsed = q.usedIdx;
      q.signalledValid = true;
    } else {
      notify = (this.memory.readU16(q.driver) & AVAIL_F_NO_INTERRUPT) === 0;
    }
    if (notify) {
      this.interrupt.raise(INT_USED_BUFFER);
    }
  }

  /**
   * Follow the descriptor chain starting at `head`, through at most one indirect table,
   * and split it into device-readable and device-writable buffers.
   */
  private walkChain(head: number): { readable: Segment[]; writable: Segment[] } {
    const q = this.queue;
    const mem = this.memory;
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    let table = q.desc;
    let entries = q.num;
    let budget = q.num; // a chain never has more descriptors than its table (§2.7.5.1)
    let indirect = false;
    let index = head;
    for (;;) {
      if (index >= entries) {
        throw new VirtqueueError(`descriptor index ${index} out of range (${indirect ? 'indirect table of ' : 'queue size '}${entries})`);
      }
      if (budget-- === 0) throw new VirtqueueError(`descriptor chain from head ${head} loops or is longer than ${entries}`);
      const d = table + DESC_SIZE * index;
      const addr = mem.readU64(d);
      const len = mem.readU32(d + 8);
      const flags = mem.readU16(d + 12);
      const next = mem.readU16(d + 14);
      if (addr + BigInt(len) > U64_LIMIT) throw new VirtqueueError(`descriptor ${index} wraps the address space`);
      if (flags & DESC_F_INDIRECT) {
        if (indirect) throw new VirtqueueError('indirect descriptor inside an indirect table');
        if (flags & DESC_F_NEXT) throw new VirtqueueError(`descriptor ${index} has both INDIRECT and NEXT`);
        if (len === 0 || len % DESC_SIZE !== 0) throw new VirtqueueError(`indirect table length ${len} is not a multiple of ${DESC_SIZE}`);
        indirect = true;
        table = this.gpa(addr, len);
        entries = len / DESC_SIZE;
        budget = entries;
        index = 0;
        continue;
      }
      const segment = { addr: this.gpa(addr, len), len };
      if (flags & DESC_F_WRITE) {
        writable.push(segment);
      } else {
        if (writable.length > 0) throw new VirtqueueError('device-readable buffer after a device-writable one');
        readable.push(segment);
      }
      if (!(flags & DESC_F_NEXT)) break;
      index = next;
    }
    return { readable, writable };
  }

  /** A descriptor address as a number; anything beyond 2^53 is outside RAM. */
  private gpa(addr: bigint, len: number): number {
    if (addr + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new DmaError(Number(addr), len, `DMA buffer at 0x${addr.toString(16)} (${len} bytes) is outside guest RAM`);
    }
    return Number(addr);
  }

  /** Run one block request; returns the number of bytes written to the writable buffers. */
  private handleRequest(readable: Segment[], writable: Segment[]): number {
    const readableLen = readable.reduce((n, s) => n + s.len, 0);
    if (readableLen < BLK_HEADER_SIZE) throw new VirtqueueError(`request header too short (${readableLen} bytes)`);
    const last = writable[writable.length - 1];
    if (last === undefined || last.len < 1) throw new VirtqueueError('request has no status byte');
    const statusAddr = last.addr + last.len - 1;
    // Data-in buffers: every writable byte before the status byte.
    const dataIn = writable.slice(0, -1);
    if (last.len > 1) dataIn.push({ addr: last.addr, len: last.len - 1 });
    const dataInLen = dataIn.reduce((n, s) => n + s.len, 0);

    const header = new DataView(this.gather(readable, 0, BLK_HEADER_SIZE).buffer);
    const type = header.getUint32(0, true);
    const sector = header.getBigUint64(8, true);

    let status: number;
    let written = 0;
    switch (type) {
      case BLK_T_IN: {
        const r = this.transfer(sector, dataInLen, (diskOffset, pos, n) => {
          this.scatter(dataIn, pos, this.disk.readBytes(diskOffset, n));
          written += n;
        });
        status = r;
        break;
      }
      case BLK_T_OUT:
        status = this.disk.readOnly
          ? BLK_S_IOERR
          : this.transfer(sector, readableLen - BLK_HEADER_SIZE, (diskOffset, pos, n) => {
              this.disk.writeBytes(diskOffset, this.gather(readable, BLK_HEADER_SIZE + pos, n));
            });
        break;
      case BLK_T_FLUSH:
        status = this.diskOp(() => this.disk.flush());
        break;
      case BLK_T_GET_ID: {
        const n = Math.min(BLK_ID_BYTES, dataInLen);
        this.scatter(dataIn, 0, this.serial.subarray(0, n));
        written = n;
        status = BLK_S_OK;
        break;
      }
      default:
        status = BLK_S_UNSUPP;
    }
    this.memory.write(statusAddr, Uint8Array.of(status));
    return written + 1;
  }

  /**
   * Check a data transfer of `length` bytes at `sector` against the disk and run it in
   * chunks; returns the block status. DmaErrors propagate (a driver error).
   */
  private transfer(sector: bigint, length: number, move: (diskOffset: number, pos: number, n: number) => void): number {
    if (length % SECTOR !== 0) return BLK_S_IOERR;
    if (sector + BigInt(length / SECTOR) > BigInt(this.disk.sectors)) return BLK_S_IOERR;
    const base = Number(sector) * SECTOR;
    return this.diskOp(() => {
      for (let pos = 0; pos < length; pos += CHUNK) {
        move(base + pos, pos, Math.min(CHUNK, length - pos));
      }
    });
  }

  /** Run host I/O; a host failure (EIO, ENOSPC...) becomes IOERR for the guest. */
  private diskOp(op: () => void): number {
    try {
      op();
      return BLK_S_OK;
    } catch (e) {
      if (e instanceof DmaError || e instanceof VirtqueueError) throw e;
      // A failed system call, a truncated or closed image: the guest sees an I/O error.
      if (e instanceof DiskImageError || (e instanceof Error && 'code' in e)) return BLK_S_IOERR;
      throw e;
    }
  }

  /** Copy `length` bytes starting `start` bytes into the concatenated segments. */
  private gather(segments: Segment[], start: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    let skip = start;
    for (const s of segments) {
      if (done === length) break;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      const n = Math.min(s.len - skip, length - done);
      out.set(this.memory.read(s.addr + skip, n), done);
      done += n;
      skip = 0;
    }
    return out;
  }

  /** Copy `data` into the concatenated segments starting `start` bytes in. */
  private scatter(segments: Segment[], start: number, data: Uint8Array): void {
    let done = 0;
    let skip = start;
    for (const s of segments) {
      if (done === data.length) break;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      const n = Math.min(s.len - skip, data.length - done);
      this.memory.write(s.addr + skip, data.subarray(done, done + n));
      done += n;
      skip = 0;
    }
  }
}
