/**
 * vcpu/mmu.ts: the Sv39 walk (privileged spec 1.12, 4.3.2 and 4.4) on a page table built in shared
 * memory: every level, superpages, each fault cause, permission bits with SUM and MXR, and the A/D
 * updates (on every copy of a mirrored VM).
 */
import test from "ava";
import { computeLayout, createSharedMemory, RAM_BASE } from "../shared-mem/layout.ts";
import { PhysicalMap } from "../shared-mem/p2m.ts";
import { ramPhysicalMemory, translate } from "../vcpu/mmu.ts";
import { AccessKind } from "../vcpu/tlb.ts";
import { MStatus, Priv } from "../vcpu/csr.ts";
import { Cause } from "../vcpu/exits.ts";

const V = 1, R = 2, W = 4, X = 8, U = 16, A = 64, D = 128;
const ROOT = RAM_BASE + 0x1000, L1 = RAM_BASE + 0x2000, L0 = RAM_BASE + 0x3000;

function machine(copies = 1) {
  const layout = computeLayout({ ramSize: 64 << 20, copies, spareFrames: 0, harts: 1 });
  const memory = createSharedMemory(layout);
  const map = new PhysicalMap(memory.buffer, layout);
  map.initialize();
  const view = new DataView(memory.buffer);
  const mirrorOffsets = Array.from({ length: copies - 1 }, (_, k) => layout.mirrorOffset(k + 1));
  const physical = ramPhysicalMemory(memory.buffer, map, mirrorOffsets);
  const setPte = (table: number, index: number, target: number | bigint, flags: number) =>
    view.setBigUint64(table - RAM_BASE + index * 8, ((BigInt(target) >> 12n) << 10n) | BigInt(flags), true);
  const pte = (table: number, index: number, copy = 0) => Number(view.getBigUint64(table - RAM_BASE + index * 8 + copy * layout.copyStride, true) & 0x3ffn);
  const satp = (8n << 60n) | BigInt(ROOT / 4096);
  const walk = (va: bigint, kind: AccessKind, priv: Priv = Priv.S, mstatus = 0) => translate(va, kind, priv, satp, mstatus, physical);
  return { setPte, pte, walk, satp, physical };
}

test("three levels to a 4 KiB page, and the page offset carried over", (t) => {
  const m = machine();
  m.setPte(ROOT, 1, L1, V);
  m.setPte(L1, 2, L0, V);
  m.setPte(L0, 3, RAM_BASE + 0x50_0000, V | R | W | X | A | D);
  const va = (1n << 30n) | (2n << 21n) | (3n << 12n) | 0xabcn;
  t.deepEqual(m.walk(va, AccessKind.Load), { paddr: BigInt(RAM_BASE + 0x50_0abc) });
  t.deepEqual(m.walk(va + 0x1000n, AccessKind.Load), { fault: Cause.LoadPageFault }, "the next PTE is invalid");
});

test("gigapages and megapages map the low virtual bits through; misaligned ones fault", (t) => {
  const m = machine();
  m.setPte(ROOT, 2, 0x8000_0000, V | R | X | A); // 1 GiB at VA 0x8000_0000, identity
  t.deepEqual(m.walk(0x8123_4567n, AccessKind.Fetch), { paddr: 0x8123_4567n, leafLevel: 2 });
  m.setPte(ROOT, 3, L1, V);
  m.setPte(L1, 5, RAM_BASE + 0x40_0000, V | R | A); // 2 MiB at VA 0xc0a0_0000
  t.deepEqual(m.walk(0xc0a1_2345n, AccessKind.Load), { paddr: BigInt(RAM_BASE + 0x41_2345), leafLevel: 1 });
  m.setPte(L1, 6, RAM_BASE + 0x40_1000, V | R | A); // PPN not 2 MiB-aligned
  t.deepEqual(m.walk(0xc0c0_0000n, AccessKind.Load), { fault: Cause.LoadPageFault });
  m.setPte(ROOT, 4, 0x1_0000_1000, V | R | A); // 1 GiB leaf, PPN not 1 GiB-aligned
  t.deepEqual(m.walk(0x1_0000_0000n, AccessKind.Load), { fault: Cause.LoadPageFault });
});

test("high physical page numbers are exact (PPN bits above bit 21 come from the PTE's high word)", (t) => {
  const m = machine();
  m.setPte(ROOT, 0, 0x3f_c000_0000n, V | R | A); // a 1 GiB leaf far above RAM: MMIO-like, not RAM
  t.deepEqual(m.walk(0x1234_5678n, AccessKind.Load), { paddr: 0x3f_d234_5678n, leafLevel: 2 });
});

test("each malformed case faults with the access's own page-fault cause", (t) => {
  const m = machine();
  t.deepEqual(m.walk(0x0000_0040_0000_0000n, AccessKind.Load), { fault: Cause.LoadPageFault }, "bits 63..39 differ from bit 38");
  t.deepEqual(m.walk(0xffff_ffc0_0000_0000n, AccessKind.Store), { fault: Cause.StorePageFault }, "canonical, but invalid PTE");
  m.setPte(ROOT, 1, RAM_BASE, V | W | A | D);
  t.deepEqual(m.walk(1n << 30n, AccessKind.Store), { fault: Cause.StorePageFault }, "W without R is reserved");
  m.setPte(ROOT, 1, L1, V | A);
  t.deepEqual(m.walk(1n << 30n, AccessKind.Load), { fault: Cause.LoadPageFault }, "A on a non-leaf is reserved");
  m.setPte(ROOT, 1, L1, V);
  m.setPte(L1, 0, RAM_BASE, V | R | A);
  t.deepEqual(m.walk(1n << 30n, AccessKind.Load), { paddr: BigInt(RAM_BASE), leafLevel: 1 });
  m.setPte(ROOT, 1, 0x1000, V); // the next table is not RAM
  t.deepEqual(m.walk(1n << 30n, AccessKind.Fetch), { fault: Cause.InstructionAccessFault });
});

test("reserved high PTE bits fault", (t) => {
  const m = machine();
  m.setPte(ROOT, 1, (1n << 56n) | BigInt(RAM_BASE), V | R | A); // PPN bits reach bit 54+ of the PTE
  t.deepEqual(m.walk(1n << 30n, AccessKind.Load), { fault: Cause.LoadPageFault });
});

test("U pages: not for S without SUM, never fetched by S; MXR makes executable pages readable", (t) => {
  const m = machine();
  m.setPte(ROOT, 1, RAM_BASE, V | R | U | A);
  m.setPte(ROOT, 2, RAM_BASE, V | X | A);
  t.deepEqual(m.walk(1n << 30n, AccessKind.Load, Priv.U), { paddr: BigInt(RAM_BASE), leafLevel: 2 });
  t.deepEqual(m.walk(1n << 30n, AccessKind.Load, Priv.S), { fault: Cause.LoadPageFault });
  t.deepEqual(m.walk(1n << 30n, AccessKind.Load, Priv.S, MStatus.SUM), { paddr: BigInt(RAM_BASE), leafLevel: 2 });
  m.setPte(ROOT, 1, RAM_BASE, V | R | X | U | A);
  t.deepEqual(m.walk(1n << 30n, AccessKind.Fetch, Priv.S, MStatus.SUM), { fault: Cause.InstructionPageFault });
  t.deepEqual(m.walk(2n << 30n, AccessKind.Fetch, Priv.U), { fault: Cause.InstructionPageFault }, "not a U page");
  t.deepEqual(m.walk(2n << 30n, AccessKind.Load), { fault: Cause.LoadPageFault });
  t.deepEqual(m.walk(2n << 30n, AccessKind.Load, Priv.S, MStatus.MXR), { paddr: 0x8000_0000n, leafLevel: 2 });
  t.deepEqual(m.walk(0x1234n, AccessKind.Store, Priv.M), { paddr: 0x1234n }, "M-mode is not translated");
});

test("A is set by any access and D by a store, on every copy of a mirrored VM", (t) => {
  const m = machine(3);
  m.setPte(ROOT, 1, L1, V);
  m.setPte(L1, 0, L0, V);
  m.setPte(L0, 0, RAM_BASE + 0x8000, V | R | W);
  t.deepEqual(m.walk(1n << 30n, AccessKind.Load), { paddr: BigInt(RAM_BASE + 0x8000) });
  t.is(m.pte(L0, 0), V | R | W | A);
  t.deepEqual(m.walk((1n << 30n) + 8n, AccessKind.Store), { paddr: BigInt(RAM_BASE + 0x8008) });
  for (const copy of [0, 1, 2]) t.is(m.pte(L0, 0, copy), V | R | W | A | D, `copy ${copy}`);
  t.is(m.pte(L1, 0), V, "non-leaf entries are left alone");
});
