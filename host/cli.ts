/**
 * The `kmemvisor` command line. Flags follow QEMU's where QEMU has one.
 * Exit status: the guest's exit code; 124 on --timeout; 70 when the guest faulted beyond repair;
 * 64 for a usage error; 65 for a bad input file; 66 for a missing one.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { Machine, type RunResult } from "../hypervisor/machine.ts";
import { ElfError } from "../hypervisor/elf.ts";
import { BootError, checkFirmware, planBoot, resolveBios, type BootImages } from "../hypervisor/boot.ts";
import { DiskImage, DiskImageError } from "../hypervisor/disk-image.ts";
import { parseInjection, parseRandomInjection, randomInjections } from "../mirror/inject.ts";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { existsSync, writeFileSync } from "node:fs";
import { parseMemorySize, parsePositiveInteger, parseSeconds } from "./sizes.ts";

export const ExitStatus = { Timeout: 124, GuestFault: 70, Usage: 64, BadInput: 65, NoInput: 66 } as const;

class UsageError extends Error {}
class InputError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

interface RunFlags {
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
  inject: string[];
  scrub?: string;
  stats?: boolean;
  json?: boolean;
}

function readInput(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new InputError(`${what} "${path}" does not exist`, ExitStatus.NoInput);
    if (code === "EISDIR") throw new InputError(`${what} "${path}" is a directory`, ExitStatus.NoInput);
    throw new InputError(`cannot read ${what} "${path}": ${(e as Error).message}`, ExitStatus.NoInput);
  }
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

/**
 * Copies of guest memory for `--mirror` and `--nmr`: off → 1; vm → N (default 2: primary and one
 * mirror). Per-range protection (`ranges:`) is not built yet and is refused rather than ignored.
 */
export function parseMirrorPolicy(mirror: string, nmr: string): number {
  const copies = parsePositiveInteger("--nmr", nmr, 5);
  if (copies < 2) throw new RangeError(`bad --nmr "${nmr}": N-modular redundancy needs 2 to 5 copies`);
  if (mirror === "off") return 1;
  if (mirror === "vm") return copies;
  if (mirror.startsWith("ranges:")) throw new RangeError(`--mirror ranges: is not supported yet; use --mirror vm or off`);
  throw new RangeError(`bad --mirror "${mirror}": expected off or vm`);
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
  }
  lines.push(`total: ${total} instructions, ${(total / result.wallMilliseconds / 1000).toFixed(1)} MIPS aggregate`);
  const m = result.memory;
  if (m.copies > 1 || m.injected > 0) {
    const latency = m.recoveries > 0 ? `, mean recovery latency ${(m.recoveryMicroseconds / m.recoveries).toFixed(0)} µs` : "";
    lines.push(`memory: ${m.copies} cop${m.copies === 1 ? "y" : "ies"}, ${m.injected} failure(s) injected, ${m.recoveries} page(s) recovered${latency}, ${m.sparesUsed} spare frame(s) used`);
    const s = m.scrub;
    if (s.passes > 0) lines.push(`scrubber: ${s.passes} pass(es), ${s.mismatches} mismatch(es), ${s.repaired} repaired by vote, ${s.undecidable} undecidable`);
  }
  return lines.join("\n");
}

async function runCommand(file: string | undefined, flags: RunFlags): Promise<number> {
  const harts = usage(() => parsePositiveInteger("--smp", flags.smp, 64));
  const ramSize = usage(() => parseMemorySize(flags.memory));
  const timeoutMs = flags.timeout === undefined ? undefined : usage(() => parseSeconds(flags.timeout!)) * 1000;
  if (file !== undefined && flags.kernel !== undefined) {
    throw new UsageError(`give the guest either as FILE or with --kernel, not both`);
  }
  const kernelPath = file ?? flags.kernel;
  const bios = usage(() => resolveBios(flags.bios));
  if (bios === "none" && kernelPath === undefined && flags.dumpdtb === undefined) {
    throw new UsageError(`no guest to run: give an ELF file (kmemvisor run FILE)`);
  }
  const drive = flags.drive === undefined ? undefined : usage(() => parseDrive(flags.drive!));
  const copies = usage(() => parseMirrorPolicy(flags.mirror, flags.nmr));
  const injections = usage(() =>
    flags.inject.flatMap((spec) => {
      const random = parseRandomInjection(spec);
      if (!random) return [parseInjection(spec)];
      // Random failures for as long as the run may last (an hour when there is no --timeout).
      return randomInjections(random, { base: RAM_BASE, size: ramSize, copies }, timeoutMs ?? 3_600_000);
    }),
  );
  const scrubIntervalMs = flags.scrub === undefined ? undefined : usage(() => parseSeconds(flags.scrub!) );

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
  const disk = drive === undefined ? undefined : guarded(() => DiskImage.open(drive.path, { readOnly: drive.readOnly }));
  const machine = new Machine({
    ramSize,
    harts,
    disk,
    copies,
    workers: true,
    onDeviceError: (message) => process.stderr.write(`kmemvisor: virtio-blk: ${message}\n`),
  });
  const plan = guarded(() => planBoot(machine, images));
  if (flags.dumpdtb !== undefined) {
    writeFileSync(flags.dumpdtb, plan.fdt);
    return 0;
  }
  machine.start(plan.start, BigInt(plan.fdtAddress), BigInt(plan.dynamicInfoAddress));

  const stdin = process.stdin;
  const feedInput = (chunk: Buffer) => machine.uart.pushInput(chunk);
  const interactive = stdin.isTTY === true;
  if (interactive) stdin.setRawMode(true);
  stdin.on("data", feedInput);
  stdin.on("error", () => {});
  try {
    const result = await machine.run({ timeoutMs, injections, scrubIntervalMs: scrubIntervalMs === undefined ? undefined : scrubIntervalMs * 1000 });
    for (const line of result.scrubReports) process.stderr.write(`kmemvisor: ${line}\n`);
    let status: number;
    if (result.reason === "timeout") {
      process.stderr.write(`kmemvisor: timeout: the guest did not exit within ${flags.timeout} s\n`);
      status = ExitStatus.Timeout;
    } else if (result.reason === "fault") {
      process.stderr.write(`kmemvisor: guest stopped: ${result.fault}\n`);
      status = ExitStatus.GuestFault;
    } else {
      status = result.exitCode ?? 0;
    }
    if (flags.stats) process.stderr.write(formatStats(result) + "\n");
    if (flags.json) process.stderr.write(JSON.stringify({ ...result, status }) + "\n");
    return status;
  } finally {
    disk?.close();
    stdin.off("data", feedInput);
    if (interactive) stdin.setRawMode(false);
    stdin.pause();
  }
}

export function buildProgram(): Command {
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
    .addOption(new Option("--mirror <off|vm>", "memory mirroring: vm mirrors every store of every hart and device").default("off"))
    .addOption(new Option("--nmr <N>", "copies of mirrored memory, 2 to 5 (primary included)").default("2"))
    .addOption(
      new Option(
        "--inject <SPEC>",
        "inject memory failures: due@SECONDS:ADDRESS[:COPY], sdc@SECONDS:ADDRESS:BIT[:COPY], random@RATE[:SEED] (repeatable)",
      )
        .argParser((value: string, previous: string[]) => [...previous, value])
        .default([]),
    )
    .option("--scrub <S>", "run the memory scrubber in its own thread, pausing S seconds between passes")
    .option("--stats", "print instructions retired, MIPS per hart and wall time to stderr")
    .option("--json", "print the run's result and statistics as JSON to stderr")
    .action(async (file: string | undefined, flags: RunFlags) => {
      process.exitCode = await runCommand(file, flags);
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? 0 : ExitStatus.Usage;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`kmemvisor: ${e.message}\n`);
      return ExitStatus.Usage;
    }
    if (e instanceof InputError) {
      process.stderr.write(`kmemvisor: ${e.message}\n`);
      return e.status;
    }
    throw e;
  }
}
