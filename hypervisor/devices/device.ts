/**
 * The one surface every memory-mapped device offers (as rvemu/TinyEMU do).
 * The bus knows addresses; a device knows only offsets inside its own window.
 * Values cross as bigint because 64-bit accesses (mtime, tohost) are ordinary;
 * MMIO is a slow path, so the conversion cost does not matter.
 */
import type { AccessWidth } from "../../shared-mem/access.ts";

export type { AccessWidth };

export interface MmioDevice {
  readonly name: string;
  /** Guest-physical base address of the device window. */
  readonly base: number;
  /** Window size in bytes. */
  readonly size: number;
  /** Read `width` bytes at `offset`; returns the zero-extended value. */
  read(offset: number, width: AccessWidth): bigint;
  /** Write the low `width` bytes of `value` at `offset`. */
  write(offset: number, width: AccessWidth, value: bigint): void;
  /** Called by the run loop between engine slices (polling input, timers). */
  tick?(): void;
}

/** What devices may ask of the machine they live in. */
export interface MachineControl {
  /** Stop the VM with this exit code (the process exit status). */
  requestExit(code: number): void;
  /** Set or clear an interrupt-pending bit (mip bit number) on a hart. */
  setHartInterrupt(hart: number, bit: number, level: boolean): void;
}
