/**
 * The mirroring policy of a VM, and the hypercall through which a guest kernel changes it.
 *
 * Policies: `off` (one copy), `vm` (every guest page protected), `ranges:START-END,...` (only
 * the listed guest-physical ranges, page-granular, END exclusive). A protected page's stores go
 * to every copy, a DUE in it is recovered, the scrubber checks it.
 *
 * Hypercall (handled by the hypervisor before the guest's trap handler, at any privilege):
 *   ecall with a7 = KMEMVISOR_EXTENSION (0x0A4B4D56, in the SBI experimental range), a6 = function:
 *     0 PROBE    → a0 = 0, a1 = interface version (1)
 *     1 PROTECT  a0 = base, a1 = size → a0 = 0, or −3 (invalid address) / −2 (not supported: VM unmirrored)
 *     2 RELEASE  a0 = base, a1 = size → a0 = 0, or −3
 *     3 STATUS   → a0 = 0, a1 = copies, a2 = protected pages, a3 = pages recovered so far
 *   Unknown functions return a0 = −2. Errors follow the SBI convention (negative in a0).
 */
import { PAGE_SIZE, RAM_BASE, mirrorOffsetsOf, type MemoryLayout } from "../shared-mem/layout.ts";
import type { PhysicalMap } from "../shared-mem/p2m.ts";

export const KMEMVISOR_EXTENSION = 0x0a4b4d56n;
export const HypercallFunction = { Probe: 0n, Protect: 1n, Release: 2n, Status: 3n } as const;
const SBI_ERR_NOT_SUPPORTED = -2n;
const SBI_ERR_INVALID_ADDRESS = -3n;

export type MirrorPolicy = { kind: "off" } | { kind: "vm" } | { kind: "ranges"; ranges: [number, number][] };

/** Parse `--mirror off|vm|ranges:START-END,...` (hex or decimal guest-physical addresses). */
export function parseMirrorPolicy(text: string): MirrorPolicy {
  if (text === "off" || text === "vm") return { kind: text };
  if (!text.startsWith("ranges:")) throw new RangeError(`bad --mirror "${text}": expected off, vm or ranges:START-END,...`);
  const ranges = text.slice(7).split(",").map((part): [number, number] => {
    const match = /^(0x[0-9a-f]+|\d+)-(0x[0-9a-f]+|\d+)$/i.exec(part.trim());
    if (!match) throw new RangeError(`bad --mirror range "${part}": expected START-END, e.g. 0x80000000-0x80400000`);
    const [start, end] = [Number(match[1]), Number(match[2])];
    if (end <= start) throw new RangeError(`bad --mirror range "${part}": END must be above START`);
    return [start, end];
  });
  return { kind: "ranges", ranges };
}

export class MirrorControl {
  constructor(
    private readonly buffer: ArrayBufferLike,
    private readonly layout: MemoryLayout,
    private readonly map: PhysicalMap,
    /** Every hart must drop its TLB after protection changes (store entries carry the mirror bit). */
    private readonly shootdown: () => void,
    private readonly recoveries: () => number,
  ) {}

  /** Apply a policy at machine creation (before any guest code runs). */
  apply(policy: MirrorPolicy): void {
    if (policy.kind !== "ranges") return; // PhysicalMap.initialize protected everything iff mirrored
    for (let page = 0; page < this.map.pages; page++) this.map.setProtected(page, false);
    for (const [start, end] of policy.ranges) {
      if (this.map.pageOf(start) < 0 || this.map.pageOf(end - 1) < 0) {
        throw new RangeError(`--mirror range 0x${start.toString(16)}-0x${end.toString(16)} is not inside guest RAM`);
      }
      this.setRange(start, end - start, true);
    }
  }

  /** Protect or release [base, base+size), whole pages; returns false when it is not all RAM. */
  setRange(base: number, size: number, on: boolean): boolean {
    const first = this.map.pageOf(base);
    const last = this.map.pageOf(base + size - 1);
    if (size <= 0 || first < 0 || last < 0) return false;
    const bytes = new Uint8Array(this.buffer);
    for (let page = first; page <= last; page++) {
      if (on && !this.map.isProtected(page)) {
        // The copies of an unprotected page are stale: bring them up to date first.
        const host = this.map.frameOf(page) * PAGE_SIZE;
        for (const mirror of mirrorOffsetsOf(this.layout)) bytes.copyWithin(host + mirror, host, host + PAGE_SIZE);
      }
      this.map.setProtected(page, on);
    }
    this.shootdown();
    return true;
  }

  protectedPages(): number {
    let n = 0;
    for (let page = 0; page < this.map.pages; page++) if (this.map.isProtected(page)) n++;
    return n;
  }

  /** Serve a hypercall: `args` are a0..a7; returns the new a0..a3, or undefined when a7 is not ours. */
  hypercall(args: readonly bigint[]): bigint[] | undefined {
    if (args[7] !== KMEMVISOR_EXTENSION) return undefined;
    const fn = args[6]!;
    const mirrored = this.layout.copies > 1;
    switch (fn) {
      case HypercallFunction.Probe:
        return [0n, 1n];
      case HypercallFunction.Protect:
      case HypercallFunction.Release: {
        if (!mirrored) return [SBI_ERR_NOT_SUPPORTED];
        const base = args[0]!, size = args[1]!;
        if (base < BigInt(RAM_BASE) || size <= 0n || base + size > BigInt(RAM_BASE) + BigInt(this.layout.ramSize)) {
          return [SBI_ERR_INVALID_ADDRESS];
        }
        return [this.setRange(Number(base), Number(size), fn === HypercallFunction.Protect) ? 0n : SBI_ERR_INVALID_ADDRESS];
      }
      case HypercallFunction.Status:
        return [0n, BigInt(this.layout.copies), BigInt(this.protectedPages()), BigInt(this.recoveries())];
      default:
        return [SBI_ERR_NOT_SUPPORTED];
    }
  }
}
