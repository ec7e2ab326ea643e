/**
 * The mirroring policy of a VM, and the hypercall through which a guest kernel changes it.
 *
 * Policies: `off` (one copy), `vm` (every guest page protected), `ranges:START-END,...` (only
 * the listed guest-physical ranges, page-granular, END exclusive). A protected page's stores go
 * to every copy, a DUE in it is recovered, the scrubber checks it.
 *
 * Hypercall (handled by the hypervisor before the guest's trap handler, from S and M mode only;
 * from U-mode an ecall with any a7 is an ordinary environment call for the guest kernel):
 *   ecall with a7 = KMEMVISOR_EXTENSION (0x0A4B4D56, in the SBI experimental range), a6 = function:
 *     0 PROBE    → a0 = 0, a1 = interface version (1)
 *     1 PROTECT  a0 = base, a1 = size → a0 = 0, or −3 (invalid address) / −2 (not supported: VM
 *                unmirrored) / −1 (failed: a page in the range lost its data to an unrecovered
 *                DUE; nothing changed, the page stays unprotected and its next access stops the VM)
 *     2 RELEASE  a0 = base, a1 = size → a0 = 0, or −3
 *     3 STATUS   → a0 = 0, a1 = copies, a2 = protected pages, a3 = pages recovered so far
 *   Unknown functions return a0 = −2. Errors follow the SBI convention (negative in a0).
 * PROTECT and RELEASE return only when every hart has dropped the store-TLB entries that carry
 * the old protection (a synchronous shootdown, sync/shootdown.ts): the harts are held out of their
 * engines while the copies are brought up to date and the protection bits change, so no store
 * falls between the copy and the change.
 */
import { PAGE_SIZE, RAM_BASE, mirrorOffsetsOf, type MemoryLayout } from "../shared-mem/layout.ts";
import type { PhysicalMap } from "../shared-mem/p2m.ts";
import { MirrorLocks } from "../sync/stripes.ts";
import { WorldHold } from "../sync/shootdown.ts";

export const KMEMVISOR_EXTENSION = 0x0a4b4d56n;
export const HypercallFunction = { Probe: 0n, Protect: 1n, Release: 2n, Status: 3n } as const;
const SBI_ERR_FAILED = -1n;
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

/** Why setRange refused a change. */
export type RangeRefusal = "invalid-address" | "poisoned";

export class MirrorControl {
  private readonly world: WorldHold;
  private readonly locks: MirrorLocks;

  constructor(
    private readonly buffer: ArrayBufferLike,
    private readonly layout: MemoryLayout,
    private readonly map: PhysicalMap,
    /** Move a page with a poisoned copy to a spare frame from its good copies (mirror/recovery.ts). */
    private readonly recoverPage: (page: number) => void,
    private readonly recoveries: () => number,
  ) {
    this.world = new WorldHold(new Int32Array(buffer), layout);
    this.locks = new MirrorLocks(buffer, layout);
  }

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

  /**
   * Protect or release [base, base+size), whole pages, with every hart held out of its engine
   * (and flushing its TLB before it runs again); returns undefined when done, or why nothing
   * changed. Call it from outside any engine call, holding no stripe or recovery lock.
   */
  setRange(base: number, size: number, on: boolean): RangeRefusal | undefined {
    const first = this.map.pageOf(base);
    const last = this.map.pageOf(base + size - 1);
    if (size <= 0 || first < 0 || last < 0) return "invalid-address";
    // A one-hart VM's hart owns memory while it runs (sync/owner.ts); serving this ecall it lets
    // go, so that the scrubber, which takes the policy lock first and the owner lock second,
    // cannot wait on it while it waits for the policy lock.
    const change = () => this.world.holding(() => this.changeHeld(first, last, on));
    return this.locks.owner ? this.locks.owner.setAside(change) : change();
  }

  private changeHeld(first: number, last: number, on: boolean): RangeRefusal | undefined {
    if (on) {
      // A page whose primary took a DUE no copy can repair holds no good data: protecting it
      // would copy the lost data into the mirrors and let the next access "recover" it.
      for (let page = first; page <= last; page++) {
        if (!this.map.isProtected(page) && this.map.isPoisoned(0, this.map.frameOf(page))) return "poisoned";
      }
    }
    const bytes = new Uint8Array(this.buffer);
    const mirrors = mirrorOffsetsOf(this.layout);
    for (let page = first; page <= last; page++) {
      if (on === this.map.isProtected(page)) continue;
      if (!on) {
        // Its copies still hold the data a DUE in it lost: recover it while they are kept.
        const frame = this.map.frameOf(page);
        for (let copy = 0; copy < this.layout.copies; copy++) {
          if (this.map.isPoisoned(copy, frame)) {
            this.recoverPage(page);
            break;
          }
        }
      }
      const host = this.map.frameOf(page) * PAGE_SIZE;
      // No hart runs now; device DMA and the scrubber's repairs take the stripe locks.
      this.locks.holding(host, PAGE_SIZE, () => {
        // The copies of an unprotected page are stale: bring them up to date first.
        if (on) for (const mirror of mirrors) bytes.copyWithin(host + mirror, host, host + PAGE_SIZE);
        this.map.setProtected(page, on);
      });
    }
    return undefined;
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
        const refusal = this.setRange(Number(base), Number(size), fn === HypercallFunction.Protect);
        return [refusal === undefined ? 0n : refusal === "poisoned" ? SBI_ERR_FAILED : SBI_ERR_INVALID_ADDRESS];
      }
      case HypercallFunction.Status:
        return [0n, BigInt(this.layout.copies), BigInt(this.protectedPages()), BigInt(this.recoveries())];
      default:
        return [SBI_ERR_NOT_SUPPORTED];
    }
  }
}
