/** Parsing of QEMU-style sizes ("128M", "1G", "256" = MiB) and durations. */
import { MAX_HOST_BYTES } from "../shared-mem/layout.ts";

const UNITS: Record<string, number> = { "": 1 << 20, K: 1 << 10, M: 1 << 20, G: 1 << 30 };

/** Bytes for a QEMU `-m` size: a number with an optional K/M/G suffix (no suffix = MiB). */
export function parseMemorySize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([KMG]?)(?:i?B)?$/i.exec(text.trim());
  if (!match) throw new RangeError(`bad memory size "${text}": expected e.g. 128M, 1G or 256 (MiB)`);
  const bytes = Number(match[1]) * UNITS[match[2]!.toUpperCase()]!;
  if (!Number.isInteger(bytes) || bytes % 4096 !== 0 || bytes <= 0) {
    throw new RangeError(`bad memory size "${text}": must be a positive whole number of 4 KiB pages`);
  }
  // The whole layout (copies, spares, metadata) must fit in 4 GiB: shared-mem/layout.ts says by how much.
  if (bytes >= MAX_HOST_BYTES) throw new RangeError(`memory size "${text}" is too large: a VM's host memory is at most 4 GiB (4096 MiB), RAM and metadata together`);
  return bytes;
}

export function parsePositiveInteger(name: string, text: string, max: number): number {
  return parseIntegerInRange(name, text, 1, max);
}

/** A whole number from `min` to `max`; the message names the flag and the range it accepts. */
export function parseIntegerInRange(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`bad ${name} "${text}": expected a whole number from ${min} to ${max}`);
  }
  return value;
}

/** A positive duration for flag `name`, in `unit` (the message says which flag and which unit). */
export function parseSeconds(name: string, text: string, unit = "seconds"): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`bad ${name} "${text}": expected a positive number of ${unit}`);
  }
  return value;
}
