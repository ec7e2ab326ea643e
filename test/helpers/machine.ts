/** Run hand-assembled programs (test/helpers/asm.ts) on an in-process Machine. */
import { Machine, type MachineConfig, type RunOptions, type RunResult } from "../../hypervisor/machine.ts";
import type { EngineChoice, Hart } from "../../vcpu/hart.ts";
import { Program } from "./asm.ts";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { planBoot } from "../../hypervisor/boot.ts";
import { DiskImage } from "../../hypervisor/disk-image.ts";
import { GUESTS, ROOT } from "./cli.ts";

export interface Outcome {
  result: RunResult;
  machine: Machine;
  hart: Hart;
  /** Console output (UART/HTIF) as text. */
  output: string;
  /** Register x[i] of hart 0, as an unsigned 64-bit bigint. */
  x(i: number): bigint;
  /** Register x[i] of hart 0 as a signed 64-bit bigint. */
  sx(i: number): bigint;
  /** 64-bit little-endian word of guest RAM. */
  ram64(gpa: bigint): bigint;
  ram32(gpa: bigint): number;
}

export interface RunProgramOptions {
  ramSize?: number;
  harts?: number;
  timeoutMs?: number;
  /** Execution engine (default: the Machine's, i.e. KMEMVISOR_ENGINE or the translator). */
  engine?: EngineChoice;
  /** Copies of guest RAM (`--mirror vm --nmr N`); default 1. */
  copies?: number;
  /** Further Machine settings (a disk, the sync strategy, worker threads). */
  machine?: Partial<MachineConfig>;
  /** Further run settings (pauses, injections), or a function of the machine that makes them; the timeout is `timeoutMs`. */
  run?: Omit<RunOptions, "timeoutMs"> | ((machine: Machine) => Omit<RunOptions, "timeoutMs">);
  /** Called once the program is loaded and every hart started, before the run. */
  beforeRun?(machine: Machine): void;
}

/** Load the program (or ELF bytes) into a fresh Machine, start every hart at its entry, run. */
export async function runProgram(program: Program | Uint8Array, options: RunProgramOptions = {}): Promise<Outcome> {
  const chunks: Uint8Array[] = [];
  const machine = new Machine({
    ramSize: options.ramSize ?? 1 << 20,
    harts: options.harts ?? 1,
    output: (bytes) => chunks.push(bytes.slice()),
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.copies ? { copies: options.copies } : {}),
    ...options.machine,
  });
  const elf = program instanceof Program ? program.elf() : program;
  const image = machine.loadElf(elf, "test.elf");
  machine.start(image.entry);
  options.beforeRun?.(machine);
  const runOptions = typeof options.run === "function" ? options.run(machine) : options.run;
  const result = await machine.run({ ...runOptions, timeoutMs: options.timeoutMs ?? 10_000 });
  const hart = machine.harts[0]!;
  const view = (gpa: bigint, n: number) => {
    const b = machine.readRam(Number(gpa), n);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  };
  return {
    result,
    machine,
    hart,
    output: Buffer.concat(chunks).toString("latin1"),
    x: (i) => hart.x(i),
    sx: (i) => BigInt.asIntN(64, hart.x(i)),
    ram64: (gpa) => view(gpa, 8).getBigUint64(0, true),
    ram32: (gpa) => view(gpa, 4).getUint32(0, true),
  };
}

export interface GuestRun {
  machine: Machine;
  result: RunResult;
  /** Console output as text. */
  output: string;
}

/**
 * At most two machines run at once per test file (ava starts all of a file's tests together; an
 * inline machine shares the file's one thread, yielding every 20 ms, and a worker machine's harts
 * are threads of their own): the timeouts then measure a run's own progress, not how many others
 * share the host. The timeouts are only safety nets.
 */
let machinesRunning = 0;
const machineQueue: (() => void)[] = [];
export async function twoAtATime<T>(run: () => Promise<T>): Promise<T> {
  if (machinesRunning >= 2) await new Promise<void>((resolve) => machineQueue.push(resolve));
  machinesRunning++;
  try {
    return await run();
  } finally {
    machinesRunning--;
    machineQueue.shift()?.();
  }
}

/**
 * Boot guests/bin/NAME.elf as `kmemvisor run` does (harts in worker threads unless told
 * otherwise) and run it; with `disk`, on a fresh copy of the minikernel's disk image.
 */
export function runGuest(
  name: string,
  options: Omit<Partial<MachineConfig>, "disk"> & { timeoutMs?: number; disk?: boolean; run?: (machine: Machine) => Omit<RunOptions, "timeoutMs"> },
): Promise<GuestRun> {
  return twoAtATime(() => runGuestNow(name, options));
}

async function runGuestNow(
  name: string,
  options: Omit<Partial<MachineConfig>, "disk"> & { timeoutMs?: number; disk?: boolean; run?: (machine: Machine) => Omit<RunOptions, "timeoutMs"> },
): Promise<GuestRun> {
  const chunks: Uint8Array[] = [];
  const { timeoutMs, disk: withDisk, run: runOptions, ...config } = options;
  const disk = withDisk ? DiskImage.open(copyToTemporary(join(ROOT, "guests", "kernel", "disk.img"))) : undefined;
  const machine = new Machine({ ramSize: 128 << 20, harts: 1, workers: true, disk, output: (bytes) => chunks.push(bytes.slice()), ...config });
  const file = join(GUESTS, `${name}.elf`);
  const plan = planBoot(machine, { bios: "none", kernel: { name: file, bytes: readFileSync(file) } });
  machine.start(plan.start, BigInt(plan.fdtAddress), BigInt(plan.dynamicInfoAddress));
  try {
    const result = await machine.run({ ...runOptions?.(machine), timeoutMs: timeoutMs ?? 120_000 });
    return { machine, result, output: Buffer.concat(chunks).toString("latin1") };
  } finally {
    disk?.close();
  }
}

function copyToTemporary(path: string): string {
  const copy = join(mkdtempSync(join(tmpdir(), "kmv-guest-")), basename(path));
  copyFileSync(path, copy);
  return copy;
}
