/**
 * Comparing the copies of a VM's mirrored memory: what tests use to prove mirroring complete.
 * (Host writes to every copy go through mirror/dma.ts.)
 */
import { RAM_BASE, mirrorOffsetsOf, PAGE_SIZE, type MemoryLayout } from "../shared-mem/layout.ts";
import type { PhysicalMap } from "../shared-mem/p2m.ts";

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
