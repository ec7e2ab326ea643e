/**
 * The scrubber's own worker thread: scrub passes over the VM's memory, a pause between them,
 * and a last pass once the VM has stopped; returns what it found.
 */
import { computeLayout, ControlSlot, type LayoutOptions } from "../shared-mem/layout.ts";
import { PhysicalMap } from "../shared-mem/p2m.ts";
import { PageRecovery } from "../mirror/recovery.ts";
import { Scrubber, describeFinding } from "../mirror/scrubber.ts";

export interface ScrubTask {
  memory: WebAssembly.Memory;
  layout: LayoutOptions;
  /** Pause between passes. */
  intervalMs: number;
}

export interface ScrubTaskResult {
  /** One line per finding (repairs and undecidable mismatches), or the error that stopped it. */
  reports: string[];
}

export function runScrubber(task: ScrubTask): ScrubTaskResult {
  const layout = computeLayout(task.layout);
  const buffer = task.memory.buffer;
  const words = new Int32Array(buffer);
  const map = new PhysicalMap(buffer, layout);
  const hartBases = Array.from({ length: layout.harts }, (_, h) => layout.hartOffset(h));
  const scrubber = new Scrubber(buffer, layout, map, new PageRecovery(buffer, layout, map, hartBases));
  const stop = (layout.controlOffset + ControlSlot.STOP) >>> 2;
  const reports: string[] = [];
  try {
    for (;;) {
      const stopping = Atomics.load(words, stop) !== 0;
      for (const finding of scrubber.pass()) reports.push(describeFinding(finding));
      // One last pass after the VM stopped, so that the report covers the memory it ended with.
      if (stopping) break;
      Atomics.wait(words, stop, 0, task.intervalMs);
    }
  } catch (e) {
    reports.push(`scrubber: ${(e as Error).message}`);
  }
  return { reports };
}
