/**
 * Whole-copy operations on a VM's mirrored memory: writing host-side data (boot images, HTIF) to
 * every copy, views of every copy (for device DMA), and comparing copies (the basis of the scrubber and of tests that prove mirroring
 * is complete).
 */
import { RAM_BASE, mirrorOffsetsOf, PAGE_SIZE, type MemoryLayout } from "../shared-mem/layout.ts";

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

/** Byte views of guest RAM: the primary and each mirror copy. */
export function ramCopies(buffer: ArrayBufferLike, layout: MemoryLayout): { primary: Uint8Array; mirrors: Uint8Array[] } {
  return {
    primary: new Uint8Array(buffer, layout.ramOffset, layout.ramSize),
    mirrors: mirrorOffsetsOf(layout).map((offset) => new Uint8Array(buffer, layout.ramOffset + offset, layout.ramSize)),
  };
}
