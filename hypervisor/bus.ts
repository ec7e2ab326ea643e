/**
 * The MMIO bus: maps guest-physical addresses to devices. The CPU calls it only on
 * the slow path (an access that is not RAM), so a linear scan over a handful of
 * devices is cheaper than any index structure would be to maintain.
 */
import type { AccessWidth, MmioDevice } from './devices/device.ts';

function hex(value: number): string {
  return '0x' + value.toString(16);
}

export class Bus {
  private readonly devices: MmioDevice[] = [];

  /** Register a device; throws if its window is empty or overlaps another device's window. */
  add(device: MmioDevice): void {
    const { base, size, name } = device;
    if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(size) || size <= 0) {
      throw new RangeError(`device ${name}: bad window base ${base} size ${size}`);
    }
    for (const other of this.devices) {
      if (base < other.base + other.size && other.base < base + size) {
        throw new RangeError(
          `device ${name} [${hex(base)}, ${hex(base + size)}) overlaps device ${other.name} ` +
            `[${hex(other.base)}, ${hex(other.base + other.size)})`,
        );
      }
    }
    this.devices.push(device);
  }

  /** All registered devices, in the order they were added (for the FDT generator). */
  list(): readonly MmioDevice[] {
    return this.devices;
  }

  /** The device whose window contains `addr`, if any. */
  find(addr: number): MmioDevice | undefined {
    for (const d of this.devices) {
      if (addr >= d.base && addr < d.base + d.size) return d;
    }
    return undefined;
  }

  /**
   * Read from a device. `undefined` means no device decodes the whole access (none
   * there, or the access runs off the end of a window): the CPU raises an access fault.
   */
  read(addr: number, width: AccessWidth): bigint | undefined {
    const d = this.find(addr);
    if (d === undefined || addr + width > d.base + d.size) return undefined;
    return d.read(addr - d.base, width);
  }

  /** Write to a device; `false` means no device decodes the access (access fault). */
  write(addr: number, width: AccessWidth, value: bigint): boolean {
    const d = this.find(addr);
    if (d === undefined || addr + width > d.base + d.size) return false;
    d.write(addr - d.base, width, value);
    return true;
  }

  /** Let every device advance (timers, input) between engine slices. */
  tick(): void {
    for (const d of this.devices) d.tick?.();
  }
}
