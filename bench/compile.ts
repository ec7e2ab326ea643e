/**
 * How long V8 takes to compile a translated page, by translation size: the page of a guest ELF
 * holding `entry` is translated for that entry with each cap on the instructions taken
 * (translator.ts MAX_INSTRUCTIONS), then compiled. Run it with V8's flags choosing the compiler:
 *
 *   node --no-liftoff --no-wasm-lazy-compilation --import tsx bench/compile.ts   # optimising (TurboFan)
 *   node --liftoff-only --no-wasm-lazy-compilation --import tsx bench/compile.ts # baseline (Liftoff)
 *   node ... bench/compile.ts GUEST ENTRY-ADDRESS CAP...   (default: cpubound 0x800004b8 2048 512 256 128)
 *
 * Each size is translated and compiled three times, each time declaring a different memory size
 * (V8 caches a module by its bytes, so every compile is a real one); medians are printed.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GUEST_BIN } from "../host/repo-root.ts";
import { parseElf } from "../hypervisor/elf.ts";
import { PAGE_SIZE } from "../shared-mem/layout.ts";
import { translatePage } from "../vcpu/translator.ts";
import type { EngineMemory } from "../vcpu/wasm/wasm-sem.ts";

const [guest = "cpubound", entryText = "0x800004b8", ...capTexts] = process.argv.slice(2);
const caps = (capTexts.length > 0 ? capTexts : ["2048", "512", "256", "128"]).map(Number);
const entry = BigInt(entryText);
const elf = parseElf(readFileSync(join(GUEST_BIN, `${guest}.elf`)));
const pageAddress = entry & ~BigInt(PAGE_SIZE - 1);
const segment = elf.segments.find((s) => pageAddress >= s.paddr && pageAddress < s.paddr + BigInt(s.fileData.length));
if (!segment) throw new Error(`${guest}: no loaded bytes at 0x${pageAddress.toString(16)}`);
const page = new Uint8Array(PAGE_SIZE); // (bytes past the segment's file data are zero, as in RAM)
const from = Number(pageAddress - segment.paddr);
page.set(segment.fileData.subarray(from, from + PAGE_SIZE));
const unmirrored: EngineMemory = { ramSize: 128 << 20, ramOffset: 0, mirrorOffsets: [], perPageProtection: false, sync: "striped", lockOffset: 0, lockFree: false };
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

console.log(`${guest}, page 0x${pageAddress.toString(16)}, entry 0x${entry.toString(16)}`);
for (const cap of caps) {
  const translateMs: number[] = [];
  const compileMs: number[] = [];
  let instructions = 0;
  for (let round = 0; round < 3; round++) {
    const started = performance.now();
    const translation = translatePage(unmirrored, 2048 + round + cap, page, pageAddress, [Number(entry - pageAddress)], { maxInstructions: cap });
    if (!translation) throw new Error("nothing to translate at the entry");
    const translated = performance.now();
    new WebAssembly.Module(translation.bytes);
    compileMs.push(performance.now() - translated);
    translateMs.push(translated - started);
    instructions = translation.instructions;
  }
  console.log(`cap ${cap}: ${instructions} instructions, translate ${median(translateMs).toFixed(1)} ms, compile ${median(compileMs).toFixed(1)} ms`);
}
