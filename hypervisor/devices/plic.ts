/**
 * PLIC (platform-level interrupt controller, "sifive,plic-1.0.0" / "riscv,plic0"), laid out
 * as on QEMU's virt board: base 0x0c00_0000, window 0x60_0000, interrupt sources 1..95
 * (source 0 does not exist), two contexts per hart:
 *
 *   context 2h     hart h, M-mode   drives mip.MEIP (bit 11)
 *   context 2h+1   hart h, S-mode   drives mip.SEIP (bit 9)
 *
 * Registers (all 32-bit):
 *
 *   0x00_0000 + 4*src               priority[src]   3 bits, 0 = never interrupts
 *   0x00_1000 + 4*w                 pending bits    read-only, sources 32w..32w+31
 *   0x00_2000 + 0x80*ctx + 4*w      enable bits     per context
 *   0x20_0000 + 0x1000*ctx          threshold       3 bits; only priority > threshold interrupts
 *   0x20_0004 + 0x1000*ctx          claim/complete  read = claim, write = complete
 *
 * Gateways behave as QEMU 7.2's sifive_plic, which the software built for the virt board is
 * tested on: every call of `setIrq` sets the source's pending bit to the level given, whether the
 * level changed or not and whether the source is claimed or not; a claim returns the enabled
 * pending unclaimed source of highest priority above the context's threshold (ties go to the
 * lowest id), clears its pending bit and marks it claimed; a completion only ends the claim. So a
 * line that stays high does not interrupt again after completion unless its device signals it
 * again (QEMU's 16550 signals on every THR write, IER/FCR write and RBR/IIR read, virtio on every
 * used buffer): a driver that never reads IIR takes one THR-empty interrupt per byte it sends,
 * not an endless storm. (The PLIC specification's gateway would forward a new request at
 * completion while the line is high; guests that never read IIR, such as xv6-style teaching
 * kernels, livelock under it, and do not on QEMU.) Like QEMU, completion does not check that the
 * source is enabled for the completing context; completing a source that is not claimed does
 * nothing.
 *
 * After every change, each context's output (is there an enabled, pending, unclaimed source
 * with priority above its threshold?) is recomputed, and the hart's mip bit is driven through
 * MachineControl.setHartInterrupt whenever that output changes level.
 *
 * Accesses other than aligned 32-bit ones read 0 and are ignored on write, as are holes and
 * registers of sources or contexts that do not exist.
 *
 * Every register lives in shared memory (`state`), under one lock, so that the main thread and
 * each hart's worker thread can build a Plic over the same block and run the register logic
 * where the access happens, as QEMU's multi-threaded TCG runs MMIO in the vCPU thread: a claim or
 * a complete costs a lock, not a round trip to the main thread. Whoever changes an output drives
 * the hart's mip bit, which is itself shared (vcpu/interrupts.ts).
 */
import { Mutex } from '../../sync/mutex.ts';
import type { AccessWidth, MachineControl, MmioDevice } from './device.ts';

export const PLIC_BASE = 0x0c00_0000;
export const PLIC_SIZE = 0x60_0000;
/** Highest source id (the FDT's `riscv,ndev`); sources are 1..PLIC_NUM_SOURCES. */
export const PLIC_NUM_SOURCES = 95;
/** Priorities are 3 bits wide (QEMU virt: 7 levels plus 0 = disabled). */
export const PLIC_MAX_PRIORITY = 7;

const PRIORITY_BASE = 0x00_0000;
const PENDING_BASE = 0x00_1000;
const ENABLE_BASE = 0x00_2000;
const ENABLE_STRIDE = 0x80;
const CONTEXT_BASE = 0x20_0000;
const CONTEXT_STRIDE = 0x1000;
const THRESHOLD_OFFSET = 0;
const CLAIM_OFFSET = 4;

const MIP_SEIP_BIT = 9;
const MIP_MEIP_BIT = 11;

/** Maximum contexts that fit in the window: (0x60_0000 - 0x20_0000) / 0x1000. */
const MAX_CONTEXTS = (PLIC_SIZE - CONTEXT_BASE) / CONTEXT_STRIDE;
/** 32-bit words of pending / enable bits covering sources 0..95. */
const WORDS = Math.ceil((PLIC_NUM_SOURCES + 1) / 32);
/** Valid-source mask per word: source 0 and sources above 95 are hard-wired to 0. */
const VALID_MASK: readonly number[] = Array.from({ length: WORDS }, (_, w) => {
  let mask = 0;
  for (let bit = 0; bit < 32; bit++) {
    const src = w * 32 + bit;
    if (src >= 1 && src <= PLIC_NUM_SOURCES) mask |= 1 << bit;
  }
  return mask >>> 0;
});

/** Contexts the shared state has room for: two per hart, for the most harts a VM may have (64). */
const MAX_STATE_CONTEXTS = 128;
/** The shared state, in i32 words: the lock alone in its host cache line, then the registers. */
const Slot = {
  LOCK: 0,
  PRIORITY: 16,
  PENDING: 16 + (PLIC_NUM_SOURCES + 1),
  CLAIMED: 16 + (PLIC_NUM_SOURCES + 1) + WORDS,
  THRESHOLD: 16 + (PLIC_NUM_SOURCES + 1) + 2 * WORDS,
  OUTPUT: 16 + (PLIC_NUM_SOURCES + 1) + 2 * WORDS + MAX_STATE_CONTEXTS,
  ENABLE: 16 + (PLIC_NUM_SOURCES + 1) + 2 * WORDS + 2 * MAX_STATE_CONTEXTS,
} as const;
/** Bytes of shared state a PLIC needs (shared-mem/layout.ts reserves them). */
export const PLIC_STATE_BYTES = (Slot.ENABLE + MAX_STATE_CONTEXTS * WORDS) * 4;

export interface PlicOptions {
  harts: number;
  control: MachineControl;
  base?: number;
  /**
   * Where the registers live (PLIC_STATE_BYTES at `offset`). The first Plic over a block
   * initialises it; harts' worker threads build theirs with `attach: true`. Default: a private block.
   */
  state?: { buffer: ArrayBufferLike; offset: number; attach?: boolean };
}

export class Plic implements MmioDevice {
  readonly name = 'plic';
  readonly base: number;
  readonly size = PLIC_SIZE;
  readonly harts: number;
  /** Number of contexts: two per hart (M, then S). */
  readonly contexts: number;

  private readonly control: MachineControl;
  private readonly lock: Mutex;
  /** priority[src], src 0..95 (index 0 unused, always 0). */
  private readonly priority: Int32Array;
  /** Pending bits, 32 sources per word. */
  private readonly pending: Int32Array;
  /** Claimed (in service) bits, 32 sources per word. */
  private readonly claimed: Int32Array;
  /** enable[ctx * WORDS + w]. */
  private readonly enable: Int32Array;
  private readonly threshold: Int32Array;
  /** Last level driven on each context's output. */
  private readonly output: Int32Array;

  constructor(options: PlicOptions) {
    const { harts } = options;
    if (!Number.isInteger(harts) || harts < 1 || harts * 2 > MAX_CONTEXTS) {
      throw new RangeError(`PLIC hart count must be 1..${MAX_CONTEXTS / 2}, got ${harts}`);
    }
    this.harts = harts;
    this.contexts = harts * 2;
    this.base = options.base ?? PLIC_BASE;
    this.control = options.control;
    const { buffer, offset, attach } = options.state ?? { buffer: new SharedArrayBuffer(PLIC_STATE_BYTES), offset: 0 };
    const words = (slot: number, length: number) => new Int32Array(buffer, offset + slot * 4, length);
    if (!attach) words(0, PLIC_STATE_BYTES / 4).fill(0);
    this.lock = new Mutex(new Int32Array(buffer), (offset >>> 2) + Slot.LOCK);
    this.priority = words(Slot.PRIORITY, PLIC_NUM_SOURCES + 1);
    this.pending = words(Slot.PENDING, WORDS);
    this.claimed = words(Slot.CLAIMED, WORDS);
    this.enable = words(Slot.ENABLE, this.contexts * WORDS);
    this.threshold = words(Slot.THRESHOLD, this.contexts);
    this.output = words(Slot.OUTPUT, this.contexts);
  }

  /** A device signals its interrupt line at `level` (see the gateway rule above). Source 0 and ids above 95 are ignored. */
  setIrq(source: number, level: boolean): void {
    if (!isSource(source)) return;
    this.lock.acquire();
    try {
      this.setPending(source, level);
      this.update();
    } finally {
      this.lock.release();
    }
  }

  /** Is this source's pending bit set? (For tests and debugging.) */
  isPending(source: number): boolean {
    return isSource(source) && (this.pending[source >>> 5]! & bit(source)) !== 0;
  }

  /** Has this source been claimed and not yet completed? */
  isClaimed(source: number): boolean {
    return isSource(source) && (this.claimed[source >>> 5]! & bit(source)) !== 0;
  }

  /** Current level of a context's interrupt output (context 2h = hart h M, 2h+1 = hart h S). */
  contextOutput(context: number): boolean {
    return this.output[context] === 1;
  }

  /** Claim as a guest read of the claim register would (returns 0 if nothing qualifies). */
  claim(context: number): number {
    return this.lock.with(() => this.claimLocked(context));
  }

  /** Complete as a guest write of the claim register would. */
  complete(context: number, source: number): void {
    this.lock.with(() => this.completeLocked(context, source));
  }

  read(offset: number, width: AccessWidth): bigint {
    if (width !== 4 || (offset & 3) !== 0) return 0n;
    this.lock.acquire();
    try {
      return BigInt(this.read32(offset) >>> 0);
    } finally {
      this.lock.release();
    }
  }

  write(offset: number, width: AccessWidth, value: bigint): void {
    if (width !== 4 || (offset & 3) !== 0) return;
    this.lock.acquire();
    try {
      this.write32(offset, Number(value & 0xffff_ffffn));
    } finally {
      this.lock.release();
    }
  }

  private claimLocked(context: number): number {
    if (!this.isContext(context)) return 0;
    const src = this.best(context);
    if (src !== 0) {
      this.setPending(src, false);
      this.claimed[src >>> 5]! |= bit(src);
      this.update();
    }
    return src;
  }

  private completeLocked(context: number, source: number): void {
    if (!this.isContext(context) || !this.isClaimed(source)) return;
    this.claimed[source >>> 5]! &= ~bit(source);
    this.update();
  }

  private read32(offset: number): number {
    if (offset < PENDING_BASE) {
      const src = (offset - PRIORITY_BASE) >> 2;
      return isSource(src) ? this.priority[src]! : 0;
    }
    if (offset < ENABLE_BASE) {
      const w = (offset - PENDING_BASE) >> 2;
      return w < WORDS ? this.pending[w]! : 0;
    }
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >> 2;
      return this.isContext(ctx) && w < WORDS ? this.enable[ctx * WORDS + w]! : 0;
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    if (!this.isContext(ctx)) return 0;
    switch ((offset - CONTEXT_BASE) % CONTEXT_STRIDE) {
      case THRESHOLD_OFFSET:
        return this.threshold[ctx]!;
      case CLAIM_OFFSET:
        return this.claimLocked(ctx);
      default:
        return 0;
    }
  }

  private write32(offset: number, value: number): void {
    if (offset < PENDING_BASE) {
      const src = (offset - PRIORITY_BASE) >> 2;
      if (!isSource(src)) return;
      this.priority[src] = value & PLIC_MAX_PRIORITY;
      this.update();
      return;
    }
    if (offset < ENABLE_BASE) return; // pending bits are read-only
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >> 2;
      if (!this.isContext(ctx) || w >= WORDS) return;
      this.enable[ctx * WORDS + w] = value & VALID_MASK[w]!;
      this.update();
      return;
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    if (!this.isContext(ctx)) return;
    switch ((offset - CONTEXT_BASE) % CONTEXT_STRIDE) {
      case THRESHOLD_OFFSET:
        this.threshold[ctx] = value & PLIC_MAX_PRIORITY;
        this.update();
        return;
      case CLAIM_OFFSET:
        this.completeLocked(ctx, value >>> 0);
        return;
    }
  }

  private isContext(ctx: number): boolean {
    return Number.isInteger(ctx) && ctx >= 0 && ctx < this.contexts;
  }

  private setPending(src: number, level: boolean): void {
    if (level) this.pending[src >>> 5]! |= bit(src);
    else this.pending[src >>> 5]! &= ~bit(src);
  }

  /**
   * The source a claim by `ctx` would return: enabled, pending, not claimed, priority above
   * the threshold, highest priority first and lowest id among equals; 0 if none.
   */
  private best(ctx: number): number {
    let bestSrc = 0;
    let bestPrio = this.threshold[ctx]!;
    const en = ctx * WORDS;
    for (let w = 0; w < WORDS; w++) {
      let bits = this.pending[w]! & ~this.claimed[w]! & this.enable[en + w]!;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits); // lowest set bit first
        bits &= bits - 1;
        const src = w * 32 + b;
        const prio = this.priority[src]!;
        if (prio > bestPrio) {
          bestPrio = prio;
          bestSrc = src;
        }
      }
    }
    return bestSrc;
  }

  /** Recompute every context's output and drive the harts' MEIP / SEIP on changes. */
  private update(): void {
    for (let ctx = 0; ctx < this.contexts; ctx++) {
      const level = this.best(ctx) !== 0 ? 1 : 0;
      if (level === this.output[ctx]) continue;
      this.output[ctx] = level;
      const hart = ctx >> 1;
      this.control.setHartInterrupt(hart, ctx & 1 ? MIP_SEIP_BIT : MIP_MEIP_BIT, level === 1);
    }
  }
}

function isSource(src: number): boolean {
  return Number.isInteger(src) && src >= 1 && src <= PLIC_NUM_SOURCES;
}

function bit(src: number): number {
  return 1 << (src & 31);
}
