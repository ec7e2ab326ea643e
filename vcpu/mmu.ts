/**
 * Sv39 address translation (privileged spec 1.12, section 4.4), done by host code on TLB misses.
 * A and D bits are set by the walk itself (as QEMU does), with a compare-and-swap so that a
 * concurrent walk or store by another hart is not lost.
 */
import { PAGE_SIZE, RAM_BASE } from "../shared-mem/layout.ts";
import { hostOffsetOf, type PhysicalMap } from "../shared-mem/p2m.ts";
import { Cause } from "./exits.ts";
import { MStatus, Priv } from "./csr.ts";
import { AccessKind } from "./tlb.ts";
import type { MirrorLocks } from "../sync/stripes.ts";

const PTE_V = 1n, PTE_R = 2n, PTE_W = 4n, PTE_X = 8n, PTE_U = 16n;
/** The same PTE bits, for the low word as a number. */
const V = 1, R = 2, W = 4, X = 8, U = 16, A = 64, D = 128;
const PPN_MASK = (1n << 44n) - 1n;
export const SATP_MODE_SV39 = 8n;

const PAGE_FAULT: Record<AccessKind, number> = {
  [AccessKind.Fetch]: Cause.InstructionPageFault,
  [AccessKind.Load]: Cause.LoadPageFault,
  [AccessKind.Store]: Cause.StorePageFault,
};
export const ACCESS_FAULT: Record<AccessKind, number> = {
  [AccessKind.Fetch]: Cause.InstructionAccessFault,
  [AccessKind.Load]: Cause.LoadAccessFault,
  [AccessKind.Store]: Cause.StoreAccessFault,
};

export interface PhysicalMemory {
  /** Host byte offset of a guest-physical RAM address, or -1 when it is not RAM. */
  hostOffset(paddr: bigint): number;
  /** The same for an address as a number (exact below 2^53; anything above is not RAM). */
  hostOffsetOfNumber(paddr: number): number;
  /** Views of the shared memory for PTE reads and A/D updates. */
  readonly quads: BigInt64Array;
  readonly words: Int32Array;
  /** Host distances to the mirror copies, which A/D updates must reach too. */
  readonly mirrorOffsets: readonly number[];
  /** The VM's mirror locks: an A/D update is an atomic read-modify-write of every copy. */
  readonly locks?: MirrorLocks;
}

/** `leafLevel`: 1 for a megapage leaf, 2 for a gigapage (a TLB caches them as 4 KiB pieces); absent for 4 KiB pages. */
export type Translation = { paddr: bigint; leafLevel?: 1 | 2; fault?: undefined } | { fault: number; paddr?: undefined; leafLevel?: undefined };

/**
 * Translate `vaddr` for an access of `kind` at privilege `priv` (already the effective one:
 * MPRV applied for data). Returns the physical address or the exception cause.
 */
export function translate(
  vaddr: bigint,
  kind: AccessKind,
  priv: Priv,
  satp: bigint,
  mstatus: number,
  memory: PhysicalMemory,
): Translation {
  const va = BigInt.asUintN(64, vaddr);
  if (priv === Priv.M || satp >> 60n !== SATP_MODE_SV39) return { paddr: va };
  // Bits 63..39 must all equal bit 38.
  const high = va >> 38n;
  if (high !== 0n && high !== (1n << 26n) - 1n) return { fault: PAGE_FAULT[kind] };

  // The walk itself in plain numbers (BigInt arithmetic costs 15-40x): the 27-bit virtual page
  // number, physical addresses as doubles (exact below 2^53, and anything above is not RAM), a PTE
  // as its two 32-bit halves.
  const vpn = Number((va >> 12n) & 0x7ff_ffffn);
  let table = Number(satp & PPN_MASK) * PAGE_SIZE;
  for (let level = 2; level >= 0; level--) {
    const pteAddr = table + ((vpn >>> (9 * level)) & 0x1ff) * 8;
    const host = memory.hostOffsetOfNumber(pteAddr);
    if (host < 0) return { fault: ACCESS_FAULT[kind] };
    const words = memory.words;
    const index = host >>> 2;
    // A PTE is written with one 64-bit store: reading high, low, high again and retrying on a
    // change gives a value it really held.
    let hi: number, lo: number;
    do {
      hi = Atomics.load(words, index + 1);
      lo = Atomics.load(words, index);
    } while (Atomics.load(words, index + 1) !== hi);
    if ((lo & V) === 0 || ((lo & R) === 0 && (lo & W) !== 0) || hi >>> 22 !== 0) return { fault: PAGE_FAULT[kind] };
    const ppn = (hi & 0x3f_ffff) * 0x40_0000 + (lo >>> 10);
    if ((lo & (R | X)) === 0) {
      if ((lo & (A | D | U)) !== 0) return { fault: PAGE_FAULT[kind] }; // reserved for non-leaf
      table = ppn * PAGE_SIZE;
      continue;
    }
    // Leaf: permissions, and superpages must be aligned (checked before A/D are touched).
    const lowPages = (1 << (9 * level)) - 1;
    if (!permittedBits(lo, kind, priv, mstatus) || (ppn & lowPages) !== 0) return { fault: PAGE_FAULT[kind] };
    const flags = A | (kind === AccessKind.Store ? D : 0);
    let leafPpn = ppn;
    if ((lo & flags) !== flags) {
      const updated = setAccessedDirty(memory, host, BigInt(flags), kind, priv, mstatus, BigInt(lowPages));
      if (typeof updated !== "bigint") return updated;
      leafPpn = Number((updated >> 10n) & PPN_MASK);
    }
    const page = leafPpn - (leafPpn & lowPages) + (vpn & lowPages);
    const paddr = BigInt(page) * 4096n + (va & 0xfffn);
    return level > 0 ? { paddr, leafLevel: level as 1 | 2 } : { paddr };
  }
  return { fault: PAGE_FAULT[kind] };
}

/**
 * Set A, and D for stores, atomically with respect to other harts' walks and stores, on every
 * copy. Returns the leaf PTE as updated, or a fault when another hart changed it under us into one
 * that no longer permits the access.
 */
function setAccessedDirty(
  memory: PhysicalMemory,
  host: number,
  flags: bigint,
  kind: AccessKind,
  priv: Priv,
  mstatus: number,
  lowPages: bigint,
): bigint | { fault: number } {
  const index = host >>> 3;
  let pte = BigInt.asUintN(64, Atomics.load(memory.quads, index));
  while ((pte & flags) !== flags) {
    const expected = pte;
    const setFlags = (): bigint => {
      const seen = BigInt.asUintN(64, Atomics.compareExchange(memory.quads, index, BigInt.asIntN(64, expected), BigInt.asIntN(64, expected | flags)));
      if (seen === expected) {
        for (const offset of memory.mirrorOffsets) Atomics.store(memory.quads, index + offset / 8, BigInt.asIntN(64, expected | flags));
      }
      return seen;
    };
    const seen = memory.locks ? memory.locks.forAtomic(host, 8, setFlags) : setFlags();
    if (seen === pte) return pte | flags;
    pte = seen; // another hart changed the PTE under us: check it again
    const misaligned = (((pte >> 10n) & PPN_MASK) & lowPages) !== 0n;
    if ((pte & PTE_V) === 0n || (pte & (PTE_R | PTE_X)) === 0n || !permitted(pte, kind, priv, mstatus) || misaligned) {
      return { fault: PAGE_FAULT[kind] };
    }
  }
  return pte;
}

/** permitted() on the low word of a PTE. */
function permittedBits(lo: number, kind: AccessKind, priv: Priv, mstatus: number): boolean {
  const user = (lo & U) !== 0;
  if (priv === Priv.U && !user) return false;
  if (priv === Priv.S && user && (kind === AccessKind.Fetch || (mstatus & MStatus.SUM) === 0)) return false;
  switch (kind) {
    case AccessKind.Fetch:
      return (lo & X) !== 0;
    case AccessKind.Load:
      return (lo & R) !== 0 || ((mstatus & MStatus.MXR) !== 0 && (lo & X) !== 0);
    case AccessKind.Store:
      return (lo & W) !== 0;
  }
}

function permitted(pte: bigint, kind: AccessKind, priv: Priv, mstatus: number): boolean {
  const user = (pte & PTE_U) !== 0n;
  if (priv === Priv.U && !user) return false;
  if (priv === Priv.S && user && (kind === AccessKind.Fetch || (mstatus & MStatus.SUM) === 0)) return false;
  switch (kind) {
    case AccessKind.Fetch:
      return (pte & PTE_X) !== 0n;
    case AccessKind.Load:
      return (pte & PTE_R) !== 0n || ((mstatus & MStatus.MXR) !== 0 && (pte & PTE_X) !== 0n);
    case AccessKind.Store:
      return (pte & PTE_W) !== 0n;
  }
}

/** Guest-physical RAM as the MMU and the slow paths see it: through the p2m, poison checked. */
export function ramPhysicalMemory(
  buffer: ArrayBufferLike,
  map: PhysicalMap,
  mirrorOffsets: readonly number[] = [],
  locks?: MirrorLocks,
): PhysicalMemory {
  const limit = BigInt(RAM_BASE) + BigInt(map.pages * PAGE_SIZE);
  const end = RAM_BASE + map.pages * PAGE_SIZE;
  return {
    quads: new BigInt64Array(buffer),
    words: new Int32Array(buffer),
    mirrorOffsets,
    locks,
    hostOffset(paddr: bigint): number {
      // MachineCheck propagates to the hart, which has the page recovered and retries.
      return paddr >= BigInt(RAM_BASE) && paddr < limit ? hostOffsetOf(map, Number(paddr)) : -1;
    },
    hostOffsetOfNumber(paddr: number): number {
      return paddr >= RAM_BASE && paddr < end ? hostOffsetOf(map, paddr) : -1;
    },
  };
}
