/**
 * The per-hart decode cache: a direct-mapped table in shared memory, keyed by the raw instruction
 * bits rather than by address. Because the key is the instruction itself, code that is modified
 * (by this hart, another hart or DMA) can never execute a stale decoding, and FENCE.I has nothing
 * to flush. The interpreter reads entries in wasm; host code fills them on a miss.
 *
 * Entry (16 bytes): +0 raw u32 | +4 op u16 | +8 imm i32 | +12 rd·8 u8 | +13 rs1·8 u8 | +14 rs2·8 u8
 * An all-zero entry is a valid entry for the raw bits 0, which are illegal (op 0): exactly right.
 */
import { DECODE_CACHE_ENTRIES, DECODE_CACHE_OFFSET, DECODE_ENTRY_SIZE } from "../shared-mem/layout.ts";
import type { Decoded } from "./decoder.ts";

export const DECODE_HASH_MULTIPLIER = 0x9e3779b1 | 0;
export const DECODE_HASH_SHIFT = 32 - Math.log2(DECODE_CACHE_ENTRIES);

export const DecodeEntry = { RAW: 0, OP: 4, IMM: 8, RD: 12, RS1: 13, RS2: 14 } as const;

export function decodeCacheIndex(raw: number): number {
  return Math.imul(raw, DECODE_HASH_MULTIPLIER) >>> DECODE_HASH_SHIFT;
}

export function fillDecodeCache(memory: DataView, hartBase: number, d: Decoded): void {
  const entry = hartBase + DECODE_CACHE_OFFSET + decodeCacheIndex(d.raw) * DECODE_ENTRY_SIZE;
  memory.setUint16(entry + DecodeEntry.OP, d.op, true);
  memory.setInt32(entry + DecodeEntry.IMM, d.imm, true);
  memory.setUint8(entry + DecodeEntry.RD, d.rd * 8);
  memory.setUint8(entry + DecodeEntry.RS1, d.rs1 * 8);
  memory.setUint8(entry + DecodeEntry.RS2, d.rs2 * 8);
  // The key goes in last: the entry is only ever read by this hart, but keep it well-formed throughout.
  memory.setUint32(entry + DecodeEntry.RAW, d.raw, true);
}
