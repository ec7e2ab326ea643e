/**
 * Whole-copy operations on a VM's mirrored memory: writing host-side data (boot images, HTIF) to
 * every copy, and comparing copies (the basis of the scrubber and of tests that prove mirroring
 * is complete).
 */
import { RAM_BASE, mirrorOffsetsOf, PAGE_SIZE, type MemoryLayout } from "../shared-mem/layout.ts";
import type { PhysicalMap } from "../shared-mem/p2m.ts";

/** Copy bytes to guest-physical `gpa` in the primary and in every mirror copy, through the p2m. */
export function writeAllCopies(buffer: ArrayBufferLike, layout: MemoryLayout, map: PhysicalMap, gpa: number, bytes: Uint8Array): void {
  const offset = gpa - RAM_BASE;
  if (offset < 0 || offset + bytes.length > layout.ramSize) {
    throw new RangeError(`0x${gpa.toString(16)}+${bytes.length} is outside RAM`);
  }
  const memory = new Uint8Array(buffer);
  const mirrors = mirrorOffsetsOf(layout);
  for (let at = 0; at < bytes.length; ) {
    const address = gpa + at;
    const n = Math.min(bytes.length - at, PAGE_SIZE - (address % PAGE_SIZE));
    const host = map.frameOf(map.pageOf(address)) * PAGE_SIZE + (address % PAGE_SIZE);
    const piece = bytes.subarray(at, at + n);
    memory.set(piece, host);
    for (const mirror of mirrors) memory.set(piece, host + mirror);
    at += n;
  }
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

/** Every protected page where some mirror copy differs from the primary (empty when unmirrored). */
export function compareCopies(buffer: ArrayBufferLike, layout: MemoryLayout, map: PhysicalMap, limit = 1000): CopyMismatch[] {
  const mismatches: CopyMismatch[] = [];
  const quads = new BigInt64Array(buffer);
  const bytes = new Uint8Array(buffer);
  const wordsPerPage = PAGE_SIZE / 8;
  mirrorOffsetsOf(layout).forEach((mirrorOffset, index) => {
    for (let page = 0; page < layout.ramSize / PAGE_SIZE && mismatches.length < limit; page++) {
      if (!map.isProtected(page)) continue; // unprotected pages keep no copies
      const primary = (map.frameOf(page) * PAGE_SIZE) / 8;
      const copy = primary + mirrorOffset / 8;
      for (let w = 0; w < wordsPerPage; w++) {
        if (quads[primary + w] !== quads[copy + w]) {
          let b = 0;
          while (bytes[(primary + w) * 8 + b] === bytes[(copy + w) * 8 + b]) b++;
          mismatches.push({ page: RAM_BASE + page * PAGE_SIZE, copy: index + 1, firstAddress: RAM_BASE + page * PAGE_SIZE + w * 8 + b });
          break;
        }
      }
    }
  });
  return mismatches;
}
