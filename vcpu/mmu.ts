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

const PTE_V = 1n, PTE_R = 2n, PTE_W = 4n, PTE_X = 8n, PTE_U = 16n, PTE_A = 64n, PTE_D = 128n;
const PPN_MASK = (1n << 44n) - 1n;
const RESERVED_HIGH = ~((1n << 54n) - 1n) & ((1n << 64n) - 1n);
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
  /** Atomic view of the shared memory for PTE reads and A/D updates. */
  readonly quads: BigInt64Array;
  /** Host distances to the mirror copies, which A/D updates must reach too. */
  readonly mirrorOffsets: readonly number[];
  /** The VM's mirror locks: an A/D update is an atomic read-modify-write of every copy. */
  readonly locks?: MirrorLocks;
}

export type Translation = { paddr: bigint; fault?: undefined } | { fault: number; paddr?: undefined };

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

  let table = (satp & PPN_MASK) << 12n;
  for (let level = 2; level >= 0; level--) {
    const vpn = (va >> (12n + 9n * BigInt(level))) & 0x1ffn;
    const pteAddr = table + vpn * 8n;
    const host = memory.hostOffset(pteAddr);
    if (host < 0) return { fault: ACCESS_FAULT[kind] };
    const index = host >> 3;
    let pte = BigInt.asUintN(64, Atomics.load(memory.quads, index));
    if ((pte & PTE_V) === 0n || ((pte & PTE_R) === 0n && (pte & PTE_W) !== 0n) || (pte & RESERVED_HIGH) !== 0n) {
      return { fault: PAGE_FAULT[kind] };
    }
    if ((pte & (PTE_R | PTE_X)) === 0n) {
      if ((pte & (PTE_A | PTE_D | PTE_U)) !== 0n) return { fault: PAGE_FAULT[kind] }; // reserved for non-leaf
      table = ((pte >> 10n) & PPN_MASK) << 12n;
      continue;
    }
    // Leaf: permissions, and superpages must be aligned (checked before A/D are touched).
    const lowMask = (1n << (9n * BigInt(level))) - 1n;
    const misaligned = (p: bigint) => (((p >> 10n) & PPN_MASK) & lowMask) !== 0n;
    if (!permitted(pte, kind, priv, mstatus) || misaligned(pte)) return { fault: PAGE_FAULT[kind] };
    // Set A, and D for stores, atomically with respect to other harts' walks and stores.
    const flags = PTE_A | (kind === AccessKind.Store ? PTE_D : 0n);
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
      if (seen === pte) {
        pte |= flags;
        break;
      }
      pte = seen; // another hart changed the PTE under us: check it again
      if ((pte & PTE_V) === 0n || (pte & (PTE_R | PTE_X)) === 0n || !permitted(pte, kind, priv, mstatus) || misaligned(pte)) {
        return { fault: PAGE_FAULT[kind] };
      }
    }
    const ppn = (pte >> 10n) & PPN_MASK;
    const pageOffsetMask = (1n << (12n + 9n * BigInt(level))) - 1n;
    return { paddr: ((ppn << 12n) & ~pageOffsetMask) | (va & pageOffsetMask) };
  }
  return { fault: PAGE_FAULT[kind] };
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
  return {
    quads: new BigInt64Array(buffer),
    mirrorOffsets,
    locks,
    hostOffset(paddr: bigint): number {
      // MachineCheck propagates to the hart, which has the page recovered and retries.
      return paddr >= BigInt(RAM_BASE) && paddr < limit ? hostOffsetOf(map, Number(paddr)) : -1;
    },
  };
}
