/**
 * Set a 64-bit variable of a guest ELF in a copy of the file: the kernel microbenchmarks
 * (guests/kbench/micro-*.c) read their loop count from the symbol `iterations`, so one build serves
 * every emulator, each with a count that makes its run long enough to time (as the race stress
 * tester sets `race_iterations`, but in the file, because QEMU must load it too).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parseElf } from "../hypervisor/elf.ts";

let scratch: string | undefined;
// The patched copies live as long as the process that made them.
process.on("exit", () => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** A copy of `elf` in a temporary folder with the u64 at `symbol` set to `value`; returns its path. */
export function patchElfU64(elf: string, symbol: string, value: bigint): string {
  // A copy of the file's bytes, so that a segment's fileData.byteOffset is its file offset.
  const bytes = new Uint8Array(readFileSync(elf));
  const image = parseElf(bytes, elf);
  const address = image.symbols.get(symbol);
  if (address === undefined) throw new Error(`${elf} has no symbol ${symbol}`);
  const segment = image.segments.find((s) => address >= s.vaddr && address + 8n <= s.vaddr + BigInt(s.fileData.length));
  if (!segment) throw new Error(`${elf}: ${symbol} is not in a loaded segment's file data`);
  const offset = segment.fileData.byteOffset + Number(address - segment.vaddr);
  new DataView(bytes.buffer).setBigUint64(offset, value, true);
  scratch ??= mkdtempSync(join(tmpdir(), "kmv-patched-"));
  const out = join(scratch, `${basename(elf, ".elf")}-${symbol}-${value}.elf`);
  writeFileSync(out, bytes);
  return out;
}
