/**
 * The `kmemvisor` command line. Flags follow QEMU's where QEMU has one.
 * Exit status: the guest's exit code; 124 on --timeout; 70 when the guest faulted beyond repair;
 * 64 for a usage error; 65 for a bad input file; 66 for a missing one.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { Machine, type RunResult } from "../hypervisor/machine.ts";
import { ElfError } from "../hypervisor/elf.ts";
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
  timeout?: string;
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
  return lines.join("\n");
}

async function runCommand(file: string | undefined, flags: RunFlags): Promise<number> {
  const harts = usage(() => parsePositiveInteger("--smp", flags.smp, 64));
  const ramSize = usage(() => parseMemorySize(flags.memory));
  const timeoutMs = flags.timeout === undefined ? undefined : usage(() => parseSeconds(flags.timeout!)) * 1000;
  if (flags.bios !== "none") {
    throw new UsageError(`--bios ${flags.bios}: firmware boot is not supported yet; only --bios none (issue #3 adds it)`);
  }
  if (flags.drive !== undefined) {
    throw new UsageError(`--drive: there is no virtio block device yet (issue #3 adds it)`);
  }
  if (file !== undefined && flags.kernel !== undefined) {
    throw new UsageError(`give the guest either as FILE or with --kernel, not both`);
  }
  const kernel = file ?? flags.kernel;
  if (kernel === undefined) throw new UsageError(`no guest to run: give an ELF file (kmemvisor run FILE)`);

  const machine = new Machine({ ramSize, harts });
  const bytes = readInput(kernel, "guest");
  let entry: bigint;
  try {
    entry = machine.loadElf(bytes, kernel).entry;
  } catch (e) {
    if (e instanceof ElfError) throw new InputError(e.message, ExitStatus.BadInput);
    throw e;
  }
  machine.start(entry);

  const stdin = process.stdin;
  const feedInput = (chunk: Buffer) => machine.uart.pushInput(chunk);
  const interactive = stdin.isTTY === true;
  if (interactive) stdin.setRawMode(true);
  stdin.on("data", feedInput);
  stdin.on("error", () => {});
  try {
    const result = await machine.run({ timeoutMs });
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
    .addOption(new Option("--bios <none|FILE>", "firmware; none enters the kernel in M-mode").default("none"))
    .option("--kernel <FILE>", "kernel ELF")
    .option("--drive <FILE>", "disk image for the virtio block device")
    .option("--timeout <S>", "stop the guest after S seconds (exit status 124)")
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
