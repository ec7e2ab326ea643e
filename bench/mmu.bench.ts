/**
 * The cost of one Sv39 page walk in host code (vcpu/mmu.ts translate), as a TLB refill pays it:
 * 1 million walks of a three-level table whose leaves already have A and D set (the common case
 * on Linux, whose kernel mappings are created with A/D and whose fault handler sets them), over
 * 512 pages so that nothing but the walk is measured.
 *
 *   npm run bench:mmu
 */
import bench from "nanobench";
import { computeLayout, createSharedMemory, RAM_BASE } from "../shared-mem/layout.ts";
import { PhysicalMap } from "../shared-mem/p2m.ts";
import { ramPhysicalMemory, translate } from "../vcpu/mmu.ts";
import { AccessKind } from "../vcpu/tlb.ts";
import { Priv } from "../vcpu/csr.ts";

const WALKS = 1_000_000;
const layout = computeLayout({ ramSize: 4 << 20, copies: 1, spareFrames: 0, harts: 1 });
const memory = createSharedMemory(layout);
const map = new PhysicalMap(memory.buffer, layout);
map.initialize();
const view = new DataView(memory.buffer);
// Root at RAM + 0x1000, level-1 table at + 0x2000, level-0 table at + 0x3000 mapping VA 0x4000_0000.. to RAM + 0x10_0000..
const pte = (ppn: number, flags: number) => (BigInt(ppn) << 10n) | BigInt(flags);
const V = 1, R = 2, W = 4, X = 8, A = 64, D = 128;
const ppnOf = (gpa: number) => gpa / 4096;
view.setBigUint64(0x1000 + 1 * 8, pte(ppnOf(RAM_BASE + 0x2000), V), true);
view.setBigUint64(0x2000 + 0 * 8, pte(ppnOf(RAM_BASE + 0x3000), V), true);
for (let i = 0; i < 512; i++) view.setBigUint64(0x3000 + i * 8, pte(ppnOf(RAM_BASE + 0x10_0000) + i, V | R | W | X | A | D), true);
const satp = (8n << 60n) | BigInt(ppnOf(RAM_BASE + 0x1000));
const physical = ramPhysicalMemory(memory.buffer, map);

bench(`Sv39 walk, leaf with A/D set × ${WALKS}`, (b) => {
  let check = 0n;
  b.start();
  for (let i = 0; i < WALKS; i++) {
    const t = translate(0x4000_0000n + BigInt((i & 511) << 12) + 8n, AccessKind.Load, Priv.S, satp, 0, physical);
    if (t.fault !== undefined) throw new Error(`fault ${t.fault}`);
    check += t.paddr;
  }
  b.end();
  if (check === 0n) throw new Error("no walk");
});
