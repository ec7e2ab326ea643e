/**
 * The `kmemvisor` command line. Flags follow QEMU's where QEMU has one.
 * Exit status (the README's table): the guest's exit code; 124 on --timeout; 70 when the guest
 * faulted beyond repair; 64 for a usage error; 65 for bad input data (files, --vm files); 66 for a
 * missing or unreadable input file; 73 for an output file that cannot be created (--dumpdtb).
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { DEFAULT_SPARE_FRAMES, Machine, type RunOptions, type RunResult } from "../hypervisor/machine.ts";
import { z } from "zod";
import { ElfError, parseElf } from "../hypervisor/elf.ts";
import { BootError, checkFirmware, planBoot, resolveBios, type BootImages } from "../hypervisor/boot.ts";
import { DiskImage, DiskImageError } from "../hypervisor/disk-image.ts";
import { checkInjection, parseInjection, parseRandomInjection, randomInjections } from "../mirror/inject.ts";
import { parseMirrorPolicy, type MirrorPolicy } from "../mirror/policy.ts";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { existsSync, writeFileSync } from "node:fs";
import { ConsoleInput } from "./console-input.ts";
import { parseIntegerInRange, parseMemorySize, parsePositiveInteger, parseSeconds } from "./sizes.ts";
import { DEFAULT_SYNC, parseSyncStrategy, SYNC_GUARANTEES, SYNC_STRATEGIES } from "../sync/strategy.ts";
import { DEFAULT_STRESS_GUEST, formatStressReport, runStress, type StressProgress } from "./race-stress.ts";
import { SingleBar } from "cli-progress";
import { DEFAULT_JIT_THRESHOLD, defaultEngineName, ENGINES } from "../vcpu/jit.ts";
import type { EngineChoice } from "../vcpu/hart.ts";
import { randomBytes } from "node:crypto";
import { DEFAULT_COARSE_THRESHOLD, DEFAULT_MAX_CHUNK, difftestGuest, difftestStreams, formatDivergence } from "./difftest.ts";
import { randomLoopProgram } from "./difftest-loops.ts";

export const ExitStatus = { Timeout: 124, GuestFault: 70, Usage: 64, BadInput: 65, NoInput: 66, CantCreate: 73 } as const;

class UsageError extends Error {}
class InputError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

export interface RunFlags {
  smp: string;
  memory: string;
  bios: string;
  kernel?: string;
  drive?: string;
  append?: string;
  dumpdtb?: string;
  timeout?: string;
  mirror: string;
  nmr: string;
  sync: string;
  engine: string;
  jitThreshold: string;
  jitSupervisor?: boolean;
  inject: string[];
  scrub?: string;
  spares?: string;
  vm?: string[];
  stats?: boolean;
  json?: boolean;
}

/** Largest guest, firmware or kernel file read (an ELF with debug sections can be hundreds of MiB). */
export const MAX_IMAGE_BYTES = 1 << 30;

/**
 * The bytes of an input file, which must be a regular file of at most `maxBytes`: a FIFO would
 * block for ever and /dev/zero would grow without end, so anything else is refused with exit 65
 * (66 when the file is missing or unreadable). Opened non-blocking, so that even opening a FIFO
 * with no writer returns, and read up to the size it had then.
 */
function readInput(path: string, what: string, maxBytes = MAX_IMAGE_BYTES): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new InputError(`${what} "${path}" does not exist`, ExitStatus.NoInput);
    throw new InputError(`cannot read ${what} "${path}": ${systemMessage(e)}`, ExitStatus.NoInput);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new InputError(`${what} "${path}" is a directory, not a file`, ExitStatus.BadInput);
    if (!st.isFile()) throw new InputError(`${what} "${path}" is not a regular file (a device, FIFO or socket)`, ExitStatus.BadInput);
    if (st.size > maxBytes) {
      throw new InputError(`${what} "${path}" is too large: ${st.size} bytes, at most ${maxBytes}`, ExitStatus.BadInput);
    }
    const bytes = new Uint8Array(st.size);
    for (let done = 0; done < bytes.length; ) {
      const n = readSync(fd, bytes, done, bytes.length - done, done);
      if (n === 0) return bytes.subarray(0, done); // truncated while we read: what was there
      done += n;
    }
    return bytes;
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot read ${what} "${path}": ${systemMessage(e)}`, ExitStatus.NoInput);
  } finally {
    closeSync(fd);
  }
}

/** A file-system error as one line: "no such file or directory" rather than Node's "ENOENT: ..., open 'x'". */
function systemMessage(e: unknown): string {
  const error = e as NodeJS.ErrnoException;
  const descriptions: Record<string, string> = {
    ENOENT: "no such directory",
    EISDIR: "it is a directory",
    EACCES: "permission denied",
    EPERM: "permission denied",
    ENOTDIR: "a component of the path is not a directory",
    EROFS: "read-only file system",
    ENOSPC: "no space left on the device",
  };
  return (error.code && descriptions[error.code]) ?? error.message;
}

function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Turn input errors found while loading into InputError (exit 65). */
function guarded<T>(load: () => T): T {
  try {
    return load();
  } catch (e) {
    if (e instanceof ElfError || e instanceof BootError || e instanceof DiskImageError) {
      throw new InputError(e.message, ExitStatus.BadInput);
    }
    throw e;
  }
}

/** Copies of guest memory for `--mirror` and `--nmr`: off → 1; vm or ranges → N (default 2). */
function parseMirroring(mirror: string, nmr: string): { policy: MirrorPolicy; copies: number } {
  const copies = parseIntegerInRange("--nmr", nmr, 2, 5); // N-modular redundancy: the primary and 1 to 4 mirrors
  const policy = parseMirrorPolicy(mirror);
  return { policy, copies: policy.kind === "off" ? 1 : copies };
}

/** `--drive FILE` or QEMU's `--drive file=FILE[,format=raw][,readonly=on]`. */
export function parseDrive(text: string): { path: string; readOnly: boolean } {
  if (!text.includes("=")) return { path: text, readOnly: false };
  let path: string | undefined;
  let readOnly = false;
  for (const part of text.split(",")) {
    const [key, value = ""] = part.split("=", 2) as [string, string?];
    if (key === "file") path = value;
    else if (key === "readonly") {
      if (!["on", "off", "true", "false"].includes(value)) throw new RangeError(`--drive: readonly must be on or off, got "${value}"`);
      readOnly = value === "on" || value === "true";
    } else if (key === "format") {
      if (value !== "raw") throw new RangeError(`--drive: only format=raw images are supported, got "${value}"`);
    } else if (key !== "if" && key !== "id") {
      throw new RangeError(`--drive: unknown option "${key}" (supported: file, format=raw, readonly)`);
    }
  }
  if (!path) throw new RangeError(`--drive: no file= given in "${text}"`);
  return { path, readOnly };
}

/** The console's C-a c: what mirroring and recovery have done so far in a running VM. */
function formatMemoryStatus(m: RunResult["memory"]): string {
  return `running; memory: ${m.copies} cop${m.copies === 1 ? "y" : "ies"}, ${m.injected} failure(s) injected, ${m.recoveries} page(s) recovered, ${m.sparesUsed} spare frame(s) used`;
}

export function formatStats(result: RunResult): string {
  const lines = [`wall time: ${(result.wallMilliseconds / 1000).toFixed(3)} s`];
  let total = 0;
  for (const h of result.harts) {
    total += h.instructions;
    const busyMs = Math.max(result.wallMilliseconds - h.wfiMilliseconds, 1e-3);
    lines.push(
      `hart ${h.hart}: ${h.instructions} instructions retired, ${(h.instructions / busyMs / 1000).toFixed(1)} MIPS` +
        `, ${(h.wfiMilliseconds / 1000).toFixed(3)} s in WFI`,
    );
    const j = h.jit;
    if (j) {
      lines.push(
        `hart ${h.hart} jit: ${j.pagesCompiled} page(s) translated (${j.instructionsTranslated} instructions, ${j.recompiles} recompiled), ` +
          `${j.invalidations} invalidated, ${j.staleOnArrival} stale on arrival, ${j.wholePagesTaken} whole-page taken, ${j.compileMilliseconds.toFixed(1)} ms compiling`,
      );
    }
  }
  lines.push(`total: ${total} instructions, ${(total / result.wallMilliseconds / 1000).toFixed(1)} MIPS aggregate`);
  const m = result.memory;
  if (m.copies > 1 || m.injected > 0) {
    const latency = m.recoveries > 0 ? `, mean recovery latency ${(m.recoveryMicroseconds / m.recoveries).toFixed(0)} µs` : "";
    const mirrored = result.harts.reduce((sum, h) => sum + h.mirroredStores, 0);
    const contended = result.harts.reduce((sum, h) => sum + h.contendedLocks, 0);
    if (m.copies > 1) lines.push(`sync: ${m.sync}, ${contended} contended mirror-lock acquisition(s)`);
    lines.push(`memory: ${m.copies} cop${m.copies === 1 ? "y" : "ies"}, ${mirrored} mirrored stores, ${m.injected} failure(s) injected, ${m.recoveries} page(s) recovered${latency}, ${m.sparesUsed} of ${m.spareFrames} spare frame(s) used`);
    const s = m.scrub;
    if (s.passes > 0) lines.push(`scrubber: ${s.passes} pass(es), ${s.mismatches} mismatch(es), ${s.repaired} repaired by vote, ${s.undecidable} undecidable`);
  }
  return lines.join("\n");
}

/** A VM ready to run: its machine, how to run it, and what to release afterwards. */
interface PreparedVm {
  label: string;
  machine: Machine;
  runOptions: RunOptions;
  flags: RunFlags;
  close(): void;
}

/** One VM's flags, checked and converted; the files they name are not read yet. */
export interface ParsedRun {
  harts: number;
  ramSize: number;
  timeoutMs: number | undefined;
  kernelPath: string | undefined;
  bios: string;
  drive: { path: string; readOnly: boolean } | undefined;
  policy: MirrorPolicy;
  copies: number;
  spareFrames: number | undefined;
  sync: ReturnType<typeof parseSyncStrategy>;
  engine: EngineChoice;
  injections: RunOptions["injections"];
  scrubIntervalMs: number | undefined;
}

/**
 * Check and convert one VM's flags; a bad one is a UsageError. `needGuest` is false for the
 * command-line defaults of --vm files, whose guests come from the files.
 */
export function parseRunFlags(file: string | undefined, flags: RunFlags, needGuest = true): ParsedRun {
  const harts = usage(() => parsePositiveInteger("--smp", String(flags.smp), 64));
  const ramSize = usage(() => parseMemorySize(String(flags.memory)));
  const timeoutMs = flags.timeout === undefined ? undefined : usage(() => parseSeconds("--timeout", String(flags.timeout))) * 1000;
  if (file !== undefined && flags.kernel !== undefined) {
    throw new UsageError(`give the guest either as FILE or with --kernel, not both`);
  }
  const kernelPath = file ?? flags.kernel;
  const bios = usage(() => resolveBios(flags.bios));
  if (needGuest && bios === "none" && kernelPath === undefined && flags.dumpdtb === undefined) {
    throw new UsageError(`no guest to run: give an ELF file (kmemvisor run FILE)`);
  }
  const drive = flags.drive === undefined ? undefined : usage(() => parseDrive(flags.drive!));
  const { policy, copies } = usage(() => parseMirroring(String(flags.mirror), String(flags.nmr)));
  const spareFrames = flags.spares === undefined ? undefined : usage(() => parseSpares(String(flags.spares), ramSize, copies));
  const sync = usage(() => parseSyncStrategy(String(flags.sync)));
  const engine = usage(() => parseEngine(flags, bios !== "none"));
  const injections = usage(() =>
    flags.inject.flatMap((spec) => {
      const random = parseRandomInjection(spec);
      if (!random) {
        const injection = parseInjection(spec);
        checkInjection(spec, injection, { ramBase: RAM_BASE, ramSize, copies });
        return [injection];
      }
      // Random failures for as long as the run may last (an hour when there is no --timeout).
      return randomInjections(random, { base: RAM_BASE, size: ramSize, copies }, timeoutMs ?? 3_600_000);
    }),
  );
  const scrubIntervalMs = flags.scrub === undefined ? undefined : usage(() => parseSeconds("--scrub", String(flags.scrub))) * 1000;
  return { harts, ramSize, timeoutMs, kernelPath, bios, drive, policy, copies, spareFrames, sync, engine, injections, scrubIntervalMs };
}

/** `--spares N`: spare frames for recovery, 0 up to one per page of RAM; only a mirrored VM has any. */
function parseSpares(text: string, ramSize: number, copies: number): number {
  const spares = parseIntegerInRange("--spares", text, 0, ramSize / 4096);
  if (copies === 1) throw new RangeError(`--spares ${text}: spare frames serve recovery from a mirror copy; give --mirror vm or ranges too`);
  return spares;
}

/**
 * Load one VM's firmware, kernel and disk and build its machine; undefined when it only dumped its
 * DTB, or when `checkOnly` (the files are read and checked, nothing is built).
 */
function prepareVm(run: ParsedRun, flags: RunFlags, label: string, output?: (bytes: Uint8Array) => void, checkOnly = false): PreparedVm | undefined {
  const { bios, kernelPath, drive } = run;
  const images: BootImages = { bios: "none", append: flags.append };
  if (bios !== "none") {
    const bytes = readInput(bios, "firmware");
    images.bios = { name: bios, bytes };
    guarded(() => checkFirmware(bios, bytes));
  }
  if (kernelPath !== undefined) images.kernel = { name: kernelPath, bytes: readInput(kernelPath, "guest") };

  if (drive !== undefined && !existsSync(drive.path)) {
    throw new InputError(`disk image "${drive.path}" does not exist`, ExitStatus.NoInput);
  }
  if (checkOnly) return undefined;
  const disk = drive === undefined ? undefined : guarded(() => DiskImage.open(drive.path, { readOnly: drive.readOnly, exclusive: true }));
  try {
    const machine = usage(() => new Machine({
      ramSize: run.ramSize,
      harts: run.harts,
      disk,
      copies: run.copies,
      spareFrames: run.spareFrames,
      mirror: run.policy,
      sync: run.sync,
      engine: run.engine,
      output,
      workers: true,
      onDeviceError: (message) => process.stderr.write(`kmemvisor: ${label}virtio-blk: ${message}\n`),
    }));
    const plan = guarded(() => planBoot(machine, images));
    if (flags.dumpdtb !== undefined) {
      try {
        writeFileSync(flags.dumpdtb, plan.fdt);
      } catch (e) {
        throw new InputError(`cannot write the device tree to "${flags.dumpdtb}": ${systemMessage(e)}`, ExitStatus.CantCreate);
      }
      disk?.close();
      return undefined;
    }
    machine.start(plan.start, BigInt(plan.fdtAddress), BigInt(plan.dynamicInfoAddress));
    const runOptions = { timeoutMs: run.timeoutMs, injections: run.injections, scrubIntervalMs: run.scrubIntervalMs };
    return { label, machine, runOptions, flags, close: () => disk?.close() };
  } catch (e) {
    disk?.close(); // and its write lock, for the VMs still to come
    throw e;
  }
}

/** Report one VM's end on stderr; returns its exit status. */
function reportVm(vm: PreparedVm, result: RunResult): number {
  const say = (line: string) => process.stderr.write(`kmemvisor: ${vm.label}${line}\n`);
  for (const line of result.scrubReports) say(line);
  const m = result.memory;
  if (m.copies > 1 && m.sparesUsed >= m.spareFrames && (m.spareFrames > 0 || m.injected > 0)) {
    say(`all ${m.spareFrames} spare frame(s) used: a further DUE stops the VM (--spares N sets how many there are)`);
  }
  let status: number;
  if (result.reason === "timeout") {
    say(`timeout: the guest did not exit within ${vm.flags.timeout} s`);
    status = ExitStatus.Timeout;
  } else if (result.reason === "fault") {
    say(`guest stopped: ${result.fault}`);
    status = ExitStatus.GuestFault;
  } else {
    status = result.exitCode ?? 0;
  }
  if (vm.flags.stats) process.stderr.write(formatStats(result).replace(/^/gm, vm.label) + "\n");
  if (vm.flags.json) process.stderr.write(JSON.stringify({ ...(vm.label ? { vm: vm.label.slice(1, -2) } : {}), ...result, status }) + "\n");
  return status;
}

/** Console output of one of several VMs: whole lines, each prefixed with the VM's name. */
function prefixedOutput(name: string): (bytes: Uint8Array) => void {
  let pending = "";
  return (bytes) => {
    pending += Buffer.from(bytes).toString("latin1");
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) process.stdout.write(`[${name}] ${line}\n`);
  };
}

/** The flags of `run` a --vm file may not set: --vm itself, and --dumpdtb (one file per invocation). */
const NOT_IN_VM_FILES = new Set(["vm", "dumpdtb"]);

/**
 * The schema of a --vm file, derived from `run`'s own option definitions so that the two cannot
 * drift: a key per long flag (camel case, as commander names them), its type from the option — a
 * switch is a boolean, a flag with choices one of them, a repeatable flag a string or an array of
 * strings, a numeric flag (<N>, <S>, <MS>, <SIZE>) a number or a string, any other a string —
 * plus "name". Unknown keys are errors. Values then go through the same checks as the command
 * line's. Each key's entry says what it expects, for the message.
 */
function vmFileSchema(run: Command): { schema: z.ZodType<Record<string, unknown>>; expected: Map<string, string> } {
  const shape: Record<string, z.ZodType> = { name: z.string().optional() };
  const expected = new Map([["name", "a string"]]);
  for (const option of run.options) {
    const key = option.attributeName();
    if (NOT_IN_VM_FILES.has(key)) continue;
    let type: z.ZodType;
    let description: string;
    if (option.isBoolean()) {
      [type, description] = [z.boolean(), "true or false"];
    } else if (option.argChoices) {
      [type, description] = [z.enum(option.argChoices as [string, ...string[]]), `one of ${option.argChoices.map((c) => `"${c}"`).join(", ")}`];
    } else if (Array.isArray(option.defaultValue)) {
      [type, description] = [z.union([z.string(), z.array(z.string())]), "a string or an array of strings"];
    } else if (/<(N|S|MS|SIZE)>/.test(option.flags)) {
      [type, description] = [z.union([z.string(), z.number()]), "a number or a string"];
    } else {
      [type, description] = [z.string(), "a string"];
    }
    shape[key] = type.optional();
    expected.set(key, description);
  }
  return { schema: z.strictObject(shape), expected };
}

/** A JSON value's type, for a message: "an object", "a number (5)", "null". */
function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return `a string (${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)})`;
  return `${typeof value === "number" ? "a number" : `a ${typeof value}`} (${String(value)})`;
}

/** Largest --vm file read: a VM's flags fit in a few hundred bytes. */
const MAX_VM_FILE_BYTES = 1 << 20;

/**
 * `--vm FILE`: a JSON object whose keys are run's long flags (e.g. {"kernel": "x.elf", "smp": 2,
 * "mirror": "vm"}), checked against vmFileSchema. Every fault in the file is exit 65 (a data
 * error in an input file, sysexits), with the file's name and the key.
 */
export function readVmFile(path: string, defaults: RunFlags, run: Command): { name: string; flags: RunFlags } {
  const bad = (message: string) => new InputError(`VM configuration "${path}": ${message}`, ExitStatus.BadInput);
  let config: unknown;
  try {
    config = JSON.parse(Buffer.from(readInput(path, "VM configuration", MAX_VM_FILE_BYTES)).toString("utf8"));
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`VM configuration "${path}" is not valid JSON: ${(e as Error).message}`, ExitStatus.BadInput);
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw bad(`must be a JSON object of run's flags, got ${describeJson(config)}`);
  }
  const { schema, expected } = vmFileSchema(run);
  const checked = schema.safeParse(config);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    if (issue.code === "unrecognized_keys") {
      throw bad(`unknown key ${issue.keys.map((k) => `"${k}"`).join(", ")} (known: ${[...expected.keys()].join(", ")})`);
    }
    const key = String(issue.path[0]);
    throw bad(`key "${key}" must be ${expected.get(key)}, got ${describeJson((config as Record<string, unknown>)[key])}`);
  }
  const values = checked.data;
  // As commander hands them over: strings, switches as booleans, --inject as a list.
  const flags: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(values)) {
    if (key === "name") continue;
    flags[key] = typeof value === "number" ? String(value) : key === "inject" && typeof value === "string" ? [value] : value;
  }
  return { name: typeof values.name === "string" ? values.name : path, flags: flags as unknown as RunFlags };
}

async function runCommand(file: string | undefined, flags: RunFlags, run: Command, checkOnly: boolean): Promise<number> {
  const vmFiles = flags.vm ?? [];
  if (vmFiles.length > 0 && file !== undefined) throw new UsageError(`give the guests either in --vm files or as FILE, not both`);
  const vms: PreparedVm[] = [];
  try {
    if (vmFiles.length === 0) {
      const vm = prepareVm(parseRunFlags(file, flags), flags, "", undefined, checkOnly);
      if (!vm) return 0;
      vms.push(vm);
    } else {
      const { vm: _files, ...defaults } = flags;
      // The command line's own flags first: a bad one there is a usage error, not the file's.
      parseRunFlags(undefined, { ...defaults, vm: [] }, false);
      for (const path of vmFiles) {
        const { name, flags: vmFlags } = readVmFile(path, { ...defaults, vm: [] }, run);
        let parsed: ParsedRun;
        try {
          parsed = parseRunFlags(undefined, vmFlags);
        } catch (e) {
          if (!(e instanceof UsageError)) throw e;
          throw new InputError(`VM configuration "${path}": ${e.message}`, ExitStatus.BadInput);
        }
        const vm = prepareVm(parsed, vmFlags, `[${name}] `, prefixedOutput(name), checkOnly);
        if (vm) vms.push(vm);
      }
      if (vms.length === 0) return 0;
    }
    // Console input goes to the first VM; on a terminal, C-a x ends every VM's run.
    const stdin = process.stdin;
    const interactive = stdin.isTTY === true;
    const consoleInput = new ConsoleInput(
      vms[0]!.machine.uart,
      interactive
        ? {
            exit: () => vms.forEach((vm) => vm.machine.stopFromHost()),
            status: () => vms.map((vm) => `kmemvisor: ${vm.label}${formatMemoryStatus(vm.machine.memoryStats())}`).join("\r\n"),
            say: (text) => process.stderr.write(text),
          }
        : undefined,
    );
    if (interactive) stdin.setRawMode(true);
    stdin.pipe(consoleInput, { end: false });
    stdin.on("error", () => {});
    try {
      return await runVms(vms);
    } finally {
      stdin.unpipe(consoleInput);
      if (interactive) stdin.setRawMode(false);
      stdin.pause();
    }
  } finally {
    for (const vm of vms) vm.close();
  }
}

/**
 * Run the VMs side by side; the exit status is that of the first VM to fail in time (not in --vm
 * order), so a failure is never hidden by a success nor by a later failure of another VM.
 */
async function runVms(vms: PreparedVm[]): Promise<number> {
  const ended: number[] = []; // VM indices in the order they ended
  const results = await Promise.all(vms.map((vm, i) => vm.machine.run(vm.runOptions).finally(() => ended.push(i))));
  const statuses = vms.map((vm, i) => reportVm(vm, results[i]!));
  return ended.map((i) => statuses[i]!).find((s) => s !== 0) ?? 0;
}

export interface ProgramOptions {
  /**
   * Parse and check every flag and read every input file (guests, firmware, --vm files), but boot
   * nothing: the fuzz tests drive the parser in-process this way.
   */
  checkOnly?: boolean;
}

export function buildProgram(options: ProgramOptions = {}): Command {
  const checkOnly = options.checkOnly === true;
  const program = new Command("kmemvisor")
    .description("Multi-core RISC-V emulator and hypervisor with software memory mirroring")
    .exitOverride()
    .showHelpAfterError();
  program
    .command("run")
    .description("boot a guest on a QEMU-virt-compatible machine and exit with its exit code")
    .argument("[FILE]", "guest ELF (same as --kernel)")
    .addOption(new Option("--smp <N>", "number of harts").default("1"))
    .addOption(new Option("-m, --memory <SIZE>", "guest RAM, e.g. 128M or 1G (plain number = MiB)").default("128M"))
    .addOption(
      new Option("--bios <none|default|FILE>", "firmware: none enters the kernel in M-mode; default = Debian's OpenSBI").default("none"),
    )
    .option("--kernel <FILE>", "kernel: ELF, or a raw binary loaded after the firmware (e.g. u-boot.bin)")
    .option("--drive <FILE|file=FILE,readonly=on>", "raw disk image for the virtio block device")
    .option("--append <ARGS>", "kernel command line (FDT /chosen/bootargs)")
    .option("--dumpdtb <FILE>", "write the generated device tree to FILE and exit")
    .option("--timeout <S>", "stop the guest after S seconds (exit status 124)")
    .addOption(
      new Option("--mirror <off|vm|ranges:START-END,...>", "memory mirroring: vm protects all guest memory, ranges only the listed ranges").default("off"),
    )
    .addOption(new Option("--nmr <N>", "copies of mirrored memory, 2 to 5 (primary included)").default("2"))
    .addOption(syncOption())
    .addOption(engineOption())
    .addOption(jitThresholdOption())
    .addOption(jitSupervisorOption())
    .addOption(
      new Option(
        "--inject <SPEC>",
        "inject memory failures: due@WHEN:ADDRESS[:COPY], sdc@WHEN:ADDRESS:BIT[:COPY] (WHEN: SECONDS, or i:N at hart 0's Nth instruction), random@RATE[:SEED] (repeatable)",
      )
        .argParser((value: string, previous: string[]) => [...previous, value])
        .default([]),
    )
    .option("--scrub <S>", "run the memory scrubber in its own thread, pausing S seconds between passes")
    .option("--spares <N>", `spare frames for recovering failed pages of a mirrored VM (default ${DEFAULT_SPARE_FRAMES}; at most one per page of RAM)`)
    .addOption(
      new Option("--vm <FILE>", "run several VMs side by side: a JSON file of run's flags per VM (repeatable)")
        .argParser((value: string, previous: string[]) => [...previous, value])
        .default([]),
    )
    .option("--stats", "print instructions retired, MIPS per hart and wall time to stderr")
    .option("--json", "print the run's result and statistics as JSON to stderr")
    .action(async (file: string | undefined, flags: RunFlags, command: Command) => {
      process.exitCode = await runCommand(file, flags, command, checkOnly);
    });
  program
    .command("stress")
    .description(
      "race stress tester: run a racy SMP guest on a mirrored VM, pause the harts at intervals, compare every copy " +
        "and report divergent words (exit status 1 when any is found, 0 when none)",
    )
    .argument("[FILE]", "racy guest ELF (default: guests/bin/race.elf; guests/bin/race-drf.elf has no data race)")
    .addOption(syncOption())
    .addOption(engineOption())
    .addOption(jitThresholdOption())
    .addOption(jitSupervisorOption())
    .addOption(new Option("--smp <N>", "number of harts").default("2"))
    .addOption(new Option("--nmr <N>", "copies of memory, 2 to 5").default("2"))
    .addOption(new Option("-m, --memory <SIZE>", "guest RAM").default("16M"))
    .addOption(new Option("--duration <S>", "stop after S seconds").default("10"))
    .option("--rounds <N>", "stop after N pause-and-compare rounds (whichever comes first)")
    .addOption(new Option("--interval <MS>", "milliseconds between pauses").default("200"))
    .option("--seed <N>", "seed of the guest's operation streams (default: random, printed)")
    .option("--iterations <N>", "iterations per hart, after which the guest checks its counters and exits (default: until stopped)")
    .option("--stop-on-divergence", "end the run at the first pause that finds a divergent word")
    .option("--json", "print the report as JSON to stdout")
    .action(async (file: string | undefined, flags: StressFlags) => {
      process.exitCode = await stressCommand(file ?? DEFAULT_STRESS_GUEST, flags, checkOnly);
    });
  program
    .command("difftest")
    .description(
      "differential tester: run a guest, or random programs, on the interpreter and on the translator and stop at " +
        "the first divergence of pc, registers, CSRs or memory (exit status 1 when one is found, 0 when none). " +
        "Lockstep (default): one instruction at a time, every instruction a translation entry. --coarse: the " +
        "translator's real code shape (direct branches, wasm loops) run in chunks of random size, the interpreter " +
        "catching up after each; --loops: random loop-shaped programs through --coarse",
    )
    .argument("[FILE]", "guest ELF, booted as by run --bios none (default: random RV64IMAC instruction streams)")
    .option("--seed <N>", "seed of the first random stream; stream i has seed N + i (default: random, printed)")
    .addOption(new Option("--count <N>", "random streams to run").default("50"))
    .option("--length <N>", "random instructions per stream, which loops over them 3 to 6 times (default 1000); --loops: static instructions per program body, which runs 2 to 4 times (default 200: the translator's first translation of a page takes up to 256)")
    .option("--max-steps <N>", "stop after N steps (a guest: default 10000000; a stream: 10 times its length per loop; --coarse: instructions)")
    .option("--check-every <N>", "compare RAM and CSRs every N steps (default 100000 for a guest, 2000 for a stream; --coarse: RAM every N instructions, the rest after every chunk)")
    .option("-m, --memory <SIZE>", "guest RAM for FILE (default 128M)")
    .option("--resync", "a step in which one engine retires more than one instruction is no divergence: the other catches up (lockstep only)")
    .option("--coarse", "normal translations, run in chunks of random size; the interpreter catches up and the whole state is compared after each")
    .option("--loops", "random loop-shaped programs (nested counted loops, if/else, early exits, continues, calls, traps, timer interrupts) instead of streams; implies --coarse")
    .option("--chunk-seed <N>", "--coarse with FILE: seed of the chunk sizes (default: random, printed; streams use their own seed)")
    .addOption(new Option("--max-chunk <N>", "--coarse: largest chunk, in instructions (sizes are log-uniform from 1)").default(String(DEFAULT_MAX_CHUNK)))
    .addOption(new Option("--jit-threshold <N>", "--coarse: interpreted jumps within a page before the translator compiles it").default(String(DEFAULT_COARSE_THRESHOLD)))
    .addOption(new Option("--extra-entries <PERCENT>", "--coarse: translations also get entries at PERCENT% of random offsets (loop bodies, back edges)").default("0"))
    .action(async (file: string | undefined, flags: DifftestFlags, command: Command) => {
      const cli = (name: string) => command.getOptionValueSource(name) === "cli";
      const given = ["seed", "count", "length", "loops"].filter(cli);
      const coarseOnly = ["chunkSeed", "maxChunk", "jitThreshold", "extraEntries"].filter(cli);
      process.exitCode = await difftestCommand(file, flags, given, coarseOnly, checkOnly);
    });
  return program;
}

interface DifftestFlags {
  seed?: string;
  count: string;
  length?: string;
  maxSteps?: string;
  checkEvery?: string;
  memory?: string;
  resync?: boolean;
  coarse?: boolean;
  loops?: boolean;
  chunkSeed?: string;
  maxChunk: string;
  jitThreshold: string;
  extraEntries: string;
}

/** A whole number from 0 to `max`. */
function parseWholeNumber(name: string, text: string, max: number): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) > max) throw new RangeError(`bad ${name} "${text}": expected a whole number from 0 to ${max}`);
  return Number(text);
}

/** The flag a usage message names, from its camel-case option name (chunkSeed: --chunk-seed). */
const flagName = (name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/**
 * `kmemvisor difftest`; `streamFlags` are the random-stream flags given on the command line,
 * `coarseFlags` the coarse-mode ones.
 */
async function difftestCommand(file: string | undefined, flags: DifftestFlags, streamFlags: string[], coarseFlags: string[], checkOnly = false): Promise<number> {
  const count = usage(() => parsePositiveInteger("--count", flags.count, 1e9));
  const length = usage(() => parsePositiveInteger("--length", flags.length ?? (flags.loops ? "200" : "1000"), 1e6));
  const maxSteps = flags.maxSteps === undefined ? undefined : usage(() => parsePositiveInteger("--max-steps", flags.maxSteps!, Number.MAX_SAFE_INTEGER));
  const memoryCheckEvery = flags.checkEvery === undefined ? undefined : usage(() => parsePositiveInteger("--check-every", flags.checkEvery!, 1e12));
  const ramSize = flags.memory === undefined ? undefined : usage(() => parseMemorySize(flags.memory!));
  const seed = flags.seed === undefined ? randomBytes(4).readUInt32LE() : usage(() => parseWholeNumber("--seed", flags.seed!, 0xffff_ffff));
  const coarse = flags.coarse === true || flags.loops === true;
  const maxChunk = usage(() => parsePositiveInteger("--max-chunk", flags.maxChunk, 1e9));
  const jitThreshold = usage(() => parseWholeNumber("--jit-threshold", flags.jitThreshold, 1e9));
  const extraEntries = usage(() => parseWholeNumber("--extra-entries", flags.extraEntries, 100));
  if (file !== undefined && streamFlags.length > 0) {
    throw new UsageError(`--${streamFlags[0]} chooses random streams: give it without FILE`);
  }
  if (file === undefined && ramSize !== undefined) throw new UsageError("-m sets the RAM of FILE's machines: random streams have their own");
  if (!coarse && coarseFlags.length > 0) throw new UsageError(`${flagName(coarseFlags[0]!)} is for --coarse (or --loops)`);
  if (coarse && flags.resync) throw new UsageError("--resync is for lockstep: --coarse compares where both engines retired as many instructions");
  if (file === undefined && flags.chunkSeed !== undefined) throw new UsageError("--chunk-seed is for FILE: each random stream's chunk sizes come from its own seed");
  const chunkSeed = flags.chunkSeed === undefined ? randomBytes(4).readUInt32LE() : usage(() => parseWholeNumber("--chunk-seed", flags.chunkSeed!, 0xffff_ffff));
  const options = {
    maxSteps, memoryCheckEvery, ramSize, resync: flags.resync === true,
    ...(coarse ? { coarse, maxChunk, jitThreshold, extraEntries } : {}),
  };
  const say = (line: string) => process.stdout.write(line + "\n");
  const unit = coarse ? "instructions" : "steps";
  const rate = (n: number, ms: number) => `${Math.round((n / Math.max(ms, 1)) * 1000)} ${unit}/s`;
  const resyncNote = (resyncs: number) =>
    resyncs === 0 ? ""
    : coarse ? `; ${resyncs} chunk(s) ended on a trap the translator took past its budget, settled by one more step`
    : `; ${resyncs} step(s) in which one engine ran past one instruction and the other caught up (--resync)`;
  // The flags that change a coarse run, to repeat it.
  const coarseArgs = coarse
    ? [flags.loops ? "--loops" : "--coarse", ...(["maxChunk", "jitThreshold", "extraEntries"] as const).filter((k) => coarseFlags.includes(k)).map((k) => `${flagName(k)} ${flags[k]}`)].join(" ")
    : "";

  if (file !== undefined) {
    const elf = readInput(file, "guest");
    // The lockstep machines never poll HTIF's host side (host/difftest.ts), so such a guest's
    // console and exit would go unseen and it would run to --max-steps for nothing.
    const symbols = guarded(() => parseElf(elf, file)).symbols;
    if (symbols.has("tohost") && symbols.has("fromhost")) {
      throw new InputError(`difftest: ${file} talks to the host through HTIF (tohost/fromhost), which difftest does not serve: give a guest that exits through the finisher`, ExitStatus.BadInput);
    }
    if (checkOnly) return 0;
    if (coarse) process.stderr.write(`difftest: chunk seed ${chunkSeed}\n`);
    const bar = new SingleBar({ format: `difftest {file} | {value} ${unit}`, stream: process.stderr, hideCursor: true });
    bar.start(options.maxSteps ?? 10_000_000, 0, { file });
    let result;
    try {
      result = guarded(() => difftestGuest(elf, { ...options, chunkSeed, progress: (steps) => bar.update(steps) }, file));
    } finally {
      bar.stop();
    }
    if (result.divergence) {
      say(`difftest: ${file}: divergence after ${result.instructions} instructions`);
      if (coarse) say(`  again: kmemvisor difftest ${coarseArgs} --chunk-seed ${chunkSeed} ${file}${flags.memory ? ` -m ${flags.memory}` : ""}`);
      for (const line of formatDivergence(result.divergence)) say(line);
      return 1;
    }
    const ending = result.end === "exit" ? `exited with code ${result.exitCode}` : `stopped after --max-steps`;
    const done = coarse ? `${result.steps} chunks (coarse), ${rate(result.instructions, result.milliseconds)}` : `${result.steps} steps (${rate(result.steps, result.milliseconds)})`;
    say(`difftest: ${file}: ${result.instructions} instructions in ${done}, ${ending}, no divergence${resyncNote(result.resyncs)}`);
    return 0;
  }

  if (checkOnly) return 0;
  const what = flags.loops ? "loop programs" : "streams";
  process.stderr.write(`difftest: seed ${seed}\n`);
  const bar = new SingleBar({
    format: `difftest [{bar}] {value}/{total} ${what} | {instructions} instructions | {traps} traps`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 2000,
    hideCursor: true,
  });
  bar.start(count, 0, { instructions: 0, traps: 0 });
  const total = { streams: 0, steps: 0, instructions: 0, traps: 0, resyncs: 0, unfinished: 0, milliseconds: 0 };
  const generator = flags.loops ? randomLoopProgram : undefined;
  try {
    for (let i = 0; i < count; i++) {
      const summary = difftestStreams({ seed: seed + i, count: 1, length, generator, ...options });
      for (const key of ["streams", "steps", "instructions", "traps", "resyncs", "unfinished", "milliseconds"] as const) total[key] += summary[key];
      bar.update(total.streams, { instructions: total.instructions, traps: total.traps });
      if (summary.divergence) {
        bar.stop();
        const again = ["--seed", summary.divergence.seed, "--count 1 --length", length, coarseArgs].join(" ").trim();
        say(`difftest: divergence in the ${flags.loops ? "loop program" : "stream"} of seed ${summary.divergence.seed} (again: kmemvisor difftest ${again})`);
        for (const line of formatDivergence(summary.divergence)) say(line);
        return 1;
      }
      // Let the progress bar's timer run between streams.
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    bar.stop();
  }
  const unfinished = total.unfinished === 0 ? "" : `, ${total.unfinished} stopped at --max-steps`;
  const counted = coarse ? total.instructions : total.steps;
  say(
    `difftest: ${total.streams} ${what}, ${total.instructions} instructions, no divergence ` +
      `(${coarse ? "coarse, " : ""}${total.traps} traps, ${rate(counted, total.milliseconds)}${unfinished}${resyncNote(total.resyncs)})`,
  );
  return 0;
}

function jitThresholdOption(): Option {
  return new Option("--jit-threshold <N>", "interpreted jumps within a page before --engine jit compiles it").default(String(DEFAULT_JIT_THRESHOLD));
}

function jitSupervisorOption(): Option {
  return new Option("--jit-supervisor", "--engine jit: translate S-mode (kernel) code too; by default the interpreter runs it, which is faster on every kernel measured so far");
}

function engineOption(): Option {
  return new Option("--engine <ENGINE>", "interp = the interpreter alone; jit = hot pages translated to WebAssembly")
    .choices(ENGINES)
    .default(usage(() => defaultEngineName())); // a bad KMEMVISOR_ENGINE is a usage error
}

/**
 * The engine flags of a VM. Unless --jit-supervisor, the translator leaves S-mode code to the
 * interpreter, and M-mode code too when `firmware` was booted with --bios: firmware then runs only
 * as the kernel's trap handler, in bursts too short for a translation to pay back.
 */
function parseEngine(flags: { engine: string; jitThreshold: string; jitSupervisor?: boolean }, firmware = false): EngineChoice {
  if (!(ENGINES as readonly string[]).includes(flags.engine)) throw new RangeError(`--engine must be one of ${ENGINES.join(", ")}, got "${flags.engine}"`);
  if (flags.engine === "interp") return { kind: "interp" };
  const text = String(flags.jitThreshold);
  if (!/^\d+$/.test(text)) throw new RangeError(`--jit-threshold must be a whole number, got "${text}"`);
  const interpretKernels = flags.jitSupervisor !== true;
  return { kind: "jit", threshold: Number(text), interpretSupervisor: interpretKernels, interpretMachine: interpretKernels && firmware };
}

function syncOption(): Option {
  return new Option(
    "--sync <STRATEGY>",
    "how mirror copies stay identical when harts race: " + SYNC_STRATEGIES.map((s) => `${s} = ${SYNC_GUARANTEES[s]}`).join("; "),
  )
    .choices(SYNC_STRATEGIES)
    .default(DEFAULT_SYNC);
}

interface StressFlags {
  sync: string;
  engine: string;
  jitThreshold: string;
  jitSupervisor?: boolean;
  smp: string;
  nmr: string;
  memory: string;
  duration: string;
  rounds?: string;
  interval: string;
  seed?: string;
  iterations?: string;
  stopOnDivergence?: boolean;
  json?: boolean;
}

async function stressCommand(guest: string, flags: StressFlags, checkOnly = false): Promise<number> {
  const harts = usage(() => parsePositiveInteger("--smp", flags.smp, 64));
  const copies = usage(() => parseIntegerInRange("--nmr", flags.nmr, 2, 5)); // the stress tester compares copies
  const ramSize = usage(() => parseMemorySize(flags.memory));
  const durationMs = usage(() => parseSeconds("--duration", flags.duration)) * 1000;
  const rounds = flags.rounds === undefined ? undefined : usage(() => parsePositiveInteger("--rounds", flags.rounds!, 1e9));
  const intervalMs = usage(() => parseSeconds("--interval", flags.interval, "milliseconds"));
  const parseCount = (name: string, text: string) =>
    usage(() => {
      if (!/^\d+$/.test(text.trim())) throw new RangeError(`bad ${name} "${text}": expected a whole number`);
      return BigInt(text.trim());
    });
  const seed = flags.seed === undefined ? BigInt(randomBytes(4).readUInt32LE()) : parseCount("--seed", flags.seed);
  const iterations = flags.iterations === undefined ? undefined : parseCount("--iterations", flags.iterations);
  const engine = usage(() => parseEngine(flags));
  readInput(guest, "guest");
  if (checkOnly) return 0;
  const bar = new SingleBar({
    format: "stress --sync {sync} [{bar}] {value}/{total} {unit} | round {round} | {divergent} divergent word(s)",
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 2000,
    hideCursor: true,
  });
  const byRounds = rounds !== undefined;
  bar.start(byRounds ? rounds : Math.round(durationMs / 1000), 0, {
    sync: flags.sync, unit: byRounds ? "rounds" : "s", round: 0, divergent: 0,
  });
  const progress = (p: StressProgress) =>
    bar.update(byRounds ? p.round : Math.min(Math.floor(p.elapsedMs / 1000), Math.round(durationMs / 1000)), {
      round: p.round,
      divergent: p.divergentWords,
    });
  let report;
  try {
    report = await runStress({
      guest, harts, copies, ramSize, durationMs, rounds, intervalMs, seed, iterations,
      stopOnDivergence: flags.stopOnDivergence === true,
      sync: parseSyncStrategy(flags.sync),
      engine,
      progress,
      output: (bytes) => process.stdout.write(bytes),
    });
  } catch (e) {
    // A bad ELF or one that does not fit: the same exit status as `run` gives.
    guarded(() => { throw e; });
    throw e;
  } finally {
    bar.stop();
  }
  if (flags.json) {
    process.stdout.write(JSON.stringify(report, (_key, value: unknown) => (typeof value === "bigint" ? `0x${value.toString(16)}` : value)) + "\n");
  } else {
    for (const line of formatStressReport(report)) process.stderr.write(line + "\n");
  }
  if (report.run.reason === "fault" || (report.run.exitCode ?? 0) !== 0) return ExitStatus.GuestFault;
  return report.divergentWords > 0 ? 1 : 0;
}

/** A message as one line: control characters from flags, paths or a file's text shown escaped (\\n). */
function oneLine(message: string): string {
  return message.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

export async function main(argv: string[], options: ProgramOptions = {}): Promise<number> {
  try {
    const program = buildProgram(options);
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? 0 : ExitStatus.Usage;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`kmemvisor: ${oneLine(e.message)}\n`);
      return ExitStatus.Usage;
    }
    if (e instanceof InputError) {
      process.stderr.write(`kmemvisor: ${oneLine(e.message)}\n`);
      return e.status;
    }
    throw e;
  }
}
