/**
 * How every part of the machine names an access to guest memory: its width, and the interface
 * through which a device reaches guest RAM by DMA (mirror/dma.ts implements it for the machine,
 * reaching every copy). The lowest layer holds them because harts, mailboxes, devices and the
 * mirror all speak of them.
 */

/** Bytes in one access: a device register, a guest load or store. */
export type AccessWidth = 1 | 2 | 4 | 8;

/** A device touched guest-physical memory that is not RAM. */
export class DmaError extends Error {
  override readonly name = "DmaError";
  constructor(
    /** First guest-physical address of the access (may be approximate above 2^53). */
    readonly gpa: number,
    readonly length: number,
    message?: string,
  ) {
    super(message ?? `DMA access of ${length} bytes at 0x${gpa.toString(16)} is outside guest RAM`);
  }
}

/**
 * Guest RAM as a DMA-capable device sees it. All values little-endian. Every method
 * throws DmaError when any byte of the access lies outside RAM; other errors (say, an
 * unrecoverable poisoned frame) propagate out of the device to the hypervisor.
 * Writes are where the hypervisor mirrors DMA into the backup copies.
 */
export interface DmaMemory {
  /** Copy `length` bytes out of guest RAM. */
  read(gpa: number, length: number): Uint8Array;
  /** Copy `data` into guest RAM. */
  write(gpa: number, data: Uint8Array): void;
  readU16(gpa: number): number;
  readU32(gpa: number): number;
  readU64(gpa: number): bigint;
  writeU16(gpa: number, value: number): void;
  writeU32(gpa: number, value: number): void;
}
