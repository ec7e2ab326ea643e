/**
 * kmemvisor's benchmark runner. Runs each benchmark guest on kmemvisor and on
 * qemu-system-riscv64 (TCG) side by side, in one run, and prints guest MIPS and ratios.
 *
 *   npm run bench                          # kmemvisor vs QEMU, all guests, 3 rounds each
 *   npm run bench -- qemu cpubound 5       # one guest, 5 rounds
 *   npm run bench -- mirror                # mirror overhead: --mirror vm vs off, side by side
 *   npm run bench -- smp parallel-sum      # aggregate MIPS on 1 and 2 harts
 *   npm run bench -- sync                  # cost of each --sync strategy against none, 1 and 2 harts
 *   npm run bench -- jit                   # --engine jit vs interp vs QEMU (+ cpubound's long build, fp/fpbench), and the jit's mirror overhead
 *   npm run bench -- kernel                # kernel-pattern guests and microbenchmarks on kmemvisor (both engines,
 *                                          # 1 and 2 harts, mirrored or not) and on QEMU, with ratios
 *
 * Both emulators are timed as whole processes (start-up included, so neither is favoured);
 * kmemvisor's in-VM MIPS (from --json, start-up excluded) is printed too. Guest instruction
 * counts come from kmemvisor's exact instret; the guests are deterministic, so QEMU retires the
 * same instructions.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { patchElfU64 } from "./patch-elf.ts";
import { defaultEngineName } from "../vcpu/jit.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const GUESTS = ["cpubound", "seqread", "seqwrite", "memstress"];
/**
 * The jit suite adds cpubound's long build (~2.4 G instructions, 8× cpubound): the translator's
 * start-up (translating, then V8 optimising the hot code) is a fixed cost that the ~0.3 G
 * instructions of cpubound do not amortise; the long run shows the steady state.
 */
const JIT_GUESTS = [...GUESTS, "long/cpubound", "fp/fpbench"];
/** The floating-point benchmark (guests/fp-test/fpbench.c: n-body and a matrix product in doubles). */
const FP_GUESTS = ["fp/fpbench"];

interface Sample {
  wallMs: number;
  /** The engine that made the figure, from the run's --json report (harts with translator statistics ran jit). */
  engine?: "jit" | "interp";
  instructions?: number;
  vmMs?: number;
  status: number | null;
  /** The end of the process's stdout and stderr (for the report when it failed). */
  output?: string;
  stdout: string;
}

function timeProcess(command: string, args: string[]): Sample {
  const start = performance.now();
  const result = spawnSync(command, args, { cwd: root, encoding: "utf8", timeout: 600_000 });
  const wallMs = performance.now() - start;
  if (result.error) throw result.error;
  const sample: Sample = { wallMs, status: result.status, output: (result.stdout + result.stderr).slice(-2000), stdout: result.stdout };
  const jsonLine = result.stderr.split("\n").find((line) => line.startsWith("{"));
  if (jsonLine) {
    const report = JSON.parse(jsonLine) as { wallMilliseconds: number; harts: { instructions: number; jit?: unknown }[] };
    sample.instructions = report.harts.reduce((sum, h) => sum + h.instructions, 0);
    sample.engine = report.harts.some((h) => h.jit !== undefined) ? "jit" : "interp";
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

/**
 * The engine of every run that does not name one: the CLI's default (KMEMVISOR_ENGINE, else jit),
 * passed explicitly so that a figure and its label cannot disagree.
 */
const ENGINE = defaultEngineName();

function kmemvisor(elf: string, flags: string[]): Sample {
  const engineFlags = flags.includes("--engine") ? [] : ["--engine", ENGINE];
  const sample = timeProcess(process.execPath, [join("bin", "kmemvisor.js"), "run", "--json", ...engineFlags, ...flags, elf]);
  if (sample.status !== 0) throw new Error(`${elf} ${flags.join(" ")}: exit status ${sample.status}\n${sample.output ?? ""}`);
  const asked = flags.includes("--engine") ? flags[flags.indexOf("--engine") + 1] : ENGINE;
  if (sample.engine !== undefined && sample.engine !== asked) throw new Error(`${elf}: asked for --engine ${asked}, the report says ${sample.engine} ran`);
  return sample;
}

/** kmemvisor and QEMU on the same ELFs. */
function compareWithQemu(guests: string[], rounds: number): void {
  const haveQemu = spawnSync("qemu-system-riscv64", ["--version"]).status === 0;
  if (!haveQemu) console.log("qemu-system-riscv64 not found: QEMU columns omitted (apt-get install qemu-system-misc)");
  console.log(`rounds per guest: ${rounds} (median shown); single hart; kmemvisor columns: --engine ${ENGINE}`);
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
  console.log(`rounds per guest: ${rounds} (median of in-VM wall time); single hart; --engine ${ENGINE}`);
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
  console.log(`rounds: ${rounds} (median of in-VM wall time); harts in worker threads; --engine ${ENGINE}`);
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
  console.log(`rounds: ${rounds} (median of in-VM wall time); --mirror vm --nmr 2; --engine ${ENGINE}; time relative to --sync none`);
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

// ------------------------------------------------------------------------------ kernel patterns
/** The kernel-pattern guests (guests/kbench); disk-small needs a disk image. */
const KERNEL_GUESTS = ["uart-storm", "syscalls", "disk-small"];
/** kmemvisor configurations of the kernel suite: engine, harts, mirroring. */
const KERNEL_CONFIGS = ["interp", "jit"].flatMap((engine) =>
  [1, 2].flatMap((harts) => ["off", "vm"].map((mirror) => ({ engine, harts, mirror }))),
);
/**
 * A run that does not finish within this many seconds (kmemvisor's own --timeout) is reported as
 * such and not repeated in later rounds: uart-storm livelocks today (see test/kernel-guests.test.ts).
 */
const KERNEL_TIMEOUT_S = Number(process.env.KMV_BENCH_TIMEOUT ?? 60);
const QEMU_KERNEL_ARGS = ["-machine", "virt", "-bios", "none", "-nographic", "-m", "128M", "-global", "virtio-mmio.force-legacy=false"];

let diskFolder: string | undefined;
process.on("exit", () => {
  if (diskFolder) rmSync(diskFolder, { recursive: true, force: true });
});
/** A fresh zeroed 1 MiB disk image (disk-small writes every sector before it reads it). */
function freshDisk(): string {
  diskFolder ??= mkdtempSync(join(tmpdir(), "kmv-bench-disk-"));
  const path = join(diskFolder, "disk.img");
  writeFileSync(path, new Uint8Array(1 << 20));
  return path;
}

interface KernelRun {
  wallMs: number;
  /** undefined when the run passed: else why not (timeout, exit status, wrong output). */
  failure?: string;
  /** uart-storm's interrupt count (its "[varies]" line). */
  interrupts?: number;
}

/** One whole-process run of a kernel guest; its output must be the expected one (the "[varies]" lines aside). */
function kernelRun(emulator: "qemu" | "kmemvisor", elf: string, guest: string, harts: number, flags: string[] = [], compareOutput = true): KernelRun {
  const disk = guest.startsWith("disk-small") ? freshDisk() : undefined;
  const sample =
    emulator === "qemu"
      ? timeProcess("qemu-system-riscv64", [
          ...QEMU_KERNEL_ARGS, "-smp", String(harts), "-kernel", elf,
          ...(disk ? ["-drive", `file=${disk},if=none,format=raw,id=hd0`, "-device", "virtio-blk-device,drive=hd0,bus=virtio-mmio-bus.0"] : []),
        ])
      : timeProcess(process.execPath, [
          join("bin", "kmemvisor.js"), "run", "--timeout", String(KERNEL_TIMEOUT_S), "--smp", String(harts), ...flags,
          ...(disk ? ["--drive", disk] : []), elf,
        ]);
  const run: KernelRun = { wallMs: sample.wallMs };
  const out = sample.stdout.replace(/\r\n/g, "\n");
  const storm = /\[varies\] (\d+) interrupts/.exec(out);
  if (storm) run.interrupts = Number(storm[1]);
  const expectedFile = join(root, "guests", "expected", `${guest}.out`);
  const deterministic = out.split("\n").filter((line) => !line.includes("[varies]")).join("\n");
  if (emulator === "kmemvisor" && sample.status === 124) run.failure = `timeout`;
  else if (sample.status !== 0) run.failure = `exit status ${sample.status}`;
  else if (compareOutput && deterministic !== readFileSync(expectedFile, "latin1")) run.failure = "wrong output";
  return run;
}

const seconds = (ms: number) => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);

/**
 * Each kernel guest (full build) on QEMU and on kmemvisor in every configuration, interleaved round
 * by round; whole-process wall times (median) and the ratio to QEMU with the same hart count. Then
 * the microbenchmarks' cost per operation.
 */
function kernelSuite(guests: string[], rounds: number): void {
  console.log(`kernel suite: whole-process wall time, median of ${rounds} interleaved rounds; ratio = kmemvisor / QEMU with as many harts`);
  console.log(`(a run past ${KERNEL_TIMEOUT_S} s is stopped, reported as ">${KERNEL_TIMEOUT_S} s" and not repeated; KMV_BENCH_TIMEOUT changes the limit)`);
  const columns = ["qemu", ...["interp", "jit"].flatMap((e) => [e, `${e} mirror`])];
  console.log("guest          harts" + columns.map((c) => c.padStart(17)).join(""));
  for (const guest of guests) {
    const elf = guestElf(guest);
    for (const harts of [1, 2]) {
      const runs = new Map<string, KernelRun[]>(columns.map((c) => [c, []]));
      const gaveUp = new Set<string>();
      for (let round = 0; round < rounds; round++) {
        runs.get("qemu")!.push(kernelRun("qemu", elf, guest, harts));
        for (const { engine, mirror } of KERNEL_CONFIGS.filter((c) => c.harts === harts)) {
          const column = mirror === "vm" ? `${engine} mirror` : engine;
          if (gaveUp.has(column)) continue;
          const r = kernelRun("kmemvisor", elf, guest, harts, ["--engine", engine, "--mirror", mirror]);
          runs.get(column)!.push(r);
          if (r.failure) gaveUp.add(column);
        }
      }
      const qemuMs = median(runs.get("qemu")!.map((r) => r.wallMs));
      const cells = columns.map((column) => {
        const rs = runs.get(column)!;
        const failed = rs.find((r) => r.failure);
        if (failed) return (failed.failure === "timeout" ? `>${KERNEL_TIMEOUT_S} s` : failed.failure!).padStart(17);
        const ms = median(rs.map((r) => r.wallMs));
        return (column === "qemu" ? `${seconds(ms)} s` : `${seconds(ms)} s ${(ms / qemuMs).toFixed(1)}x`).padStart(17);
      });
      console.log(guest.padEnd(15) + String(harts).padStart(5) + cells.join(""));
      const storms = columns
        .map((c) => [c, runs.get(c)!.filter((r) => r.interrupts !== undefined && !r.failure).map((r) => r.interrupts!)] as const)
        .filter(([, counts]) => counts.length > 0);
      if (storms.length > 0) console.log(`${"".padEnd(20)}interrupts taken: ${storms.map(([c, counts]) => `${c} ${median(counts)}`).join(", ")}`);
    }
  }
  if (guests.length === KERNEL_GUESTS.length) microSuite(rounds);
}

/** The microbenchmarks: which symbol sets the loop count, and operations per loop iteration. */
const MICRO = [
  { guest: "micro-mmio", what: "MMIO read (PLIC priority)", perIteration: 1 },
  { guest: "micro-syscall", what: "syscall U->S->U, 2 satp switches + 4 sfence.vma", perIteration: 1 },
  { guest: "micro-tlb", what: "TLB miss (Sv39 walk) after sfence.vma", perIteration: 512 },
];

/**
 * Cost per operation: whole-process wall time with `iterations` = N minus that with 0, over N
 * operations, so start-up and the guest's set-up cancel. N is chosen per emulator (growing from a
 * small count until the difference is at least 1.5 s and the start-up time), the same ELF patched
 * (bench/patch-elf.ts).
 */
function microSuite(rounds: number): void {
  const targets = [
    { name: "qemu", flags: [] as string[] },
    { name: "kmemvisor interp", flags: ["--engine", "interp"] },
    { name: "kmemvisor jit", flags: ["--engine", "jit"] },
  ];
  console.log(`\nmicrobenchmarks: cost per operation = (wall(N) - wall(0)) / N, whole process, median of ${rounds} interleaved rounds, 1 hart`);
  console.log("operation".padEnd(52) + targets.map((t) => t.name.padStart(20)).join("") + "   jit/qemu");
  for (const micro of MICRO) {
    const elf = guestElf(micro.guest);
    const time = (target: (typeof targets)[number], n: number): number => {
      const patched = patchElfU64(join(root, elf), "iterations", BigInt(n));
      // The guest checks what it read and exits non-zero when wrong; its output names the count.
      const r = kernelRun(target.name === "qemu" ? "qemu" : "kmemvisor", patched, micro.guest, 1, target.flags, false);
      if (r.failure) throw new Error(`${micro.guest} (iterations ${n}) on ${target.name}: ${r.failure}`);
      return r.wallMs;
    };
    const perOp = targets.map((target): number | string => {
      try {
        // Start-up alone varies by ±0.5 s on this shared 2-core machine: the loop must add well
        // over that (and over the start-up itself) before a count is accepted, or noise passes
        // for work. The count grows at most 4× a step, so that one noisy sample cannot send the
        // next run past the time limit.
        const base = median([time(target, 0), time(target, 0), time(target, 0)]);
        let n = micro.perIteration === 1 ? 1000 : 4;
        for (;;) {
          const delta = time(target, n) - base;
          if (delta >= Math.max(1500, base) || n >= 1 << 30) break;
          n *= Math.min(4, Math.max(2, Math.ceil(2500 / Math.max(delta, 20))));
        }
        const zero: number[] = [], full: number[] = [];
        for (let round = 0; round < rounds; round++) {
          zero.push(time(target, 0));
          full.push(time(target, n));
        }
        return (median(full) - median(zero)) / (n * micro.perIteration);
      } catch (error) {
        return (error as Error).message.replace(/^.*: /, "");
      }
    });
    const ns = (ms: number | string) =>
      typeof ms === "string" ? ms : ms * 1e6 >= 10_000 ? `${(ms * 1e3).toFixed(1)} us` : `${(ms * 1e6).toFixed(0)} ns`;
    const ratio = typeof perOp[2] === "number" && typeof perOp[0] === "number" ? `${(perOp[2] / perOp[0]).toFixed(1)}x` : "-";
    console.log(micro.what.padEnd(52) + perOp.map((ms) => ns(ms).padStart(20)).join("") + ratio.padStart(11));
  }
}

function main(): void {
  const [suite = "qemu", only, roundsText] = process.argv.slice(2);
  const rounds = Number(roundsText ?? 3);
  if (suite === "qemu") compareWithQemu(only ? [only] : [...GUESTS, ...FP_GUESTS], rounds);
  else if (suite === "mirror") mirrorOverhead(only ? [only] : GUESTS, rounds);
  else if (suite === "smp") smpScaling(only ? [only] : ["parallel-sum"], rounds);
  else if (suite === "sync") syncCost(only ? [only] : ["parallel-fill", "parallel-sum"], rounds);
  else if (suite === "jit") jitSpeed(only ? [only] : JIT_GUESTS, rounds);
  else if (suite === "kernel") kernelSuite(only ? [only] : KERNEL_GUESTS, rounds);
  else if (suite === "kernel-micro") microSuite(rounds);
  else throw new Error(`unknown benchmark suite "${suite}": qemu, mirror, smp, sync, jit, kernel or kernel-micro`);
}

main();
