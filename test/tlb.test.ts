/**
 * The software TLB (vcpu/tlb.ts): every access goes through it, so after a program has run the
 * pages it touched are cached; a hypervisor-side shootdown (vcpu/interrupts.ts) must drop them
 * before the hart runs another instruction.
 */
import test from "ava";
import { TLB_ENTRIES, TLB_ENTRY_SIZE, TLB_SET_SIZE } from "../shared-mem/layout.ts";
import { Priv } from "../vcpu/csr.ts";
import { requestTlbShootdown } from "../vcpu/interrupts.ts";
import { AccessKind, TAG_GENERATION_SHIFT, tlbGeneration, tlbSetOffset } from "../vcpu/tlb.ts";
import { Program, R, ld, sd } from "./helpers/asm.ts";
import { runProgram } from "./helpers/machine.ts";

/** Virtual page numbers cached in one TLB set of hart 0. */
function cachedPages(memory: WebAssembly.Memory, hartBase: number, kind: AccessKind): bigint[] {
  const view = new DataView(memory.buffer);
  const pages: bigint[] = [];
  const set = hartBase + tlbSetOffset(Priv.M, kind);
  const generation = BigInt(tlbGeneration(view, hartBase));
  for (let i = 0; i < TLB_ENTRIES; i++) {
    // Live entries carry the current generation (vcpu/tlb.ts); older ones are flushed.
    const tag = view.getBigUint64(set + i * TLB_ENTRY_SIZE, true);
    if (tag >> TAG_GENERATION_SHIFT === generation) pages.push(tag & ((1n << TAG_GENERATION_SHIFT) - 1n));
  }
  return pages;
}

test("loads and stores fill the TLB; a shootdown empties it before the next instruction", async (t) => {
  const p = new Program();
  p.la(R.s0, "data").emit(ld(R.a0, 0, R.s0), sd(R.a0, 8, R.s0)).exit(0).align(4096).label("data").space(16);
  const o = await runProgram(p);
  t.is(o.result.exitCode, 0);
  const dataPage = p.address("data") >> 12n;
  const base = o.hart.base;
  const memory = o.machine.memory;
  t.true(cachedPages(memory, base, AccessKind.Load).includes(dataPage), "load set caches the data page");
  t.true(cachedPages(memory, base, AccessKind.Store).includes(dataPage), "store set caches the data page");
  t.is(TLB_SET_SIZE, TLB_ENTRIES * TLB_ENTRY_SIZE);

  requestTlbShootdown(new Int32Array(memory.buffer), base);
  o.hart.run(1); // the parked hart executes one instruction (its wfi loop), fetching only
  t.deepEqual(cachedPages(memory, base, AccessKind.Load), []);
  t.deepEqual(cachedPages(memory, base, AccessKind.Store), []);
  t.is(cachedPages(memory, base, AccessKind.Fetch).length, 1, "only the page of the instruction just run");
});
