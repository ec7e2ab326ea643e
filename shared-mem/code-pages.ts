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
 * Code and data often share a frame (a small program's .data and .bss follow its .text; a kernel's
 * too). So that stores to the data do not throw the code's translations away, each frame also
 * records which of its 64-byte chunks translated instructions lie in (layout.codeChunksOffset),
 * and a store outside them invalidates nothing.
 *
 * The chunks are recorded when a translation is installed, and its installer then compares the
 * chunks' bytes with the bytes it was translated from (vcpu/jit.ts). So a store that lands while
 * a frame is marked but nothing is installed yet (both words zero) need invalidate nothing: the
 * installer's comparison sees it. That holds for writers that check *after* their write lands
 * (invalidateWrite): a check that finds no chunks came before the record, so the write came
 * before the comparison. (Before this, such stores invalidated the pending translation: cpubound,
 * whose .bss shares its first page with .text, lost its first translation on every run.) A writer
 * that can only check before it writes (an atomic the engine carries out after its slow path
 * returned) uses invalidateBeforeWrite, for which a frame without chunks counts as code whole.
 * An installer that finds its translation stale leaves its record behind: that only narrows what
 * counts as code before the next translation is installed, whose own comparison still guards it.
 *
 * The heat table beside it (layout.heatOffset) counts, per frame, the interpreter's jumps within
 * it; vcpu/jit.ts compiles a frame once its heat reaches the threshold.
 */
import { PAGE_SIZE, type MemoryLayout } from "./layout.ts";

const HAS_CODE = 1;
/** Chunks of a frame the code extent is kept in (64 bytes each). */
export const CODE_CHUNK_SHIFT = 6;

/** The chunk mask, as [bits 0..31, bits 32..63], of the bytes [offset, offset + length) of a frame. */
export function chunksOf(offset: number, length: number): [number, number] {
  const mask: [number, number] = [0, 0];
  if (length <= 0) return mask;
  const last = Math.min(offset + length - 1, PAGE_SIZE - 1) >> CODE_CHUNK_SHIFT;
  for (let chunk = Math.max(offset, 0) >> CODE_CHUNK_SHIFT; chunk <= last; chunk++) {
    if (chunk < 32) mask[0] |= 1 << chunk;
    else mask[1] |= 1 << (chunk - 32);
  }
  return mask;
}

/** Whether `chunk` is in a mask laid out as chunksOf's. */
export function hasChunk(mask: readonly [number, number], chunk: number): boolean {
  return (((chunk < 32 ? mask[0] : mask[1]) >>> (chunk & 31)) & 1) !== 0;
}

export class CodeMap {
  private readonly map: Int32Array;
  private readonly heat: Int32Array;
  private readonly chunks: Int32Array;
  readonly frames: number;

  constructor(buffer: ArrayBufferLike, layout: MemoryLayout) {
    this.frames = layout.copyStride / PAGE_SIZE;
    this.map = new Int32Array(buffer, layout.codeMapOffset, this.frames);
    this.heat = new Int32Array(buffer, layout.heatOffset, this.frames);
    this.chunks = new Int32Array(buffer, layout.codeChunksOffset, 2 * this.frames);
  }

  /** Record that translated instructions lie in these chunks of the frame (chunksOf). */
  recordCodeChunks(frame: number, mask: readonly [number, number]): void {
    Atomics.or(this.chunks, 2 * frame, mask[0]);
    Atomics.or(this.chunks, 2 * frame + 1, mask[1]);
  }

  /**
   * The frame's recorded code chunks ([0, 0]: none recorded yet; what that means for a write
   * depends on whether it has landed, see the header).
   */
  codeChunks(frame: number): [number, number] {
    return [Atomics.load(this.chunks, 2 * frame), Atomics.load(this.chunks, 2 * frame + 1)];
  }

  /**
   * Whether a write of [offset, offset + length) of the frame may change installed translated code
   * (`noneRecorded`: the answer when the frame has no chunks recorded yet).
   */
  writeTouchesCode(frame: number, offset: number, length: number, noneRecorded = false): boolean {
    const [low, high] = this.codeChunks(frame);
    if (low === 0 && high === 0) return noneRecorded;
    const [writeLow, writeHigh] = chunksOf(offset, length);
    return (low & writeLow) !== 0 || (high & writeHigh) !== 0;
  }

  /**
   * A write of [offset, offset + length) of the frame has landed: invalidate the frame if the
   * write may have changed translated code. Returns whether it did.
   */
  invalidateWrite(frame: number, offset: number, length: number): boolean {
    return this.hasCode(frame) && this.writeTouchesCode(frame, offset, length) && this.invalidate(frame);
  }

  /**
   * A write of [offset, offset + length) of the frame is about to land: invalidate the frame if it
   * may change code, counting the whole frame while a translation is pending (header).
   */
  invalidateBeforeWrite(frame: number, offset: number, length: number): boolean {
    return this.hasCode(frame) && this.writeTouchesCode(frame, offset, length, true) && this.invalidate(frame);
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
    // The next translation of the frame records its own extent.
    Atomics.store(this.chunks, 2 * frame, 0);
    Atomics.store(this.chunks, 2 * frame + 1, 0);
    Atomics.store(this.heat, frame, 0);
    return true;
  }

  /** Host writes to [hostOffset, hostOffset + length) have landed (DMA): invalidate the frames whose code they may have changed. */
  invalidateRange(hostOffset: number, length: number): void {
    if (length <= 0) return;
    const end = hostOffset + length;
    for (let frame = Math.floor(hostOffset / PAGE_SIZE); frame * PAGE_SIZE < end; frame++) {
      const from = Math.max(hostOffset, frame * PAGE_SIZE);
      const to = Math.min(end, (frame + 1) * PAGE_SIZE);
      this.invalidateWrite(frame, from - frame * PAGE_SIZE, to - from);
    }
  }

  heatOf(frame: number): number {
    return Atomics.load(this.heat, frame);
  }

  setHeat(frame: number, value: number): void {
    Atomics.store(this.heat, frame, value);
  }
}
