/**
 * `kmemvisor stress`: the race stress tester of the mirror sync strategies.
 *
 * Runs a racy SMP guest (guests/smp/race.c by default) on a mirrored VM under one --sync strategy,
 * holds every hart still at intervals (sync/pause.ts), compares every copy of every protected word
 * and reports the words whose copies differ, with their addresses and values; each reported word
 * is then resynchronised to the primary, so that every divergence is counted once. A last
 * comparison follows the end of the run.
 *
 * A seed makes a run repeatable as far as a multi-threaded run can be: it fixes every hart's
 * stream of operations (the guest's race_seed symbol), not the host's interleaving of the harts.
 */
import type { EngineChoice } from "../vcpu/hart.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Machine, type RunResult } from "../hypervisor/machine.ts";
import { planBoot } from "../hypervisor/boot.ts";
import { parseElf } from "../hypervisor/elf.ts";
import { findDivergentWords, type WordDivergence } from "../mirror/copies.ts";
import type { SyncStrategy } from "../sync/strategy.ts";
import { GUEST_BIN } from "./repo-root.ts";

export const DEFAULT_STRESS_GUEST = join(GUEST_BIN, "race.elf");

export interface StressOptions {
  /** Guest ELF path. */
  guest: string;
  harts: number;
  sync: SyncStrategy;
  /** Copies of memory, 2..5. */
  copies: number;
  ramSize: number;
  /** Stop after this long (wall clock) ... */
  durationMs?: number;
  /** ... or after this many pause-and-compare rounds, whichever comes first. */
  rounds?: number;
  /** Time between pauses. */
  intervalMs: number;
  /** End the run at the first round that finds a divergent word. */
  stopOnDivergence?: boolean;
  /** Written to the guest's race_seed (when it has one). */
  seed: bigint;
  /** Written to the guest's race_iterations: iterations per hart; 0 (the default) = until stopped. */
  iterations?: bigint;
  /** Called after every round. */
  progress?: (state: StressProgress) => void;
  /** Guest console output (default: dropped). */
  output?: (bytes: Uint8Array) => void;
  /** The engine (default: the VM default, see vcpu/jit.ts defaultEngineName). */
  engine?: EngineChoice;
}

export interface StressProgress {
  round: number;
  elapsedMs: number;
  /** Divergent words found so far (each counted once). */
  divergentWords: number;
}

export interface StressRound {
  round: number;
  elapsedMs: number;
  /** Divergent words found in this round, and the first few of them. */
  total: number;
  words: WordDivergence[];
}

export interface StressReport {
  options: Omit<StressOptions, "progress" | "output">;
  rounds: number;
  /** Divergent words found in all rounds. */
  divergentWords: number;
  /** Rounds that found any, with up to `WORDS_PER_ROUND` words each. */
  findings: StressRound[];
  /** How the guest run ended (a guest that finishes its iterations exits by itself). */
  run: Pick<RunResult, "reason" | "exitCode" | "fault" | "wallMilliseconds">;
  instructions: number;
  /** Whether the guest has the race_seed symbol (else the seed changed nothing). */
  seeded: boolean;
}

const WORDS_PER_ROUND = 20;

export async function runStress(options: StressOptions): Promise<StressReport> {
  const bytes = readFileSync(options.guest);
  const symbols = parseElf(bytes, options.guest).symbols;
  const machine = new Machine({
    ramSize: options.ramSize,
    harts: options.harts,
    copies: options.copies,
    mirror: { kind: "vm" },
    sync: options.sync,
    engine: options.engine,
    workers: true,
    output: options.output ?? (() => {}),
  });
  const plan = planBoot(machine, { bios: "none", kernel: { name: options.guest, bytes } });
  const seedAddress = symbols.get("race_seed");
  const writeU64 = (address: bigint, value: bigint) => {
    const word = new Uint8Array(8);
    new DataView(word.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
    machine.writeRam(Number(address), word);
  };
  if (seedAddress !== undefined) writeU64(seedAddress, options.seed);
  const iterationsAddress = symbols.get("race_iterations");
  if (iterationsAddress !== undefined) writeU64(iterationsAddress, options.iterations ?? 0n);
  else if (options.iterations !== undefined) throw new Error(`${options.guest} has no race_iterations symbol to set`);
  machine.start(plan.start, BigInt(plan.fdtAddress), BigInt(plan.dynamicInfoAddress));

  const findings: StressRound[] = [];
  let round = 0;
  let divergentWords = 0;
  const look = (elapsedMs: number) => {
    round++;
    const found = findDivergentWords(machine.memory.buffer, machine.layout, machine.physicalMap, {
      limit: WORDS_PER_ROUND,
      resynchronize: true,
    });
    divergentWords += found.total;
    if (found.total > 0) findings.push({ round, elapsedMs, ...found });
    options.progress?.({ round, elapsedMs, divergentWords });
  };
  const result = await machine.run({
    timeoutMs: options.durationMs,
    pauses: {
      everyMs: options.intervalMs,
      atPause: (elapsedMs) => {
        look(elapsedMs);
        if (options.stopOnDivergence && divergentWords > 0) return "stop";
        return options.rounds !== undefined && round >= options.rounds ? "stop" : "continue";
      },
    },
  });
  look(result.wallMilliseconds); // the harts are stopped: a last, complete look
  const { progress: _progress, output: _output, ...shown } = options;
  return {
    options: shown,
    rounds: round,
    divergentWords,
    findings,
    run: { reason: result.reason, exitCode: result.exitCode, fault: result.fault, wallMilliseconds: result.wallMilliseconds },
    instructions: result.harts.reduce((sum, h) => sum + h.instructions, 0),
    seeded: seedAddress !== undefined,
  };
}

/** The report as text lines: every round that found divergences, the words, the verdict. */
export function formatStressReport(report: StressReport): string[] {
  const o = report.options;
  const lines: string[] = [];
  const hex = (v: bigint | number) => `0x${v.toString(16).padStart(16, "0")}`;
  for (const finding of report.findings) {
    lines.push(`round ${finding.round} (${(finding.elapsedMs / 1000).toFixed(2)} s): ${finding.total} divergent word(s)`);
    for (const word of finding.words) {
      lines.push(`  0x${word.address.toString(16)}: ${word.values.map((v, copy) => `copy ${copy} ${hex(v)}`).join(", ")}`);
    }
    if (finding.total > finding.words.length) lines.push(`  ... and ${finding.total - finding.words.length} more`);
  }
  const seconds = (report.run.wallMilliseconds / 1000).toFixed(1);
  lines.push(
    `stress: --sync ${o.sync}, ${o.harts} harts, ${o.copies} copies, seed ${o.seed}${report.seeded ? "" : " (the guest has no race_seed: unseeded)"}: ` +
      `${report.rounds} round(s) in ${seconds} s, ${report.instructions} instructions, ` +
      `${report.divergentWords} divergent word(s)`,
  );
  if (report.run.reason === "fault") lines.push(`stress: the guest stopped: ${report.run.fault}`);
  else if (report.run.exitCode !== undefined && report.run.exitCode !== 0) lines.push(`stress: the guest exited with status ${report.run.exitCode}`);
  return lines;
}
