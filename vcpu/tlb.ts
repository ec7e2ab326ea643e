/**
 * The software TLB in each hart's shared-memory area. The engine's fast path for every fetch,
 * load and store is a hit here (host address = vaddr + addend); anything else — a miss, MMIO,
 * a page-crossing access — goes to the host, which walks the page table (vcpu/mmu.ts) and fills.
 *
 * There is one set per (privilege, access kind), so that permission checks are baked into the
 * entries and a privilege change needs no flush, only a different set (chosen before each engine
 * call). M-mode without MPRV is identity-mapped through its set as well, so one fast path serves
 * every mode. Sets are flushed when satp, SUM or MXR change, on sfence.vma, and when the
 * hypervisor remaps a guest page.
 *
 * Flushing is O(1): a tag is the virtual page number (at most 52 bits) with the hart's TLB
 * generation in bits 52..63, and the engines compare against vpn | generation << 52. A flush bumps
 * the generation; only when it wraps are the entries rewritten. Each address space (satp value)
 * keeps its generation until a flush, so switching back to one finds its entries live. So the TLB can be large (4096
 * entries per set: measured, memory-bound guests ran ~1.9× faster than with 256) without making
 * the flushes Linux does on every context switch and sfence.vma cost ~60 µs each.
 */
import { HartSlot, TLB_ENTRIES, TLB_ENTRY_SIZE, TLB_OFFSET, TLB_SET_SIZE, TLB_SETS } from "../shared-mem/layout.ts";
import { Priv } from "./csr.ts";

export const AccessKind = { Fetch: 0, Load: 1, Store: 2 } as const;
export type AccessKind = (typeof AccessKind)[keyof typeof AccessKind];

const PRIV_INDEX: Record<Priv, number> = { [Priv.U]: 0, [Priv.S]: 1, [Priv.M]: 2 };

/** Byte offset of a set from the hart base. */
export function tlbSetOffset(priv: Priv, kind: AccessKind): number {
  return TLB_OFFSET + (PRIV_INDEX[priv] * 3 + kind) * TLB_SET_SIZE;
}

export function tlbIndex(vpn: bigint): number {
  return Number(vpn & BigInt(TLB_ENTRIES - 1));
}

/** Tags hold the generation from this bit up. */
export const TAG_GENERATION_SHIFT = 52n;
/** Generations run 1..MAX_GENERATION; -1 (an empty entry) must never be a live tag. */
const MAX_GENERATION = 4094;

/** The hart's current TLB generation (for tests and tools that read entries). */
export function tlbGeneration(view: DataView, hartBase: number): number {
  return Number(view.getBigUint64(hartBase + HartSlot.TLB_TAG, true) >> TAG_GENERATION_SHIFT);
}

/**
 * The host page the hart's current fetch set maps the virtual address (pcLow, pcHigh: its two
 * 32-bit halves) to, or -1 when the set holds no live entry for it. For host code on the hot path
 * (vcpu/jit.ts), so no BigInt: the tag is compared as two words.
 */
export function cachedFetchPage(u32: Uint32Array, hartBase: number, pcLow: number, pcHigh: number): number {
  const vpnLow = ((pcLow >>> 12) | (pcHigh << 20)) >>> 0;
  const vpnHigh = pcHigh >>> 12;
  const set = u32[(hartBase + HartSlot.FETCH_TLB) >>> 2]!;
  const entry = (hartBase + set + (vpnLow & (TLB_ENTRIES - 1)) * TLB_ENTRY_SIZE) >>> 2;
  const generationHigh = u32[(hartBase + HartSlot.TLB_TAG + 4) >>> 2]!; // generation << (52 - 32)
  if (u32[entry] !== vpnLow || u32[entry + 1] !== ((vpnHigh | generationHigh) >>> 0)) return -1;
  // Host offsets are below 4 GiB: the low word of page + addend is the host page.
  return ((pcLow & ~0xfff) + u32[entry + 2]!) >>> 0;
}

/** Address spaces whose generation the TLB remembers (Tlb.switchSpace); more, and it forgets all but the current one. */
const MAX_SPACES = 64;

/** Superpages tracked for one-page flushes before any one-page flush drops everything. */
const MAX_TRACKED_SUPERPAGES = 256;
const OVERFLOWED = -(1n << 62n);

export class Tlb {
  /** The generation live entries carry: the current address space's. */
  private generation = 0;
  /** The next generation to hand out; the sets are emptied when they run out. */
  private nextGeneration = MAX_GENERATION + 1;
  /** The current address space (the satp value), and the generation of each recently used one. */
  private space = 0n;
  private readonly spaces = new Map<bigint, number>();

  constructor(
    private readonly view: DataView,
    private readonly words: Int32Array,
    private readonly hartBase: number,
  ) {
    this.flushAll();
  }

  /**
   * The superpages whose pieces may be cached since the last full flush: a megapage as its vpn >> 9,
   * a gigapage as -1 - (vpn >> 18); OVERFLOWED once there were too many to track.
   */
  private readonly superpages = new Set<bigint>();

  private noteSuperpage(vaddr: bigint, leafLevel: 1 | 2): void {
    const vpn = BigInt.asUintN(64, vaddr) >> 12n;
    if (this.superpages.size >= MAX_TRACKED_SUPERPAGES) this.superpages.add(OVERFLOWED);
    else this.superpages.add(leafLevel === 1 ? vpn >> 9n : -1n - (vpn >> 18n));
  }

  /**
   * Map the page of `vaddr` to the host page at `hostPage` for this privilege and access kind.
   * `mirrored` (store sets only) sets bit 0 of the addend: the engine then also writes every copy.
   */
  fill(priv: Priv, kind: AccessKind, vaddr: bigint, hostPage: number, mirrored = false, leafLevel?: 1 | 2): void {
    if (leafLevel !== undefined) this.noteSuperpage(vaddr, leafLevel);
    const vpn = BigInt.asUintN(64, vaddr) >> 12n;
    const entry = this.hartBase + tlbSetOffset(priv, kind) + tlbIndex(vpn) * TLB_ENTRY_SIZE;
    const addend = BigInt(hostPage) - (vpn << 12n) + (mirrored ? 1n : 0n);
    this.view.setBigInt64(entry + 8, BigInt.asIntN(64, addend), true);
    this.view.setBigInt64(entry, BigInt.asIntN(64, vpn | (BigInt(this.generation) << TAG_GENERATION_SHIFT)), true);
  }

  /** Drop every translation of every address space: a new generation (entries of older ones no longer match). */
  flushAll(): void {
    this.superpages.clear();
    this.spaces.clear();
    this.newGeneration();
  }

  /**
   * Drop the translations of the page of `vaddr`, in every address space (sfence.vma with an
   * address). Each set holds one entry per index, whatever its space, so emptying that slot of the
   * nine sets is enough. A megapage or gigapage is cached as 4 KiB pieces, which one address does
   * not name: an address inside one (or any, once too many were cached to track) drops everything.
   */
  flushPage(vaddr: bigint): void {
    const vpn = BigInt.asUintN(64, vaddr) >> 12n;
    if (this.superpages.has(vpn >> 9n) || this.superpages.has(-1n - (vpn >> 18n)) || this.superpages.has(OVERFLOWED)) return this.flushAll();
    const index = tlbIndex(vpn);
    for (let set = 0; set < TLB_SETS; set++) {
      const entry = (this.hartBase + TLB_OFFSET + set * TLB_SET_SIZE + index * TLB_ENTRY_SIZE) >>> 2;
      this.words[entry] = -1;
      this.words[entry + 1] = -1;
    }
  }

  /**
   * The hart now translates through `satp` (a new value was written). Entries are tagged with
   * their address space's generation, so those of a space the hart comes back to are live again
   * (ASID-tagged entries, as the privileged spec allows: an OS that changes a space's page tables
   * while another is current runs sfence.vma, which drops everything here). A space is keyed by
   * the whole satp — mode, ASID and root page — so that an OS that gives every process ASID 0
   * (and relies on an sfence.vma after each switch) is never served another process's entries.
   */
  switchSpace(satp: bigint): void {
    if (satp === this.space) return;
    this.space = satp;
    const known = this.spaces.get(satp);
    if (known === undefined) this.newGeneration();
    else this.setGeneration(known);
  }

  /** A generation never used since the sets were last emptied, for the current space. */
  private newGeneration(): void {
    if (this.nextGeneration > MAX_GENERATION) {
      // First use, or the generations ran out: really empty the sets (tags -1 never match).
      const start = (this.hartBase + TLB_OFFSET) >>> 2;
      this.words.fill(-1, start, start + (TLB_SETS * TLB_SET_SIZE) / 4);
      this.spaces.clear();
      this.nextGeneration = 1;
    }
    if (this.spaces.size >= MAX_SPACES) this.spaces.clear();
    this.setGeneration(this.nextGeneration++);
    this.spaces.set(this.space, this.generation);
  }

  private setGeneration(generation: number): void {
    this.generation = generation;
    this.view.setBigUint64(this.hartBase + HartSlot.TLB_TAG, BigInt(generation) << TAG_GENERATION_SHIFT, true);
  }

  /** Tell the engine which sets to use for fetches and data accesses. */
  select(fetchPriv: Priv, dataPriv: Priv): void {
    this.view.setInt32(this.hartBase + HartSlot.FETCH_TLB, tlbSetOffset(fetchPriv, AccessKind.Fetch), true);
    this.view.setInt32(this.hartBase + HartSlot.DATA_TLB, tlbSetOffset(dataPriv, AccessKind.Load), true);
  }
}
