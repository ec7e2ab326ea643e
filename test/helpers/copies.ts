/**
 * "All copies agree": compare every mirror copy of a VM's protected RAM with the primary, after a
 * run and at pauses during it (a mirror store missed and later overwritten by a mirrored one would
 * be hidden at the end: issue 17, finding 2).
 */
import type { ExecutionContext } from "ava";
import type { Machine, RunOptions } from "../../hypervisor/machine.ts";
import { compareCopies, type CopyMismatch } from "../../mirror/copies.ts";

/** Every protected page where some copy differs from the primary (empty: all copies agree). */
export function copyMismatches(machine: Machine): CopyMismatch[] {
  return compareCopies(machine.memory.buffer, machine.layout, machine.physicalMap);
}

/** Assert that every copy of every protected page equals the primary. */
export function assertCopiesAgree(t: ExecutionContext, machine: Machine, when = "after the run"): void {
  t.deepEqual(copyMismatches(machine), [], `every copy equals the primary ${when}`);
}

/**
 * Pauses for Machine.run that compare the copies while every hart holds still at an instruction
 * boundary (sync/pause.ts; inline runs pause between rounds), every `everyMs`. `assert` after the
 * run checks that there were pauses and that none found a difference.
 */
export function copiesComparedAtPauses(machine: Machine, everyMs = 20): {
  pauses: NonNullable<RunOptions["pauses"]>;
  assert(t: ExecutionContext, minimumPauses?: number): void;
} {
  let count = 0;
  const found: { atMs: number; mismatches: CopyMismatch[] }[] = [];
  return {
    pauses: {
      everyMs,
      atPause(elapsedMs) {
        count++;
        const mismatches = copyMismatches(machine);
        if (mismatches.length > 0) found.push({ atMs: Math.round(elapsedMs), mismatches: mismatches.slice(0, 4) });
        return "continue";
      },
    },
    assert(t, minimumPauses = 1) {
      t.true(count >= minimumPauses, `the copies were compared at ${count} pause(s) during the run`);
      t.deepEqual(found, [], `every copy equalled the primary at each of ${count} pause(s)`);
    },
  };
}
