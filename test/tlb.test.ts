/**
 * The software TLB (vcpu/tlb.ts): every access goes through it, so after a program has run the
 * pages it touched are cached; a hypervisor-side shootdown (vcpu/interrupts.ts) must drop them
 * before the hart runs another instruction.
 */
import test from "ava";
import { HART_AREA_SIZE, TLB_ENTRIES, TLB_ENTRY_SIZE, TLB_SET_SIZE } from "../shared-mem/layout.ts";
import { Priv } from "../vcpu/csr.ts";
import { requestTlbShootdown } from "../sync/hart-signals.ts";
import { AccessKind, cachedFetchPage, TAG_GENERATION_SHIFT, Tlb, tlbGeneration, tlbSetOffset } from "../vcpu/tlb.ts";
import { CSR, Program, R, csrrc, csrrci, csrrs, csrrsi, csrrw, jalr, ld, sd } from "./helpers/asm.ts";
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

/**
 * Status writes drop cached translations only when they change what a translation permits (SUM,
 * MXR); a kernel's interrupt enable and disable (SIE/MIE, SPIE/MPIE) keeps them, and so does
 * writing satp with the value it holds.
 */
test("a status write that changes only interrupt enables keeps the TLB; SUM or MXR, or a new satp, drops it", async (t) => {
  const SIE = 1 << 1, MIE = 1 << 3, SPIE = 1 << 5, MPIE = 1 << 7, SUM = 1 << 18, MXR = 1 << 19;
  const cachedAfter = async (write: (p: Program) => void) => {
    const p = new Program();
    p.la(R.s0, "data").emit(ld(R.a0, 0, R.s0));
    write(p);
    p.exit(0).align(4096).label("data").space(16);
    const o = await runProgram(p);
    t.is(o.result.exitCode, 0);
    return cachedPages(o.machine.memory, o.hart.base, AccessKind.Load).includes(p.address("data") >> 12n);
  };
  const SATP = 0x180;
  const status = (bits: number) => (p: Program) => p.li(R.t0, bits).emit(csrrs(0, CSR.mstatus, R.t0), csrrc(0, CSR.mstatus, R.t0));
  t.true(await cachedAfter(() => {}), "the load cached its page");
  t.true(await cachedAfter((p) => p.emit(csrrsi(0, CSR.mstatus, MIE), csrrci(0, CSR.mstatus, MIE))), "MIE set and cleared");
  t.true(await cachedAfter(status(SIE | SPIE | MPIE)), "SIE, SPIE, MPIE");
  t.true(await cachedAfter((p) => p.li(R.t0, SIE).emit(csrrs(0, 0x100, R.t0), csrrc(0, 0x100, R.t0))), "sstatus.SIE");
  t.true(await cachedAfter((p) => p.emit(csrrw(R.t0, SATP, 0))), "satp written with the value it holds (Bare)");
  // (M-mode does not translate: a new satp changes nothing here but the cached entries.)
  t.false(await cachedAfter((p) => p.li(R.t0, (8n << 60n) | 0x80100n).emit(csrrw(0, SATP, R.t0))), "a new satp");
  t.false(await cachedAfter(status(SUM)), "SUM");
  t.false(await cachedAfter(status(MXR)), "MXR");
});

test("TLB entries are tagged with their address space: switching back finds them live; a flush drops every space's", (t) => {
  const buffer = new ArrayBuffer(HART_AREA_SIZE);
  const tlb = new Tlb(new DataView(buffer), new Int32Array(buffer), 0);
  tlb.select(Priv.S, Priv.S);
  const A = (8n << 60n) | (1n << 44n) | 0x80100n;
  const B = (8n << 60n) | (2n << 44n) | 0x80200n;
  const sameAsidOtherRoot = (8n << 60n) | (1n << 44n) | 0x80300n;
  const u32 = new Uint32Array(buffer);
  const cached = () => cachedFetchPage(u32, 0, 0x1000, 0) === 0x5000;
  tlb.switchSpace(A);
  tlb.fill(Priv.S, AccessKind.Fetch, 0x1000n, 0x5000);
  t.true(cached());
  tlb.switchSpace(B);
  t.false(cached(), "another address space does not see A's entry");
  tlb.switchSpace(sameAsidOtherRoot);
  t.false(cached(), "nor does one with A's ASID and another root table");
  tlb.switchSpace(A);
  t.true(cached(), "back in A, its entry is live again");
  tlb.flushAll();
  t.false(cached());
  tlb.switchSpace(B);
  tlb.switchSpace(A);
  t.false(cached(), "the flush (sfence.vma, SUM, a shootdown) dropped A's entries for good");
});

/** sfence.vma with an address drops that page only, unless a superpage covering it may be cached. */
test("a one-page flush drops that page in every set; an address inside a cached superpage drops everything", (t) => {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(HART_AREA_SIZE / 65536), maximum: Math.ceil(HART_AREA_SIZE / 65536), shared: true });
  const view = new DataView(memory.buffer);
  const tlb = new Tlb(view, new Int32Array(memory.buffer), 0);
  const live = (priv: Priv, kind: AccessKind, vaddr: bigint) => {
    const vpn = vaddr >> 12n;
    const tag = view.getBigUint64(tlbSetOffset(priv, kind) + Number(vpn & BigInt(TLB_ENTRIES - 1)) * TLB_ENTRY_SIZE, true);
    return tag === (vpn | (BigInt(tlbGeneration(view, 0)) << TAG_GENERATION_SHIFT));
  };
  const a = 0x4000_1000n, b = 0x4000_2000n;
  tlb.fill(Priv.U, AccessKind.Load, a, 0x10_000);
  tlb.fill(Priv.S, AccessKind.Store, a, 0x10_000);
  tlb.fill(Priv.U, AccessKind.Fetch, b, 0x11_000);
  tlb.flushPage(a + 0x123n);
  t.false(live(Priv.U, AccessKind.Load, a));
  t.false(live(Priv.S, AccessKind.Store, a));
  t.true(live(Priv.U, AccessKind.Fetch, b), "another page stays");

  const mega = 0x8020_0000n; // a 2 MiB page cached as its 4 KiB pieces
  tlb.fill(Priv.S, AccessKind.Load, mega + 0x3000n, 0x20_000, false, 1);
  tlb.flushPage(a);
  t.true(live(Priv.S, AccessKind.Load, mega + 0x3000n), "an address outside the megapage leaves its pieces");
  t.true(live(Priv.U, AccessKind.Fetch, b));
  tlb.flushPage(mega + 0x1f_f000n);
  t.false(live(Priv.S, AccessKind.Load, mega + 0x3000n), "an address inside it drops every piece");
  t.false(live(Priv.U, AccessKind.Fetch, b), "(by dropping everything)");

  tlb.fill(Priv.S, AccessKind.Load, 0xc000_5000n, 0x30_000, false, 2); // a 1 GiB page
  tlb.fill(Priv.U, AccessKind.Load, a, 0x10_000);
  tlb.flushPage(0xc123_4000n);
  t.false(live(Priv.S, AccessKind.Load, 0xc000_5000n));
  t.false(live(Priv.U, AccessKind.Load, a));
});

// A slow fetch (a TLB miss the host serves) leaves the interpreter no cached fetch page; a jump
// 8–12 KiB past it must still be looked up. It once read host memory near address 0 instead:
// Linux's ld.so died of SIGILL on bits 0 when a `ret` on a page not yet in the TLB returned 8 KiB on.
for (const distance of [8192 + 4, 8192 + 2048, 8192 + 4092]) {
  test(`the interpreter fetches right ${distance} bytes past a slow fetch`, async (t) => {
    const p = new Program();
    p.jal(R.ra, "helper"); // decodes `ret`, so the later one runs without leaving the engine
    p.la(R.t0, "hop").la(R.ra, "far");
    p.emit(0x12000073); // sfence.vma: the TLB is empty when the engine comes back
    p.emit(jalr(R.zero, R.t0, 0));
    p.label("helper").emit(jalr(R.zero, R.ra, 0));
    p.align(4096);
    p.label("hop").emit(jalr(R.zero, R.ra, 0)); // fetched by the host (a TLB miss), then returns to far
    p.space(distance - 4);
    p.label("far");
    p.exit(42);
    const { result } = await runProgram(p, { engine: { kind: "interp" }, ramSize: 1 << 20 });
    t.is(result.reason, "exit", result.fault);
    t.is(result.exitCode, 42);
  });
}
