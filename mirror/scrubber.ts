/**
 * The scrubber: walks every guest page and compares its copies, as patrol scrubbing does.
 *  - A copy whose frame is poisoned (a DUE nobody has touched yet, e.g. in a mirror copy) gets the
 *    page moved to a spare frame from a good copy (mirror/recovery.ts).
 *  - A word that differs between copies is a silent corruption (SDC): with three copies or more a
 *    majority vote decides and the minority copies are rewritten; with two, nothing can decide
 *    which copy is right, and the word is reported.
 * A guest store reaches the copies one after the other, so a word can differ for an instant while
 * a hart is storing to it. Under the `striped` and `global` sync strategies every writer holds the
 * word's mirror lock, so the scrubber takes it too and a difference it sees then is real; under
 * `none` and `atomic` plain stores take no lock, and it looks again a few times before it believes
 * a mismatch. (Racy guests under `none` can diverge for real: the stress tester's subject.)
 */
import { ControlSlot, PAGE_SIZE, RAM_BASE, mirrorOffsetsOf, type MemoryLayout } from "../shared-mem/layout.ts";
import type { PhysicalMap } from "../shared-mem/p2m.ts";
import type { PageRecovery } from "./recovery.ts";
import { MirrorLocks } from "../sync/stripes.ts";
import { locksStores } from "../sync/strategy.ts";
import { CodeMap } from "../shared-mem/code-pages.ts";
import { WorldHold } from "../sync/shootdown.ts";

/** Looks at a differing word before believing it. */
const RECHECKS = 3;

export interface ScrubFinding {
  /** Guest-physical address of the 8-byte word. */
  address: number;
  /** The word in each copy (copy 0 = primary). */
  values: bigint[];
  /** Repaired by majority vote, or undecidable. */
  repaired: boolean;
}

export interface ScrubStats {
  passes: number;
  mismatches: number;
  repaired: number;
  undecidable: number;
}

export class Scrubber {
  private readonly quads: BigInt64Array;
  private readonly words: Int32Array;
  private readonly mirrors: readonly number[];
  /** Undecidable words already reported, with the values seen: reported again only if they change. */
  private readonly undecided = new Map<number, string>();
  private readonly locks: MirrorLocks;
  /** A repair of the primary is a write to code harts may hold translated (vcpu/jit.ts). */
  private readonly codeMap: CodeMap;
  /** The policy lock and the synchronous shootdown (sync/shootdown.ts). */
  private readonly world: WorldHold;

  constructor(
    buffer: ArrayBufferLike,
    private readonly layout: MemoryLayout,
    private readonly map: PhysicalMap,
    private readonly recovery: PageRecovery,
  ) {
    this.quads = new BigInt64Array(buffer);
    this.words = new Int32Array(buffer);
    this.mirrors = mirrorOffsetsOf(layout);
    this.locks = new MirrorLocks(buffer, layout);
    this.codeMap = new CodeMap(buffer, layout);
    this.world = new WorldHold(this.words, layout);
  }

  /** One pass over all of guest RAM; returns what it found. */
  pass(): ScrubFinding[] {
    const findings: ScrubFinding[] = [];
    if (this.mirrors.length === 0) return findings;
    for (let page = 0; page < this.map.pages; page++) {
      // Under the policy lock: a protect or release (mirror/policy.ts) cannot change the page
      // while we vote on it; else copies made stale by a release could outvote a new primary.
      this.world.withPolicyLock(() => this.scrubPage(page, findings));
    }
    this.count(ControlSlot.SCRUB_PASSES, 1);
    return findings;
  }

  private scrubPage(page: number, findings: ScrubFinding[]): void {
    if (!this.map.isProtected(page)) return; // its copies are not kept
    const frame = this.map.frameOf(page);
    for (let copy = 0; copy < this.layout.copies; copy++) {
      if (this.map.isPoisoned(copy, frame)) {
        // A DUE in a mirror copy leaves the primary in the harts' TLBs: hold them out of their
        // engines while the page moves, so no store lands in the old frame after the copy.
        this.world.holdingLocked(() => this.recovery.recover(page, "the scrubber"));
        break;
      }
    }
    const base = (this.map.frameOf(page) * PAGE_SIZE) / 8;
    for (let w = 0; w < PAGE_SIZE / 8; w++) {
      // Plain 32-bit reads for the common case (all equal); BigInt and atomics only on a mismatch.
      const lo = (base + w) * 2;
      let same = true;
      for (const m of this.mirrors) {
        const mirrorLo = lo + m / 4;
        same &&= this.words[lo] === this.words[mirrorLo] && this.words[lo + 1] === this.words[mirrorLo + 1];
      }
      if (same) continue;
      const finding = this.settle(base + w, RAM_BASE + page * PAGE_SIZE + w * 8);
      if (finding) findings.push(finding);
    }
  }

  /** A word differs: look again (holding its lock when writers hold it), then vote or report. */
  private settle(index: number, address: number): ScrubFinding | undefined {
    if (locksStores(this.layout.sync)) return this.locks.holding(index * 8, 8, () => this.decide(index, address, 1));
    return this.decide(index, address, RECHECKS);
  }

  private decide(index: number, address: number, looks: number): ScrubFinding | undefined {
    let values: bigint[] = [];
    for (let look = 0; look < looks; look++) {
      values = [Atomics.load(this.quads, index), ...this.mirrors.map((m) => Atomics.load(this.quads, index + m / 8))];
      if (values.every((v) => v === values[0])) return undefined; // a store in flight, now complete
    }
    const tally = new Map<bigint, number>();
    for (const v of values) tally.set(v, (tally.get(v) ?? 0) + 1);
    const [winner, votes] = [...tally].sort((a, b) => b[1] - a[1])[0]!;
    if (votes * 2 <= values.length) {
      const key = values.join(",");
      if (this.undecided.get(address) === key) return undefined; // known since an earlier pass
      this.undecided.set(address, key);
      this.count(ControlSlot.SCRUB_MISMATCHES, 1);
      this.count(ControlSlot.SCRUB_UNDECIDABLE, 1);
      return { address, values: values.map((v) => BigInt.asUintN(64, v)), repaired: false };
    }
    this.count(ControlSlot.SCRUB_MISMATCHES, 1);
    const offsets = [0, ...this.mirrors];
    values.forEach((v, copy) => {
      // Only if the word still holds what we saw: a guest store since then is newer than our vote.
      if (v === winner || Atomics.compareExchange(this.quads, index + offsets[copy]! / 8, v, winner) !== v) return;
      // The primary is what harts run: code translated from the corrupted word must go, as after
      // a store (the mirrors are never executed).
      if (copy === 0) this.codeMap.invalidateWrite(Math.floor((index * 8) / PAGE_SIZE), (index * 8) % PAGE_SIZE, 8);
    });
    this.count(ControlSlot.SCRUB_REPAIRED, 1);
    return { address, values: values.map((v) => BigInt.asUintN(64, v)), repaired: true };
  }

  private count(slot: number, n: number): void {
    Atomics.add(this.words, (this.layout.controlOffset + slot) >>> 2, n);
  }

  stats(): ScrubStats {
    const read = (slot: number) => Atomics.load(this.words, (this.layout.controlOffset + slot) >>> 2);
    return {
      passes: read(ControlSlot.SCRUB_PASSES),
      mismatches: read(ControlSlot.SCRUB_MISMATCHES),
      repaired: read(ControlSlot.SCRUB_REPAIRED),
      undecidable: read(ControlSlot.SCRUB_UNDECIDABLE),
    };
  }
}

/** Human-readable line for a finding. */
export function describeFinding(f: ScrubFinding): string {
  const values = f.values.map((v, copy) => `copy ${copy} 0x${v.toString(16).padStart(16, "0")}`).join(", ");
  return f.repaired
    ? `scrubber: silent corruption at 0x${f.address.toString(16)} repaired by majority vote (${values})`
    : `scrubber: undecidable mismatch at 0x${f.address.toString(16)}: ${values}; with two copies no vote can tell which is right`;
}
