/**
 * The protect/release race (issue 16 item 1) as a 2-hart guest, for test/protect-race.test.ts and
 * the long run (`npm run stress:protect`, scripts/stress-protect.ts).
 *
 * Hart 1 increments the 512 words of page Q round-robin (load, add 1, store), `increments` times;
 * it is Q's only writer, so the words must sum to `increments` at the end: a store that reached
 * only the primary and was then "repaired" from stale copies (scrubber vote, DUE recovery) loses
 * increments for good. Hart 0 meanwhile protects and releases Q through the mirror hypercall in a
 * loop; when hart 1 is done it protects Q a last time, sums it and exits 0 if nothing was lost
 * (1 if something was, 2 if a hypercall failed).
 *
 * The harness pauses the harts every few milliseconds: then, when Q is protected, its copies must
 * agree (every store the harts made is complete); it may also inject a DUE into Q's primary there
 * (when Q is protected, so the DUE is recoverable), which recovery must repair from good copies.
 */
import { Machine } from "../../hypervisor/machine.ts";
import { findDivergentWords } from "../../mirror/copies.ts";
import { KMEMVISOR_EXTENSION, parseMirrorPolicy } from "../../mirror/policy.ts";
import { PAGE_SIZE } from "../../shared-mem/layout.ts";
import type { SyncStrategy } from "../../shared-mem/layout.ts";
import type { EngineChoice } from "../../vcpu/hart.ts";
import { Program, R, RAM_BASE, add, addi, andi, beq, bne, ecall, ld, sd, slli, wfi } from "./asm.ts";

/** The page hart 1 stores to and hart 0 protects and releases. */
export const Q = Number(RAM_BASE) + 0x10000;
/** Hart 1's done flag, then hart 0's results: sum of Q, protect/release rounds, failed hypercalls. */
export const RESULTS = Number(RAM_BASE) + 0x20000;

/**
 * `hart0`: "toggle" protects and releases Q in a loop (the race of item 1); "read" protects Q once
 * and then reads all of it in a loop, so that it is often the one that meets a DUE injected while
 * hart 1 stores (the injection's shootdown must be synchronous too).
 */
export function protectRaceGuest(increments: number, hart0: "toggle" | "read" = "toggle"): Program {
  const p = new Program();
  p.branch(bne, R.a0, R.zero, "hart1");
  // --- hart 0: protect and release Q (or read it) until hart 1 is done ---
  p.li(R.s0, Q).li(R.s4, RESULTS).li(R.s3, 0).li(R.s5, 0);
  const hypercall = (fn: number) => {
    const ok = `ok${fn}$${p.here}`;
    p.li(R.a7, KMEMVISOR_EXTENSION).li(R.a6, fn).emit(addi(R.a0, R.s0, 0)).li(R.a1, PAGE_SIZE).emit(ecall());
    p.branch(beq, R.a0, R.zero, ok).emit(addi(R.s5, R.s5, 1)).label(ok);
  };
  if (hart0 === "toggle") {
    p.label("toggle");
    hypercall(1);
    hypercall(2);
  } else {
    hypercall(1);
    p.label("toggle").li(R.t4, PAGE_SIZE / 8).emit(addi(R.t5, R.s0, 0));
    p.label("read").emit(ld(R.t0, 0, R.t5), addi(R.t5, R.t5, 8), addi(R.t4, R.t4, -1)).branch(bne, R.t4, R.zero, "read");
  }
  p.emit(addi(R.s3, R.s3, 1), ld(R.t0, 0, R.s4)).branch(beq, R.t0, R.zero, "toggle");
  hypercall(1);
  p.li(R.t3, 0).li(R.t4, PAGE_SIZE / 8).emit(addi(R.t5, R.s0, 0));
  p.label("sum").emit(ld(R.t0, 0, R.t5), add(R.t3, R.t3, R.t0), addi(R.t5, R.t5, 8), addi(R.t4, R.t4, -1));
  p.branch(bne, R.t4, R.zero, "sum");
  p.emit(sd(R.t3, 8, R.s4), sd(R.s3, 16, R.s4), sd(R.s5, 24, R.s4));
  p.branch(bne, R.s5, R.zero, "hypercallFailed");
  p.li(R.t0, increments).branch(bne, R.t3, R.t0, "lost");
  p.exit(0);
  p.label("lost").exit(1);
  p.label("hypercallFailed").exit(2);
  // --- hart 1: increment Q's words round-robin, then raise the flag and sleep ---
  p.label("hart1").li(R.s0, Q).li(R.s1, increments).li(R.s2, 0);
  p.label("store").emit(
    andi(R.t0, R.s2, PAGE_SIZE / 8 - 1), slli(R.t0, R.t0, 3), add(R.t1, R.s0, R.t0),
    ld(R.t2, 0, R.t1), addi(R.t2, R.t2, 1), sd(R.t2, 0, R.t1), addi(R.s2, R.s2, 1),
  ).branch(bne, R.s2, R.s1, "store");
  p.li(R.t0, RESULTS).li(R.t1, 1).emit(sd(R.t1, 0, R.t0));
  p.label("sleep").emit(wfi()).j("sleep");
  return p;
}

export interface ProtectRaceOptions {
  increments: number;
  copies: number;
  /** Milliseconds between scrubber passes (undefined: no scrubber). */
  scrubMs?: number;
  /** Inject a DUE into Q's primary at every n-th pause that finds Q protected (0: none). */
  dueEvery?: number;
  /** Hart 0's part (protectRaceGuest); default "toggle". */
  hart0?: "toggle" | "read";
  /** Also inject DUEs into Q's primary from the run loop, this often, while the harts run. */
  dueEveryMs?: number;
  pauseMs?: number;
  sync?: SyncStrategy;
  engine?: EngineChoice;
  timeoutMs?: number;
}

export interface ProtectRaceOutcome {
  exitCode: number | undefined;
  reason: string;
  fault?: string;
  /** Sum of Q's words the guest computed (must equal the increments). */
  sum: bigint;
  /** Protect/release rounds hart 0 made. */
  rounds: bigint;
  pauses: number;
  /** Pauses that found Q protected, and those of them where its copies differed (must be 0). */
  protectedPauses: number;
  divergentPauses: number;
  /** Divergent words seen at those pauses, the first few. */
  divergences: string[];
  /** DUEs injected at pauses. */
  duesInjected: number;
  /** Every DUE injected (at pauses and from the run loop). */
  injected: number;
  recoveries: number;
  /** Copies of every protected page differ at the end (must be 0). */
  divergentAtEnd: number;
  /** Pages the translator compiled, over both harts (0 on the interpreter). */
  pagesCompiled: number;
  wallMs: number;
}

export async function runProtectRace(options: ProtectRaceOptions): Promise<ProtectRaceOutcome> {
  const machine = new Machine({
    ramSize: 1 << 20,
    harts: 2,
    copies: options.copies,
    // The code page; and Q from the start when hart 0 only reads it (a DUE in Q before hart 0's
    // first protect would otherwise be fatal, rightly).
    mirror: parseMirrorPolicy(`ranges:${[[Number(RAM_BASE), PAGE_SIZE], ...(options.hart0 === "read" ? [[Q, PAGE_SIZE]] : [])]
      .map(([start, length]) => `0x${start!.toString(16)}-0x${(start! + length!).toString(16)}`).join(",")}`),
    workers: true,
    output: () => {},
    spareFrames: 4096,
    ...(options.sync ? { sync: options.sync } : {}),
    ...(options.engine ? { engine: options.engine } : {}),
  });
  const image = machine.loadElf(protectRaceGuest(options.increments, options.hart0).elf(), "protect-race.elf");
  const every = options.dueEveryMs;
  const injections = every ? Array.from({ length: Math.ceil(60_000 / every) }, (_, i) => ({ kind: "due" as const, atMs: (i + 1) * every, gpa: Q, copy: 0, bit: 0 })) : [];
  machine.start(image.entry);
  const qPage = machine.physicalMap.pageOf(Q);
  let pauses = 0, protectedPauses = 0, divergentPauses = 0, duesInjected = 0;
  const divergences: string[] = [];
  const result = await machine.run({
    timeoutMs: options.timeoutMs ?? 60_000,
    injections,
    ...(options.scrubMs !== undefined ? { scrubIntervalMs: options.scrubMs } : {}),
    pauses: {
      everyMs: options.pauseMs ?? 5,
      atPause: () => {
        pauses++;
        if (!machine.physicalMap.isProtected(qPage)) return "continue";
        protectedPauses++;
        const seen = findDivergentWords(machine.memory.buffer, machine.layout, machine.physicalMap, { limit: 3 });
        if (seen.total > 0) {
          divergentPauses++;
          for (const w of seen.words) {
            if (divergences.length < 5) divergences.push(`0x${w.address.toString(16)}: ${w.values.map((v) => v.toString()).join(" / ")}`);
          }
        }
        // One DUE at a time: a frame already poisoned (not yet touched since) is left as it is.
        const unpoisoned = !machine.physicalMap.isPoisoned(0, machine.physicalMap.frameOf(qPage));
        if (options.dueEvery && protectedPauses % options.dueEvery === 0 && unpoisoned) {
          machine.injectDue(Q, 0);
          duesInjected++;
        }
        return "continue";
      },
    },
  });
  const view = new DataView(machine.readRam(RESULTS, 32).buffer);
  const end = findDivergentWords(machine.memory.buffer, machine.layout, machine.physicalMap, { limit: 0 });
  return {
    exitCode: result.exitCode,
    reason: result.reason,
    ...(result.fault ? { fault: result.fault } : {}),
    sum: view.getBigUint64(8, true),
    rounds: view.getBigUint64(16, true),
    pauses,
    protectedPauses,
    divergentPauses,
    divergences,
    duesInjected,
    injected: result.memory.injected,
    recoveries: result.memory.recoveries,
    divergentAtEnd: end.total,
    pagesCompiled: result.harts.reduce((n, h) => n + (h.jit?.pagesCompiled ?? 0), 0),
    wallMs: result.wallMilliseconds,
  };
}
