/**
 * A read-only memory window, as QEMU virt's boot ROM at 0x1000 (where QEMU keeps its reset
 * vector and OpenSBI's fw_dynamic_info). Writes are ignored, as QEMU ignores writes to ROM.
 */
import type { AccessWidth, MmioDevice } from "./device.ts";

export const MROM_BASE = 0x1000;
export const MROM_SIZE = 0xf000;

export class Rom implements MmioDevice {
  readonly name = "mrom";
  private readonly view: DataView;

  constructor(
    readonly base: number,
    readonly size: number,
    private readonly bytes: Uint8Array = new Uint8Array(size),
  ) {
    if (bytes.length !== size) throw new RangeError(`ROM contents are ${bytes.length} bytes, window is ${size}`);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Place `data` at `offset` (host side, at machine build time). */
  load(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset);
  }

  read(offset: number, width: AccessWidth): bigint {
    let value = 0n;
    for (let i = width - 1; i >= 0; i--) value = (value << 8n) | BigInt(this.view.getUint8(offset + i));
    return value;
  }

  write(): void {}
}
