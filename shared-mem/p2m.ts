/**
 * The guest-physical to host map (p2m) and the poison map, in shared memory so that every hart's
 * thread and the main thread see one truth.
 *
 * p2m[g] is the host frame of guest page g in copy 0; the copies of that frame are at
 * + k·copyStride (shared-mem/layout.ts). Frames start identity-mapped; a recovery moves a page to
 * a spare frame. A poisoned frame (an injected DUE) is never cached in a TLB, so the next access
 * to it takes a slow path, which finds the poison and raises a machine check to the hypervisor.
 */
import { ControlSlot, PAGE_SIZE, RAM_BASE, type MemoryLayout } from "./layout.ts";

export class PhysicalMap {
  private readonly p2m: Uint32Array;
  private readonly poison: Uint8Array;
  private readonly protection: Uint8Array;
  private readonly words: Int32Array;
  readonly pages: number;
  readonly framesPerCopy: number;

  constructor(buffer: ArrayBufferLike, private readonly layout: MemoryLayout) {
    this.pages = layout.ramSize / PAGE_SIZE;
    this.framesPerCopy = layout.copyStride / PAGE_SIZE;
    this.p2m = new Uint32Array(buffer, layout.p2mOffset, this.pages);
    this.poison = new Uint8Array(buffer, layout.poisonOffset, this.framesPerCopy * layout.copies);
    this.protection = new Uint8Array(buffer, layout.protectionOffset, this.pages);
    this.words = new Int32Array(buffer);
  }

  /** Identity map, no poison, no spare used; every page protected when mirrored (machine creation only). */
  initialize(): void {
    for (let g = 0; g < this.pages; g++) this.p2m[g] = g + this.layout.ramOffset / PAGE_SIZE;
    this.poison.fill(0);
    this.protection.fill(this.layout.copies > 1 ? 1 : 0);
    Atomics.store(this.words, (this.layout.controlOffset + ControlSlot.SPARES_USED) >>> 2, 0);
  }

  /** Guest page number of a guest-physical address, or -1 outside RAM. */
  pageOf(paddr: number): number {
    const offset = paddr - RAM_BASE;
    return offset >= 0 && offset < this.layout.ramSize ? Math.floor(offset / PAGE_SIZE) : -1;
  }

  /** Host frame (copy 0) holding guest page g. */
  frameOf(page: number): number {
    return Atomics.load(this.p2m, page);
  }

  remap(page: number, frame: number): void {
    Atomics.store(this.p2m, page, frame);
  }

  /** Poison marks, by copy (0 = primary) and host frame number within copy 0's numbering. */
  isPoisoned(copy: number, frame: number): boolean {
    return Atomics.load(this.poison, copy * this.framesPerCopy + frame) !== 0;
  }
  setPoison(copy: number, frame: number, poisoned: boolean): void {
    Atomics.store(this.poison, copy * this.framesPerCopy + frame, poisoned ? 1 : 0);
  }

  /**
   * Whether guest page g is protected by the mirroring policy: its stores reach every copy, a DUE
   * in it is recovered and the scrubber checks it. Always false in an unmirrored VM.
   */
  isProtected(page: number): boolean {
    return Atomics.load(this.protection, page) !== 0;
  }
  setProtected(page: number, on: boolean): void {
    Atomics.store(this.protection, page, on && this.layout.copies > 1 ? 1 : 0);
  }

  /** A fresh spare frame (copy-0 numbering), or undefined when none is left. */
  allocateSpare(): number | undefined {
    const used = Atomics.add(this.words, (this.layout.controlOffset + ControlSlot.SPARES_USED) >>> 2, 1);
    if (used >= this.layout.spareFrames) return undefined;
    return this.layout.spareOffset / PAGE_SIZE + used;
  }

  sparesUsed(): number {
    return Math.min(Atomics.load(this.words, (this.layout.controlOffset + ControlSlot.SPARES_USED) >>> 2), this.layout.spareFrames);
  }
}

/** Raised by an access that reaches a poisoned frame: the hypervisor must recover the page. */
export class MachineCheck extends Error {
  constructor(
    readonly page: number,
    readonly frame: number,
  ) {
    super(`machine check: guest page 0x${(RAM_BASE + page * PAGE_SIZE).toString(16)} (host frame ${frame}) is poisoned`);
  }
}

/**
 * Host offset (copy 0) of a guest-physical address in RAM, through the p2m; -1 outside RAM.
 * Throws MachineCheck when the frame is poisoned.
 */
export function hostOffsetOf(map: PhysicalMap, paddr: number): number {
  const page = map.pageOf(paddr);
  if (page < 0) return -1;
  const frame = map.frameOf(page);
  if (map.isPoisoned(0, frame)) throw new MachineCheck(page, frame);
  return frame * PAGE_SIZE + (paddr % PAGE_SIZE);
}
