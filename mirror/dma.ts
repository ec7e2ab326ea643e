/**
 * Device DMA into guest RAM as a hypervisor with mirroring must do it: page by page through the
 * p2m (a recovered page lives in a spare frame), with poisoned frames recovered before use, reads
 * from the primary and writes to every copy — so data a device wrote survives the loss of its
 * primary frame like data a hart wrote.
 */
import { mirrorOffsetsOf, PAGE_SIZE, type MemoryLayout } from "../shared-mem/layout.ts";
import { MachineCheck, hostOffsetOf, type PhysicalMap } from "../shared-mem/p2m.ts";
import { DmaError, type DmaMemory } from "../shared-mem/access.ts";
import { MirrorLocks } from "../sync/stripes.ts";
import { CodeMap } from "../shared-mem/code-pages.ts";

export class GuestDmaMemory implements DmaMemory {
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly mirrors: readonly number[];
  /** Device writes take the mirror locks as hart stores do, so a racing hart cannot split copies. */
  private readonly locks: MirrorLocks;
  /** Device writes over translated guest code make it stale, as hart stores do. */
  private readonly codeMap: CodeMap;

  constructor(
    buffer: ArrayBufferLike,
    layout: MemoryLayout,
    private readonly map: PhysicalMap,
    private readonly recover: (page: number) => void,
  ) {
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
    this.mirrors = mirrorOffsetsOf(layout);
    this.locks = new MirrorLocks(buffer, layout);
    this.codeMap = new CodeMap(buffer, layout);
  }

  /** Host offset of one guest-physical byte run that stays inside a page. */
  private host(gpa: number): number {
    for (;;) {
      try {
        const host = hostOffsetOf(this.map, gpa);
        if (host < 0) throw new DmaError(gpa, 1);
        return host;
      } catch (e) {
        if (!(e instanceof MachineCheck)) throw e;
        this.recover(e.page);
      }
    }
  }

  /** Visit [gpa, gpa+length) in page-sized pieces: fn(hostOffset, offsetInRequest, pieceLength). */
  private pieces(gpa: number, length: number, fn: (host: number, at: number, n: number) => void): void {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || length < 0) throw new DmaError(gpa, length);
    // Check the whole range first, so a request running off the end of RAM changes nothing.
    if (length > 0 && (this.map.pageOf(gpa) < 0 || this.map.pageOf(gpa + length - 1) < 0)) throw new DmaError(gpa, length);
    for (let at = 0; at < length; ) {
      const n = Math.min(length - at, PAGE_SIZE - ((gpa + at) % PAGE_SIZE));
      fn(this.host(gpa + at), at, n);
      at += n;
    }
  }

  read(gpa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.pieces(gpa, length, (host, at, n) => out.set(this.bytes.subarray(host, host + n), at));
    return out;
  }

  write(gpa: number, data: Uint8Array): void {
    this.pieces(gpa, data.length, (host, at, n) => {
      const piece = data.subarray(at, at + n);
      // Copies first, primary last: guests read only the primary, so a guest that sees the new
      // data (an HTIF reply, a used-ring index) and at once overwrites it cannot be overtaken by
      // our late write to a mirror, which would leave the copies different.
      this.locks.forStore(host, n, () => {
        for (const mirror of this.mirrors) this.bytes.set(piece, host + mirror);
        this.bytes.set(piece, host);
      });
      // After the write (shared-mem/code-pages.ts): code translated from the old bytes goes.
      this.codeMap.invalidateRange(host, n);
    });
  }

  private readLittle(gpa: number, width: number): number {
    let value = 0;
    const bytes = this.read(gpa, width);
    for (let i = width - 1; i >= 0; i--) value = value * 256 + bytes[i]!;
    return value;
  }

  readU16(gpa: number): number {
    return this.readLittle(gpa, 2);
  }
  readU32(gpa: number): number {
    return this.readLittle(gpa, 4);
  }
  readU64(gpa: number): bigint {
    const bytes = this.read(gpa, 8);
    return new DataView(bytes.buffer).getBigUint64(0, true);
  }
  writeU16(gpa: number, value: number): void {
    const bytes = new Uint8Array(2);
    new DataView(bytes.buffer).setUint16(0, value, true);
    this.write(gpa, bytes);
  }
  writeU32(gpa: number, value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
    this.write(gpa, bytes);
  }
}
