/**
 * CLINT (core-local interruptor, "riscv,clint0" / SiFive layout, QEMU virt at
 * 0x0200_0000): software interrupts (msip) and the machine timer (mtime, mtimecmp).
 *
 *   0x0000 + 4*h   msip[h]      32-bit; bit 0 drives mip.MSIP (bit 3) of hart h
 *   0x4000 + 8*h   mtimecmp[h]  64-bit (or two 32-bit halves); mip.MTIP (bit 7) = mtime >= mtimecmp[h]
 *   0xBFF8         mtime        64-bit (or two 32-bit halves), 10 MHz
 *
 * mtime is derived from a host clock, not from instructions retired, so guest time
 * keeps pace with wall time whichever engine runs and however many harts share the
 * host. The clock is `now(): bigint` in **nanoseconds** (default process.hrtime.bigint,
 * monotonic); mtime = (now - start) / 100 + offset. Writing mtime only moves the offset,
 * so time keeps running from the written value.
 *
 * Any access that lies inside one register works, whatever its width (bytes are merged
 * little-endian), which covers RV32-style split accesses; accesses straddling two
 * registers or hitting a hole read 0 and are ignored on write.
 */
import type { AccessWidth, MachineControl, MmioDevice } from './device.ts';

export const CLINT_BASE = 0x0200_0000;
export const CLINT_SIZE = 0x1_0000;
export const CLINT_TIMEBASE_HZ = 10_000_000;

const MSIP_BASE = 0x0000;
const MTIMECMP_BASE = 0x4000;
const MTIME_OFFSET = 0xbff8;
const NS_PER_TICK = 1_000_000_000n / BigInt(CLINT_TIMEBASE_HZ);
const MIP_MSIP_BIT = 3;
const MIP_MTIP_BIT = 7;
const ALL_ONES = (1n << 64n) - 1n;

export interface ClintOptions {
  harts: number;
  control: MachineControl;
  /** Host clock in nanoseconds (monotonic). Default: process.hrtime.bigint. */
  now?: () => bigint;
  base?: number;
  /**
   * Where the CLINT's registers live. Harts in worker threads each build a Clint over the same
   * shared block (`attach: true`), so that mtime, mtimecmp and msip cost no round trip to the
   * main thread. Default: a private block.
   */
  state?: { buffer: ArrayBufferLike; offset: number; attach?: boolean };
}

/** Bytes of shared state a CLINT for `harts` harts needs (start, offset, mtimecmp[], msip[]). */
export function clintStateBytes(harts: number): number {
  return 16 + 8 * harts + 8 * Math.ceil(harts / 2);
}

/** Extract `width` bytes at byte `sub` of a little-endian register of `regBytes` bytes. */
function extract(reg: bigint, sub: number, width: number): bigint {
  return (reg >> BigInt(sub * 8)) & ((1n << BigInt(width * 8)) - 1n);
}

/** Replace `width` bytes at byte `sub` of a 64-bit register value. */
function merge(reg: bigint, sub: number, width: number, value: bigint): bigint {
  const shift = BigInt(sub * 8);
  const mask = ((1n << BigInt(width * 8)) - 1n) << shift;
  return (reg & ~mask & ALL_ONES) | ((value << shift) & mask);
}

export class Clint implements MmioDevice {
  readonly name = 'clint';
  readonly base: number;
  readonly size = CLINT_SIZE;
  readonly harts: number;

  private readonly control: MachineControl;
  private readonly now: () => bigint;
  /** Shared state: [0] host ns at start, [1] mtime offset, [2..] mtimecmp per hart; then msip words. */
  private readonly quads: BigInt64Array;
  private readonly msipWords: Int32Array;

  constructor(options: ClintOptions) {
    const { harts } = options;
    if (!Number.isInteger(harts) || harts < 1 || harts > 4095) {
      throw new RangeError(`CLINT hart count must be 1..4095, got ${harts}`);
    }
    this.harts = harts;
    this.base = options.base ?? CLINT_BASE;
    this.control = options.control;
    this.now = options.now ?? (() => process.hrtime.bigint());
    const state = options.state ?? { buffer: new SharedArrayBuffer(clintStateBytes(harts)), offset: 0 };
    this.quads = new BigInt64Array(state.buffer, state.offset, 2 + harts);
    this.msipWords = new Int32Array(state.buffer, state.offset + 16 + 8 * harts, harts);
    if (!state.attach) {
      Atomics.store(this.quads, 0, this.now());
      Atomics.store(this.quads, 1, 0n);
      // All ones at reset, so no timer interrupt fires before software programs one.
      for (let h = 0; h < harts; h++) Atomics.store(this.quads, 2 + h, -1n);
      this.msipWords.fill(0);
    }
  }

  /** Make mtime read zero now (machine start, before any hart runs). */
  restartClock(): void {
    Atomics.store(this.quads, 0, this.now());
    Atomics.store(this.quads, 1, 0n);
  }

  private get start(): bigint {
    return Atomics.load(this.quads, 0);
  }
  private get offset(): bigint {
    return Atomics.load(this.quads, 1);
  }
  private cmp(hart: number): bigint {
    return BigInt.asUintN(64, Atomics.load(this.quads, 2 + hart));
  }

  /** Current mtime (also the value of the `time` CSR). */
  mtime(): bigint {
    return BigInt.asUintN(64, (this.now() - this.start) / NS_PER_TICK + this.offset);
  }

  /** Current mtimecmp of a hart. */
  mtimecmp(hart: number): bigint {
    return hart >= 0 && hart < this.harts ? this.cmp(hart) : ALL_ONES;
  }

  /**
   * Host nanoseconds until hart's timer fires: 0 if already due. Lets a hart in WFI
   * sleep exactly as long as it needs to.
   */
  nanosUntilTimer(hart: number): bigint {
    const now = this.mtime();
    const cmp = this.mtimecmp(hart);
    return now >= cmp ? 0n : (cmp - now) * NS_PER_TICK;
  }

  read(offset: number, width: AccessWidth): bigint {
    if (offset >= MSIP_BASE && offset + width <= MSIP_BASE + 4 * this.harts) {
      const hart = (offset - MSIP_BASE) >> 2;
      const sub = (offset - MSIP_BASE) & 3;
      if (sub + width > 4) return 0n;
      return extract(BigInt(Atomics.load(this.msipWords, hart)), sub, width);
    }
    if (offset >= MTIMECMP_BASE && offset + width <= MTIMECMP_BASE + 8 * this.harts) {
      const hart = (offset - MTIMECMP_BASE) >> 3;
      const sub = (offset - MTIMECMP_BASE) & 7;
      if (sub + width > 8) return 0n;
      return extract(this.cmp(hart), sub, width);
    }
    if (offset >= MTIME_OFFSET && offset + width <= MTIME_OFFSET + 8) {
      return extract(this.mtime(), offset - MTIME_OFFSET, width);
    }
    return 0n;
  }

  write(offset: number, width: AccessWidth, value: bigint): void {
    if (offset >= MSIP_BASE && offset + width <= MSIP_BASE + 4 * this.harts) {
      const hart = (offset - MSIP_BASE) >> 2;
      const sub = (offset - MSIP_BASE) & 3;
      if (sub + width > 4) return;
      // Only bit 0 exists; the rest of the word is hard-wired to zero.
      const bit = Number(merge(BigInt(Atomics.load(this.msipWords, hart)), sub, width, value) & 1n);
      Atomics.store(this.msipWords, hart, bit);
      this.control.setHartInterrupt(hart, MIP_MSIP_BIT, bit === 1);
      return;
    }
    if (offset >= MTIMECMP_BASE && offset + width <= MTIMECMP_BASE + 8 * this.harts) {
      const hart = (offset - MTIMECMP_BASE) >> 3;
      const sub = (offset - MTIMECMP_BASE) & 7;
      if (sub + width > 8) return;
      // A hart writes only its own mtimecmp in practice; a whole-register write is one atomic store.
      Atomics.store(this.quads, 2 + hart, BigInt.asIntN(64, merge(this.cmp(hart), sub, width, value)));
      this.updateTimer(hart, this.mtime());
      return;
    }
    if (offset >= MTIME_OFFSET && offset + width <= MTIME_OFFSET + 8) {
      const current = this.mtime();
      const wanted = merge(current, offset - MTIME_OFFSET, width, value);
      Atomics.store(this.quads, 1, BigInt.asIntN(64, this.offset + wanted - current));
      const now = this.mtime();
      for (let h = 0; h < this.harts; h++) this.updateTimer(h, now);
    }
  }

  /** Re-evaluate every hart's MTIP against the current time. */
  tick(): void {
    const now = this.mtime();
    for (let h = 0; h < this.harts; h++) this.updateTimer(h, now);
  }

  /** Re-evaluate one hart's MTIP (each hart's own thread does this for itself). */
  checkTimer(hart: number): void {
    this.updateTimer(hart, this.mtime());
  }

  private updateTimer(hart: number, now: bigint): void {
    this.control.setHartInterrupt(hart, MIP_MTIP_BIT, now >= this.cmp(hart));
  }
}
