/**
 * kmemvisor's benchmark runner. Runs each benchmark guest on kmemvisor and on
 * qemu-system-riscv64 (TCG) side by side, in one run, and prints guest MIPS and ratios.
 *
 *   npm run bench                          # kmemvisor vs QEMU, all guests, 3 rounds each
 *   npm run bench -- qemu cpubound 5       # one guest, 5 rounds
 *   npm run bench -- mirror                # mirror overhead: --mirror vm vs off, side by side
 *   npm run bench -- smp parallel-sum      # aggregate MIPS on 1 and 2 harts
 *   npm run bench -- sync                  # cost of each --sync strategy against none, 1 and 2 harts
 *   npm run bench -- jit                   # --engine jit vs interp vs QEMU (+ cpubound's long build), and the jit's mirror overhead
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
/**
 * The jit suite adds cpubound's long build (~2.4 G instructions, 8× cpubound): the translator's
 * start-up (translating, then V8 optimising the hot code) is a fixed cost that the ~0.3 G
 * instructions of cpubound do not amortise; the long run shows the steady state.
 */
const JIT_GUESTS = [...GUESTS, "long/cpubound"];

interface Sample {
  wallMs: number;
  instructions?: number;
  vmMs?: number;
  status: number | null;
  /** The end of the process's stdout and stderr (for the report when it failed). */
  output?: string;
}

function timeProcess(command: string, args: string[]): Sample {
  const start = performance.now();
  const result = spawnSync(command, args, { cwd: root, encoding: "utf8", timeout: 600_000 });
  const wallMs = performance.now() - start;
  if (result.error) throw result.error;
  const sample: Sample = { wallMs, status: result.status, output: (result.stdout + result.stderr).slice(-2000) };
  const jsonLine = result.stderr.split("\n").find((line) => line.startsWith("{"));
  if (jsonLine) {
    const report = JSON.parse(jsonLine) as { wallMilliseconds: number; harts: { instructions: number }[] };
    sample.instructions = report.harts.reduce((sum, h) => sum + h.instructions, 0);
    sample.vmMs = report.wallMilliseconds;
  }
  return sample;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function guestElf(guest: string): string {
  const elf = join("guests", "bin", `${guest}.elf`);
  if (!existsSync(join(root, elf))) throw new Error(`no guest ${elf}: run make -C guests`);
  return elf;
}

function kmemvisor(elf: string, flags: string[]): Sample {
  const sample = timeProcess(process.execPath, [join("bin", "kmemvisor.js"), "run", "--json", ...flags, elf]);
  if (sample.status !== 0) throw new Error(`${elf} ${flags.join(" ")}: exit status ${sample.status}\n${sample.output ?? ""}`);
  return sample;
}

/** kmemvisor and QEMU on the same ELFs. */
function compareWithQemu(guests: string[], rounds: number): void {
  const haveQemu = spawnSync("qemu-system-riscv64", ["--version"]).status === 0;
  if (!haveQemu) console.log("qemu-system-riscv64 not found: QEMU columns omitted (apt-get install qemu-system-misc)");
  console.log(`rounds per guest: ${rounds} (median shown); single hart; interpreter engine`);
  console.log("guest        instructions  kmemvisor-proc  kmemvisor-vm   qemu-proc   kmemvisor/qemu");
  for (const guest of guests) {
    const elf = guestElf(guest);
    const ours: Sample[] = [];
    const qemu: Sample[] = [];
    for (let round = 0; round < rounds; round++) {
      // Interleave the two emulators so that machine noise hits both alike.
      ours.push(kmemvisor(elf, []));
      if (haveQemu) {
        qemu.push(timeProcess("qemu-system-riscv64", ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-kernel", elf]));
      }
    }
    const failed = qemu.find((s) => s.status !== 0);
    if (failed) throw new Error(`${guest}: QEMU exited with status ${failed.status}`);
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

/** Mirror overhead: the same guest with --mirror vm (N copies) and --mirror off, interleaved. */
function mirrorOverhead(guests: string[], rounds: number): void {
  console.log(`rounds per guest: ${rounds} (median of in-VM wall time); single hart; interpreter engine`);
  console.log("guest        off (ms)   vm nmr2 (ms)  overhead   vm nmr3 (ms)  overhead");
  const overheads: number[] = [];
  for (const guest of guests) {
    const elf = guestElf(guest);
    const off: number[] = [], two: number[] = [], three: number[] = [];
    for (let round = 0; round < rounds; round++) {
      off.push(kmemvisor(elf, ["--mirror", "off"]).vmMs!);
      two.push(kmemvisor(elf, ["--mirror", "vm", "--nmr", "2"]).vmMs!);
      three.push(kmemvisor(elf, ["--mirror", "vm", "--nmr", "3"]).vmMs!);
    }
    const base = median(off);
    const pct = (ms: number) => ((ms / base - 1) * 100);
    overheads.push(pct(median(two)));
    console.log(
      guest.padEnd(12) + base.toFixed(0).padStart(9) + median(two).toFixed(0).padStart(15) +
        `${pct(median(two)).toFixed(1)}%`.padStart(10) + median(three).toFixed(0).padStart(15) + `${pct(median(three)).toFixed(1)}%`.padStart(10),
    );
  }
  const mean = overheads.reduce((a, b) => a + b, 0) / overheads.length;
  console.log(`nmr 2: worst ${Math.max(...overheads).toFixed(1)}%, mean ${mean.toFixed(1)}% (kMemvisor paper: 55% worst, 30% average)`);
}

/** Aggregate guest MIPS of one guest on 1 and 2 harts (each hart in its own worker thread). */
function smpScaling(guests: string[], rounds: number): void {
  console.log(`rounds: ${rounds} (median of in-VM wall time); harts in worker threads`);
  console.log("guest            1 hart MIPS   2 harts MIPS   speed-up");
  for (const guest of guests) {
    const elf = guestElf(guest);
    const one: Sample[] = [], twoHarts: Sample[] = [];
    for (let round = 0; round < rounds; round++) {
      one.push(kmemvisor(elf, ["--smp", "1"]));
      twoHarts.push(kmemvisor(elf, ["--smp", "2"]));
    }
    const mips = (samples: Sample[]) => median(samples.map((s) => s.instructions! / s.vmMs! / 1000));
    const a = mips(one), b = mips(twoHarts);
    console.log(guest.padEnd(16) + a.toFixed(1).padStart(12) + b.toFixed(1).padStart(15) + `${(b / a).toFixed(2)}x`.padStart(11));
  }
}

/**
 * The mirror sync strategies' cost: each guest on 1 and 2 harts, mirrored (NMR 2), under every
 * strategy, interleaved round by round; in-VM time, ratios against `none` of the same hart count.
 */
function syncCost(guests: string[], rounds: number): void {
  const strategies = ["none", "atomic", "striped", "global"];
  console.log(`rounds: ${rounds} (median of in-VM wall time); --mirror vm --nmr 2; time relative to --sync none`);
  console.log("guest                harts" + strategies.map((s) => s.padStart(16)).join(""));
  for (const guest of guests) {
    const elf = guestElf(guest);
    for (const harts of [1, 2]) {
      const times = new Map<string, number[]>(strategies.map((s) => [s, []]));
      for (let round = 0; round < rounds; round++) {
        for (const sync of strategies) {
          times.get(sync)!.push(kmemvisor(elf, ["--smp", String(harts), "--mirror", "vm", "--sync", sync]).vmMs!);
        }
      }
      const base = median(times.get("none")!);
      const cells = strategies.map((s) => {
        const ms = median(times.get(s)!);
        return (s === "none" ? `${ms.toFixed(0)} ms` : `${ms.toFixed(0)} ms ${(ms / base).toFixed(2)}x`).padStart(16);
      });
      console.log(guest.padEnd(21) + String(harts).padStart(5) + cells.join(""));
    }
  }
}

/**
 * The translator: each guest under --engine interp, --engine jit and QEMU (TCG), interleaved round
 * by round; then the jit's mirror overhead (--mirror vm, NMR 2) under each sync strategy.
 */
function jitSpeed(guests: string[], rounds: number): void {
  const haveQemu = spawnSync("qemu-system-riscv64", ["--version"]).status === 0;
  console.log(`rounds: ${rounds} (median); single hart; in-VM MIPS (start-up excluded) and whole-process MIPS`);
  console.log("guest          interp-vm     jit-vm  jit/interp   jit-proc  qemu-proc  jit-vm/qemu  jit-proc/qemu  (jit/interp: median of the rounds' ratios)");
  for (const guest of guests) {
    const elf = guestElf(guest);
    const interp: Sample[] = [], jit: Sample[] = [], qemu: Sample[] = [];
    for (let round = 0; round < rounds; round++) {
      interp.push(kmemvisor(elf, ["--engine", "interp"]));
      jit.push(kmemvisor(elf, ["--engine", "jit"]));
      if (haveQemu) qemu.push(timeProcess("qemu-system-riscv64", ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-kernel", elf]));
    }
    const instructions = jit[0]!.instructions!;
    const mips = (ms: number) => instructions / ms / 1000;
    const interpVm = mips(median(interp.map((s) => s.vmMs!)));
    const jitVm = mips(median(jit.map((s) => s.vmMs!)));
    const jitProc = mips(median(jit.map((s) => s.wallMs)));
    // The speed-up is the median of each round's ratio (see the mirror overhead below).
    const speedUp = median(interp.map((s, round) => s.vmMs! / jit[round]!.vmMs!));
    const cells = [guest.padEnd(13), interpVm.toFixed(1).padStart(10), jitVm.toFixed(1).padStart(11), `${speedUp.toFixed(2)}x`.padStart(12), jitProc.toFixed(1).padStart(11)];
    if (haveQemu) {
      const qemuProc = mips(median(qemu.map((s) => s.wallMs)));
      cells.push(qemuProc.toFixed(1).padStart(11), `${((jitVm / qemuProc) * 100).toFixed(1)}%`.padStart(13), `${((jitProc / qemuProc) * 100).toFixed(1)}%`.padStart(15));
    }
    console.log(cells.join(""));
  }
  const strategies = ["none", "atomic", "striped", "global"];
  // Overhead = the median over rounds of (mirrored / unmirrored) within the round: the machine's
  // speed drifts between rounds (other tenants), and a ratio of medians taken from different
  // rounds carries that drift.
  console.log(`\njit mirror overhead: --mirror vm --nmr 2 against --mirror off, in-VM time, median over ${rounds} rounds of the ratio within a round`);
  console.log("guest           off (ms)" + strategies.map((s) => s.padStart(16)).join(""));
  for (const guest of guests.filter((g) => !g.includes("cpubound"))) {
    const elf = guestElf(guest);
    const off: number[] = [];
    const ratios = new Map<string, number[]>(strategies.map((s) => [s, []]));
    for (let round = 0; round < rounds; round++) {
      const base = kmemvisor(elf, ["--engine", "jit", "--mirror", "off"]).vmMs!;
      off.push(base);
      for (const sync of strategies) ratios.get(sync)!.push(kmemvisor(elf, ["--engine", "jit", "--mirror", "vm", "--sync", sync]).vmMs! / base);
    }
    const cells = strategies.map((s) => `${((median(ratios.get(s)!) - 1) * 100).toFixed(1)}%`.padStart(16));
    console.log(guest.padEnd(14) + median(off).toFixed(0).padStart(10) + cells.join(""));
  }
}

function main(): void {
  const [suite = "qemu", only, roundsText] = process.argv.slice(2);
  const rounds = Number(roundsText ?? 3);
  if (suite === "qemu") compareWithQemu(only ? [only] : GUESTS, rounds);
  else if (suite === "mirror") mirrorOverhead(only ? [only] : GUESTS, rounds);
  else if (suite === "smp") smpScaling(only ? [only] : ["parallel-sum"], rounds);
  else if (suite === "sync") syncCost(only ? [only] : ["parallel-fill", "parallel-sum"], rounds);
  else if (suite === "jit") jitSpeed(only ? [only] : JIT_GUESTS, rounds);
  else throw new Error(`unknown benchmark suite "${suite}": qemu, mirror, smp, sync or jit`);
}

main();
