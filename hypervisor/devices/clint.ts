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
  private readonly start: bigint;
  /** mtime = ticks since start + offset (mod 2^64). */
  private offset = 0n;
  private readonly msip: Uint8Array;
  private readonly cmp: bigint[];

  constructor(options: ClintOptions) {
    const { harts } = options;
    if (!Number.isInteger(harts) || harts < 1 || harts > 4095) {
      throw new RangeError(`CLINT hart count must be 1..4095, got ${harts}`);
    }
    this.harts = harts;
    this.base = options.base ?? CLINT_BASE;
    this.control = options.control;
    this.now = options.now ?? (() => process.hrtime.bigint());
    this.start = this.now();
    this.msip = new Uint8Array(harts);
    // All ones at reset, so no timer interrupt fires before software programs one.
    this.cmp = new Array<bigint>(harts).fill(ALL_ONES);
  }

  /** Current mtime (also the value of the `time` CSR). */
  mtime(): bigint {
    return BigInt.asUintN(64, (this.now() - this.start) / NS_PER_TICK + this.offset);
  }

  /** Current mtimecmp of a hart. */
  mtimecmp(hart: number): bigint {
    return this.cmp[hart] ?? ALL_ONES;
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
      return extract(BigInt(this.msip[hart]!), sub, width);
    }
    if (offset >= MTIMECMP_BASE && offset + width <= MTIMECMP_BASE + 8 * this.harts) {
      const hart = (offset - MTIMECMP_BASE) >> 3;
      const sub = (offset - MTIMECMP_BASE) & 7;
      if (sub + width > 8) return 0n;
      return extract(this.cmp[hart]!, sub, width);
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
      const bit = Number(merge(BigInt(this.msip[hart]!), sub, width, value) & 1n);
      this.msip[hart] = bit;
      this.control.setHartInterrupt(hart, MIP_MSIP_BIT, bit === 1);
      return;
    }
    if (offset >= MTIMECMP_BASE && offset + width <= MTIMECMP_BASE + 8 * this.harts) {
      const hart = (offset - MTIMECMP_BASE) >> 3;
      const sub = (offset - MTIMECMP_BASE) & 7;
      if (sub + width > 8) return;
      this.cmp[hart] = merge(this.cmp[hart]!, sub, width, value);
      this.updateTimer(hart, this.mtime());
      return;
    }
    if (offset >= MTIME_OFFSET && offset + width <= MTIME_OFFSET + 8) {
      const current = this.mtime();
      const wanted = merge(current, offset - MTIME_OFFSET, width, value);
      this.offset = BigInt.asUintN(64, this.offset + wanted - current);
      const now = this.mtime();
      for (let h = 0; h < this.harts; h++) this.updateTimer(h, now);
    }
  }

  /** Re-evaluate every hart's MTIP against the current time. */
  tick(): void {
    const now = this.mtime();
    for (let h = 0; h < this.harts; h++) this.updateTimer(h, now);
  }

  private updateTimer(hart: number, now: bigint): void {
    this.control.setHartInterrupt(hart, MIP_MTIP_BIT, now >= this.cmp[hart]!);
  }
}
