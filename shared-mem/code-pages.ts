/**
 * Which host frames hold guest code that some hart has translated, shared by every thread of a VM.
 *
 * One i32 per frame (layout.codeMapOffset): bit 0 set = "translated code exists: stores here must
 * invalidate it", bits 1.. = the frame's generation. A hart's translation of a frame is valid only
 * while the generation it recorded is current. While bit 0 is set no hart caches the frame in a
 * store TLB, so every store to it reaches a host slow path, which calls invalidate(); DMA writes
 * call it too. Invalidation bumps the generation and clears bit 0: later stores run at full speed
 * until the page is hot again.
 *
 * The heat table beside it (layout.heatOffset) counts, per frame, the interpreter's jumps within
 * it; vcpu/jit.ts compiles a frame once its heat reaches the threshold.
 */
import { PAGE_SIZE, type MemoryLayout } from "./layout.ts";

const HAS_CODE = 1;

export class CodeMap {
  private readonly map: Int32Array;
  private readonly heat: Int32Array;
  readonly frames: number;

  constructor(buffer: ArrayBufferLike, layout: MemoryLayout) {
    this.frames = layout.copyStride / PAGE_SIZE;
    this.map = new Int32Array(buffer, layout.codeMapOffset, this.frames);
    this.heat = new Int32Array(buffer, layout.heatOffset, this.frames);
  }

  /** Whether some hart may hold a translation of this frame (stores to it must invalidate). */
  hasCode(frame: number): boolean {
    return frame >= 0 && frame < this.frames && (Atomics.load(this.map, frame) & HAS_CODE) !== 0;
  }

  /** The frame's current generation. */
  generation(frame: number): number {
    return Atomics.load(this.map, frame) >>> 1;
  }

  /**
   * Mark the frame as holding translated code. Returns the generation the translation belongs to,
   * and whether the mark is new (then every hart must drop the frame from its store TLB).
   */
  markTranslated(frame: number): { generation: number; newlyMarked: boolean } {
    const old = Atomics.or(this.map, frame, HAS_CODE);
    return { generation: old >>> 1, newlyMarked: (old & HAS_CODE) === 0 };
  }

  /**
   * Code in the frame changed (or may have): every translation of it becomes stale and its heat
   * starts again from zero. Returns false when no translation existed.
   */
  invalidate(frame: number): boolean {
    if (frame < 0 || frame >= this.frames) return false;
    for (;;) {
      const old = Atomics.load(this.map, frame);
      if ((old & HAS_CODE) === 0) return false;
      if (Atomics.compareExchange(this.map, frame, old, (old + 2) & ~HAS_CODE) === old) break;
    }
    Atomics.store(this.heat, frame, 0);
    return true;
  }

  /** Invalidate every frame that [hostOffset, hostOffset + length) touches (DMA, host writes). */
  invalidateRange(hostOffset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((hostOffset + length - 1) / PAGE_SIZE);
    for (let frame = Math.floor(hostOffset / PAGE_SIZE); frame <= last; frame++) this.invalidate(frame);
  }

  heatOf(frame: number): number {
    return Atomics.load(this.heat, frame);
  }

  setHeat(frame: number, value: number): void {
    Atomics.store(this.heat, frame, value);
  }
}
