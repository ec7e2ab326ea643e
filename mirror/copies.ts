/**
 * Comparing the copies of a VM's mirrored memory: what tests use to prove mirroring complete, and
 * what the stress tester (host/race-stress.ts) looks at while the harts are paused.
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

/** One 8-byte word of guest RAM whose copies differ. */
export interface WordDivergence {
  /** Guest-physical address of the word. */
  address: number;
  /** The word in every copy (copy 0 = primary), unsigned. */
  values: bigint[];
}

/**
 * Every protected 8-byte word whose copies are not all equal (at most `limit` listed), and how many
 * there are in all. With `resynchronize`, each such word is then set to the primary's value in
 * every copy, so that a later look reports only new divergences. Meaningful only while nothing
 * writes guest RAM (harts paused or stopped).
 */
export function findDivergentWords(
  buffer: ArrayBufferLike,
  layout: MemoryLayout,
  map: PhysicalMap,
  options: { limit?: number; resynchronize?: boolean } = {},
): { total: number; words: WordDivergence[] } {
  const limit = options.limit ?? 100;
  const mirrors = mirrorOffsetsOf(layout);
  const words: WordDivergence[] = [];
  let total = 0;
  if (mirrors.length === 0) return { total, words };
  const halves = new Int32Array(buffer);
  const quads = new BigUint64Array(buffer);
  for (let page = 0; page < layout.ramSize / PAGE_SIZE; page++) {
    if (!map.isProtected(page)) continue;
    const base = (map.frameOf(page) * PAGE_SIZE) / 8;
    for (let w = 0; w < PAGE_SIZE / 8; w++) {
      const lo = (base + w) * 2;
      // 32-bit halves for the common all-equal case: no BigInt per word.
      if (mirrors.every((m) => halves[lo] === halves[lo + m / 4] && halves[lo + 1] === halves[lo + 1 + m / 4])) continue;
      total++;
      if (words.length < limit) {
        words.push({ address: RAM_BASE + page * PAGE_SIZE + w * 8, values: [0, ...mirrors].map((m) => quads[base + w + m / 8]!) });
      }
      if (options.resynchronize) for (const m of mirrors) quads[base + w + m / 8] = quads[base + w]!;
    }
  }
  return { total, words };
}
