/**
 * Whole-copy operations on a VM's mirrored memory: writing host-side data (boot images, DMA) to
 * every copy, and comparing copies (the basis of the scrubber and of tests that prove mirroring
 * is complete).
 */
import { RAM_BASE, mirrorOffsetsOf, PAGE_SIZE, type MemoryLayout } from "../shared-mem/layout.ts";
import { DmaError, type DmaMemory } from "../hypervisor/devices/virtio-blk.ts";

/** Copy bytes to guest-physical `gpa` in the primary and in every mirror copy. */
export function writeAllCopies(buffer: ArrayBufferLike, layout: MemoryLayout, gpa: number, bytes: Uint8Array): void {
  const offset = gpa - RAM_BASE;
  if (offset < 0 || offset + bytes.length > layout.ramSize) {
    throw new RangeError(`0x${gpa.toString(16)}+${bytes.length} is outside RAM`);
  }
  const host = layout.ramOffset + offset;
  new Uint8Array(buffer, host, bytes.length).set(bytes);
  for (const mirror of mirrorOffsetsOf(layout)) new Uint8Array(buffer, host + mirror, bytes.length).set(bytes);
}

/** A page of guest RAM where a copy differs from the primary. */
export interface CopyMismatch {
  /** Guest-physical address of the page. */
  page: number;
  /** Which copy (1 .. copies−1) differs. */
  copy: number;
  /** Guest-physical address of the first differing byte. */
  firstAddress: number;
}

/** Every page where some mirror copy differs from the primary (empty when unmirrored). */
export function compareCopies(buffer: ArrayBufferLike, layout: MemoryLayout, limit = 1000): CopyMismatch[] {
  const mismatches: CopyMismatch[] = [];
  const primary = new BigInt64Array(buffer, layout.ramOffset, layout.ramSize / 8);
  mirrorOffsetsOf(layout).forEach((mirrorOffset, index) => {
    const copy = new BigInt64Array(buffer, layout.ramOffset + mirrorOffset, layout.ramSize / 8);
    const wordsPerPage = PAGE_SIZE / 8;
    for (let page = 0; page < layout.ramSize / PAGE_SIZE && mismatches.length < limit; page++) {
      for (let w = page * wordsPerPage; w < (page + 1) * wordsPerPage; w++) {
        if (primary[w] !== copy[w]) {
          const bytesA = new Uint8Array(buffer, layout.ramOffset + w * 8, 8);
          const bytesB = new Uint8Array(buffer, layout.ramOffset + mirrorOffset + w * 8, 8);
          let b = 0;
          while (bytesA[b] === bytesB[b]) b++;
          mismatches.push({ page: RAM_BASE + page * PAGE_SIZE, copy: index + 1, firstAddress: RAM_BASE + w * 8 + b });
          break;
        }
      }
    }
  });
  return mismatches;
}

/**
 * Device DMA into mirrored RAM: reads come from the primary, writes reach every copy, so data a
 * device wrote survives the loss of its primary frame like data a hart wrote.
 */
export class MirroredDmaMemory implements DmaMemory {
  private readonly view: DataView;
  private readonly mirrors: readonly number[];

  constructor(
    private readonly buffer: ArrayBufferLike,
    private readonly layout: MemoryLayout,
  ) {
    this.view = new DataView(buffer);
    this.mirrors = mirrorOffsetsOf(layout);
  }

  private host(gpa: number, length: number): number {
    const offset = gpa - RAM_BASE;
    if (!Number.isSafeInteger(gpa) || offset < 0 || length < 0 || offset + length > this.layout.ramSize) {
      throw new DmaError(gpa, length);
    }
    return this.layout.ramOffset + offset;
  }

  read(gpa: number, length: number): Uint8Array {
    const host = this.host(gpa, length);
    return new Uint8Array(this.buffer, host, length).slice();
  }
  write(gpa: number, data: Uint8Array): void {
    const host = this.host(gpa, data.length);
    new Uint8Array(this.buffer, host, data.length).set(data);
    for (const mirror of this.mirrors) new Uint8Array(this.buffer, host + mirror, data.length).set(data);
  }
  readU16(gpa: number): number {
    return this.view.getUint16(this.host(gpa, 2), true);
  }
  readU32(gpa: number): number {
    return this.view.getUint32(this.host(gpa, 4), true);
  }
  readU64(gpa: number): bigint {
    return this.view.getBigUint64(this.host(gpa, 8), true);
  }
  writeU16(gpa: number, value: number): void {
    const host = this.host(gpa, 2);
    this.view.setUint16(host, value, true);
    for (const mirror of this.mirrors) this.view.setUint16(host + mirror, value, true);
  }
  writeU32(gpa: number, value: number): void {
    const host = this.host(gpa, 4);
    this.view.setUint32(host, value, true);
    for (const mirror of this.mirrors) this.view.setUint32(host + mirror, value, true);
  }
}
