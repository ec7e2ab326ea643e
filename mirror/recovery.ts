/**
 * Recovery of a guest page whose primary frame took a DUE, as kMemvisor does: take a spare
 * frame, copy the page into it from the good copies (into every copy of the spare, so the page
 * stays fully mirrored), point the p2m at it, and shoot down every hart's TLB. With two good
 * copies or more they vote word by word (NMR), so a silent corruption in one is not spread.
 *
 * Runs in whichever thread hit the poison (a hart's worker, or the main thread for DMA), under
 * one VM-wide lock; a second thread that hit the same page finds it already recovered.
 */
import { ControlSlot, PAGE_SIZE, RAM_BASE, type MemoryLayout } from "../shared-mem/layout.ts";
import type { PhysicalMap } from "../shared-mem/p2m.ts";
import { requestTlbShootdown } from "../sync/hart-signals.ts";
import { Mutex } from "../sync/mutex.ts";

/** The page cannot be recovered: the VM must stop; the message says what failed, where, when. */
export class UnrecoverableMemoryError extends Error {}

export interface RecoveryStats {
  recoveries: number;
  recoveryMicroseconds: number;
  sparesUsed: number;
}

export class PageRecovery {
  private readonly bytes: Uint8Array;
  private readonly words: Int32Array;
  private readonly quads: BigUint64Array;
  private readonly lock: Mutex;

  constructor(
    buffer: ArrayBufferLike,
    private readonly layout: MemoryLayout,
    private readonly map: PhysicalMap,
    private readonly hartBases: readonly number[],
  ) {
    this.bytes = new Uint8Array(buffer);
    this.words = new Int32Array(buffer);
    this.quads = new BigUint64Array(buffer);
    this.lock = new Mutex(this.words, (layout.controlOffset + ControlSlot.RECOVERY_LOCK) >>> 2);
  }

  /**
   * Move guest page `page`, one of whose copies is poisoned, to a spare frame, copying into every
   * copy of the spare what its good copies hold (voted, see vote); `who` names the accessor for
   * the report.
   */
  recover(page: number, who: string): void {
    const started = performance.now();
    this.lock.acquire();
    try {
      const frame = this.map.frameOf(page);
      const copies = this.layout.copies;
      let poisoned = false;
      for (let copy = 0; copy < copies; copy++) poisoned ||= this.map.isPoisoned(copy, frame);
      if (!poisoned) return; // another thread recovered it first
      const address = `0x${(RAM_BASE + page * PAGE_SIZE).toString(16)}`;
      const survivors: number[] = [];
      for (let copy = 0; copy < copies; copy++) if (!this.map.isPoisoned(copy, frame)) survivors.push(copy);
      if (!this.map.isProtected(page) && this.layout.copies > 1) {
        throw new UnrecoverableMemoryError(
          `uncorrectable memory error (DUE) in guest page ${address} (host frame ${frame}), hit by ${who}: ` +
            "the page is not protected by the VM's mirroring policy, so its copies are not kept",
        );
      }
      if (survivors.length === 0) {
        throw new UnrecoverableMemoryError(
          `uncorrectable memory error (DUE) in guest page ${address} (host frame ${frame}), hit by ${who}: ` +
            (this.layout.copies === 1 ? "the VM is not mirrored, so no copy exists" : "every copy of the page is poisoned"),
        );
      }
      // Before the spare is taken: an undecidable page stops the VM and needs none.
      const contents = this.vote(page, frame, survivors, who);
      const spare = this.map.allocateSpare();
      if (spare === undefined) {
        throw new UnrecoverableMemoryError(
          `uncorrectable memory error (DUE) in guest page ${address}, hit by ${who}: all ${this.layout.spareFrames} spare frames are used`,
        );
      }
      const stride = this.layout.copyStride;
      for (let copy = 0; copy < this.layout.copies; copy++) this.bytes.set(contents, spare * PAGE_SIZE + copy * stride);
      this.map.remap(page, spare);
      for (const base of this.hartBases) requestTlbShootdown(this.words, base);
      Atomics.add(this.words, (this.layout.controlOffset + ControlSlot.RECOVERIES) >>> 2, 1);
      Atomics.add(this.words, (this.layout.controlOffset + ControlSlot.RECOVERY_MICROS) >>> 2, Math.round((performance.now() - started) * 1000));
    } finally {
      this.lock.release();
    }
  }

  /**
   * The page's contents from its surviving copies: one survivor is taken as it is; with more,
   * each 8-byte word is what a strict majority of them hold (a silent corruption in one copy must
   * not be copied into all of them). A word with no majority makes the page undecidable.
   */
  private vote(page: number, frame: number, survivors: readonly number[], who: string): Uint8Array {
    const stride = this.layout.copyStride;
    const base = frame * PAGE_SIZE;
    const result = this.bytes.slice(base + survivors[0]! * stride, base + survivors[0]! * stride + PAGE_SIZE);
    if (survivors.length === 1) return result;
    const out = new BigUint64Array(result.buffer);
    const quadBase = base / 8;
    for (let w = 0; w < PAGE_SIZE / 8; w++) {
      // 32-bit halves for the common case, all equal: no BigInt per word.
      const lo = (base >>> 2) + w * 2;
      const first = (survivors[0]! * stride) >>> 2;
      if (survivors.every((c) => this.words[lo + ((c * stride) >>> 2)] === this.words[lo + first] && this.words[lo + 1 + ((c * stride) >>> 2)] === this.words[lo + 1 + first])) continue;
      const values = survivors.map((c) => this.quads[quadBase + w + (c * stride) / 8]!);
      const tally = new Map<bigint, number>();
      for (const v of values) tally.set(v, (tally.get(v) ?? 0) + 1);
      const [winner, votes] = [...tally].sort((a, b) => b[1] - a[1])[0]!;
      if (votes * 2 <= values.length) {
        const seen = survivors.map((c, i) => `copy ${c} 0x${values[i]!.toString(16).padStart(16, "0")}`).join(", ");
        throw new UnrecoverableMemoryError(
          `uncorrectable memory error (DUE) in guest page 0x${(RAM_BASE + page * PAGE_SIZE).toString(16)} (host frame ${frame}), ` +
            `hit by ${who}: undecidable: its surviving copies disagree at 0x${(RAM_BASE + page * PAGE_SIZE + w * 8).toString(16)} ` +
            `with no majority (${seen})`,
        );
      }
      out[w] = winner;
    }
    return result;
  }

  stats(): RecoveryStats {
    return {
      recoveries: Atomics.load(this.words, (this.layout.controlOffset + ControlSlot.RECOVERIES) >>> 2),
      recoveryMicroseconds: Atomics.load(this.words, (this.layout.controlOffset + ControlSlot.RECOVERY_MICROS) >>> 2),
      sparesUsed: this.map.sparesUsed(),
    };
  }
}
