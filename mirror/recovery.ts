/**
 * Recovery of a guest page whose primary frame took a DUE, as kMemvisor does: take a spare
 * frame, copy the page into it from a good mirror copy (into every copy of the spare, so the
 * page stays fully mirrored), point the p2m at it, and shoot down every hart's TLB.
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
  private readonly lock: Mutex;

  constructor(
    buffer: ArrayBufferLike,
    private readonly layout: MemoryLayout,
    private readonly map: PhysicalMap,
    private readonly hartBases: readonly number[],
  ) {
    this.bytes = new Uint8Array(buffer);
    this.words = new Int32Array(buffer);
    this.lock = new Mutex(this.words, (layout.controlOffset + ControlSlot.RECOVERY_LOCK) >>> 2);
  }

  /**
   * Move guest page `page`, one of whose copies is poisoned, to a spare frame, copying it from a
   * good copy into every copy of the spare; `who` names the accessor for the report.
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
      // The primary if it is good (a DUE in a mirror copy, found by the scrubber), else a mirror.
      let good = -1;
      for (let copy = 0; copy < copies && good < 0; copy++) if (!this.map.isPoisoned(copy, frame)) good = copy;
      if (!this.map.isProtected(page) && this.layout.copies > 1) {
        throw new UnrecoverableMemoryError(
          `uncorrectable memory error (DUE) in guest page ${address} (host frame ${frame}), hit by ${who}: ` +
            "the page is not protected by the VM's mirroring policy, so its copies are not kept",
        );
      }
      if (good < 0) {
        throw new UnrecoverableMemoryError(
          `uncorrectable memory error (DUE) in guest page ${address} (host frame ${frame}), hit by ${who}: ` +
            (this.layout.copies === 1 ? "the VM is not mirrored, so no copy exists" : "every copy of the page is poisoned"),
        );
      }
      const spare = this.map.allocateSpare();
      if (spare === undefined) {
        throw new UnrecoverableMemoryError(
          `uncorrectable memory error (DUE) in guest page ${address}, hit by ${who}: all ${this.layout.spareFrames} spare frames are used`,
        );
      }
      const stride = this.layout.copyStride;
      const source = frame * PAGE_SIZE + good * stride;
      for (let copy = 0; copy < this.layout.copies; copy++) {
        this.bytes.copyWithin(spare * PAGE_SIZE + copy * stride, source, source + PAGE_SIZE);
      }
      this.map.remap(page, spare);
      for (const base of this.hartBases) requestTlbShootdown(this.words, base);
      Atomics.add(this.words, (this.layout.controlOffset + ControlSlot.RECOVERIES) >>> 2, 1);
      Atomics.add(this.words, (this.layout.controlOffset + ControlSlot.RECOVERY_MICROS) >>> 2, Math.round((performance.now() - started) * 1000));
    } finally {
      this.lock.release();
    }
  }

  stats(): RecoveryStats {
    return {
      recoveries: Atomics.load(this.words, (this.layout.controlOffset + ControlSlot.RECOVERIES) >>> 2),
      recoveryMicroseconds: Atomics.load(this.words, (this.layout.controlOffset + ControlSlot.RECOVERY_MICROS) >>> 2),
      sparesUsed: this.map.sparesUsed(),
    };
  }
}
