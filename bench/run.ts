/**
 * kmemvisor's benchmark runner. Runs each benchmark guest on kmemvisor and on
 * qemu-system-riscv64 (TCG) side by side, in one run, and prints guest MIPS and ratios.
 *
 *   npm run bench                 # all guests, 3 rounds each
 *   npm run bench -- cpubound 5   # one guest, 5 rounds
 *
 * Both emulators are timed as whole processes (start-up included, so neither is favoured);
 * kmemvisor's in-VM MIPS (from --json, start-up excluded) is printed too. Guest instruction
 * counts come from kmemvisor's exact instret; the guests are deterministic, so QEMU retires the
 * same instructions.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const GUESTS = ["cpubound", "seqread", "seqwrite", "memstress"];

interface Sample {
  wallMs: number;
  instructions?: number;
  vmMs?: number;
  status: number | null;
}

function timeProcess(command: string, args: string[]): Sample {
  const start = performance.now();
  const result = spawnSync(command, args, { cwd: root, encoding: "utf8", timeout: 600_000 });
  const wallMs = performance.now() - start;
  if (result.error) throw result.error;
  const sample: Sample = { wallMs, status: result.status };
  const jsonLine = result.stderr.split("\n").find((line) => line.startsWith("{"));
  if (jsonLine) {
    const report = JSON.parse(jsonLine) as { wallMilliseconds: number; harts: { instructions: number }[] };
    sample.instructions = report.harts.reduce((sum, h) => sum + h.instructions, 0);
    sample.vmMs = report.wallMilliseconds;
  }
  return sample;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function main(): void {
  const [only, roundsText] = process.argv.slice(2);
  const rounds = Number(roundsText ?? 3);
  const guests = only ? [only] : GUESTS;
  const haveQemu = spawnSync("qemu-system-riscv64", ["--version"]).status === 0;
  if (!haveQemu) console.log("qemu-system-riscv64 not found: QEMU columns omitted (apt-get install qemu-system-misc)");
  console.log(`rounds per guest: ${rounds} (median shown); single hart; interpreter engine`);
  console.log("guest        instructions  kmemvisor-proc  kmemvisor-vm   qemu-proc   kmemvisor/qemu");
  for (const guest of guests) {
    const elf = join("guests", "bin", `${guest}.elf`);
    if (!existsSync(join(root, elf))) throw new Error(`no guest ${elf}: run make -C guests`);
    const ours: Sample[] = [];
    const qemu: Sample[] = [];
    for (let round = 0; round < rounds; round++) {
      // Interleave the two emulators so that machine noise hits both alike.
      ours.push(timeProcess(process.execPath, [join("bin", "kmemvisor.js"), "run", "--json", elf]));
      if (haveQemu) {
        qemu.push(timeProcess("qemu-system-riscv64", ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-kernel", elf]));
      }
    }
    const failed = ours.find((s) => s.status !== 0) ?? qemu.find((s) => s.status !== 0);
    if (failed) throw new Error(`${guest}: a run exited with status ${failed.status}`);
    const instructions = ours[0]!.instructions!;
    const mips = (ms: number) => instructions / ms / 1000;
    const oursProc = mips(median(ours.map((s) => s.wallMs)));
    const oursVm = mips(median(ours.map((s) => s.vmMs!)));
    const cells = [
      guest.padEnd(12),
      String(instructions).padStart(12),
      `${oursProc.toFixed(1)} MIPS`.padStart(16),
      `${oursVm.toFixed(1)} MIPS`.padStart(14),
    ];
    if (haveQemu) {
      const qemuProc = mips(median(qemu.map((s) => s.wallMs)));
      cells.push(`${qemuProc.toFixed(1)} MIPS`.padStart(12), `${((oursProc / qemuProc) * 100).toFixed(1)}%`.padStart(16));
    }
    console.log(cells.join(""));
  }
}

main();
