/**
 * A guest run several times in one process, on one engine: the first run pays for translating
 * and for V8 optimising the hot code; later runs show the translator's steady state (V8 keeps the
 * compiled code of a module whose bytes it has seen). Prints wall time, this thread's CPU time
 * (less sensitive to other work on the machine: V8's background compiles are not in it) and MIPS.
 *
 *   node --import tsx bench/warm.ts cpubound jit 5      # GUEST ENGINE RUNS [COPIES] [SYNC]
 *   node --import tsx bench/warm.ts memstress jit 4 2 striped
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { planBoot } from "../hypervisor/boot.ts";
import { Machine } from "../hypervisor/machine.ts";
import { GUEST_BIN } from "../host/repo-root.ts";
import { parseSyncStrategy } from "../sync/strategy.ts";
import type { EngineChoice } from "../vcpu/hart.ts";
import { DEFAULT_JIT_THRESHOLD } from "../vcpu/jit.ts";

/** CPU time of this thread in ms (Linux: utime + stime of /proc/thread-self/stat, in 10 ms ticks). */
function threadCpuMs(): number {
  const fields = readFileSync("/proc/thread-self/stat", "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const [guest = "cpubound", engineName = "jit", runsText = "5", copiesText = "1", syncText = "striped"] = process.argv.slice(2);
const engine: EngineChoice =
  engineName === "interp" ? { kind: "interp" } : engineName === "jit" ? { kind: "jit", threshold: DEFAULT_JIT_THRESHOLD, synchronous: true } : usage();
const runs = Number(runsText);
const copies = Number(copiesText);
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(copies) || copies < 1) usage();
const sync = parseSyncStrategy(syncText);
const file = join(GUEST_BIN, `${guest}.elf`);
const bytes = readFileSync(file);

function usage(): never {
  console.error("usage: node --import tsx bench/warm.ts GUEST interp|jit RUNS [COPIES] [none|atomic|striped|global]");
  process.exit(64);
}

console.log(`${guest}, --engine ${engineName}${copies > 1 ? `, ${copies} copies, --sync ${sync}` : ""}: ${runs} runs in one process`);
for (let run = 1; run <= runs; run++) {
  const machine = new Machine({ ramSize: 128 << 20, harts: 1, copies, sync, engine, workers: false, output: () => {} });
  const plan = planBoot(machine, { bios: "none", kernel: { name: file, bytes } });
  machine.start(plan.start, BigInt(plan.fdtAddress), BigInt(plan.dynamicInfoAddress));
  const wallStart = performance.now();
  const cpuStart = threadCpuMs();
  const result = await machine.run({ timeoutMs: 600_000 });
  const wallMs = performance.now() - wallStart;
  const cpuMs = threadCpuMs() - cpuStart;
  if (result.reason !== "exit" || result.exitCode !== 0) throw new Error(`${guest}: ${result.reason}, exit code ${result.exitCode} ${result.fault ?? ""}`);
  const instructions = result.harts.reduce((sum, h) => sum + h.instructions, 0);
  const jit = result.harts[0]?.jit;
  console.log(
    `run ${run}: ${wallMs.toFixed(0)} ms wall, ${cpuMs} ms CPU, ${(instructions / wallMs / 1000).toFixed(0)} MIPS` +
      (jit ? ` (pages ${jit.pagesCompiled}, recompiles ${jit.recompiles})` : ""),
  );
}
