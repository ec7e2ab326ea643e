/**
 * Linux 6.1 (guests/linux/Image, built by guests/linux/build.sh) booted by Debian's OpenSBI
 * fw_jump, as on QEMU's virt board: its /init forks, parent and child each compute a checksum, the
 * child's goes through a file in a ramfs, and init prints the combined value and the harts it
 * found in /proc/cpuinfo, then powers off through SBI SRST (exit status 0). The value is computed
 * here too, so a boot that runs but computes wrong fails.
 *
 * The interpreter's boots run in every `npm test`. The translator's (the default engine) take far
 * longer today, so they run only with KMEMVISOR_LINUX_JIT=1 (`npm run test:linux`), and so does the
 * differential tester's comparison of the whole one-hart boot, engine against engine.
 */
import test from "ava";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { difftestBoot, formatDivergence } from "../host/difftest.ts";
import { kmemvisor, ROOT } from "./helpers/cli.ts";

const FW_JUMP = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const IMAGE = join(ROOT, "guests", "linux", "Image");
const APPEND = "earlycon=sbi console=ttyS0";
const JIT = process.env.KMEMVISOR_LINUX_JIT === "1";

/** guests/linux/init.c's part(): an xorshift64 stream folded with FNV-1a, 100 000 rounds. */
function part(seed: bigint): bigint {
  const M = (1n << 64n) - 1n;
  let x = seed;
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < 100_000; i++) {
    x ^= (x << 13n) & M;
    x ^= x >> 7n;
    x ^= (x << 17n) & M;
    h = ((h ^ x) * 0x100000001b3n) & M;
  }
  return h;
}
const CHECKSUM = (part(1n) ^ part(2n)).toString(16);

/** What a kernel prints when something went wrong, whatever it then does. */
const TROUBLE = /Oops|BUG|soft lockup|Kernel panic|Unable to handle|WARNING:|rcu_sched self-detected stall|RCU stall/;

interface Boot {
  engine: "interp" | "jit";
  smp: number;
  mirror?: "vm";
}

const boots: Boot[] = [
  ...[1, 2, 4].map((smp): Boot => ({ engine: "interp", smp })),
  { engine: "interp", smp: 2, mirror: "vm" },
  ...[1, 2, 4].map((smp): Boot => ({ engine: "jit", smp })),
  { engine: "jit", smp: 2, mirror: "vm" },
];

for (const boot of boots) {
  const title = `Linux boots to its /init's checked result and powers off: ${boot.engine}, ${boot.smp} hart(s)${boot.mirror ? `, --mirror ${boot.mirror}` : ""}`;
  const slow = boot.engine === "jit" && !JIT;
  (slow ? test.skip : test.serial)(title, async (t) => {
    if (!existsSync(FW_JUMP)) throw new Error(`${FW_JUMP} is missing: apt-get install opensbi`);
    // (Generous: the machine may be shared; the guest's own timeout says which boot hung.)
    const limit = boot.engine === "jit" ? 900 : 240;
    t.timeout((limit + 30) * 1000);
    const args = [
      "run", "--bios", FW_JUMP, "--kernel", IMAGE, "--append", APPEND, "--smp", String(boot.smp), "--engine", boot.engine,
      "--timeout", String(limit), ...(boot.mirror ? ["--mirror", boot.mirror] : []),
    ];
    const r = await kmemvisor(args, { killAfterMs: (limit + 20) * 1000 });
    const output = r.stdout + r.stderr;
    const tail = output.slice(-3000);
    t.log(`${boot.engine} ${boot.smp} hart(s)${boot.mirror ? " mirrored" : ""}: ${(r.milliseconds / 1000).toFixed(1)} s`);
    t.is(r.status, 0, tail);
    const result = /init: ok checksum=([0-9a-f]+) harts=(\d+)/.exec(output);
    t.truthy(result, tail);
    t.is(result?.[1], CHECKSUM, tail);
    t.is(Number(result?.[2]), boot.smp, tail);
    t.regex(output, /reboot: Power down/);
    t.notRegex(output, TROUBLE, tail);
  });
}

(JIT ? test.serial : test.skip)("the whole one-hart boot agrees on both engines (difftest, coarse, guest clock moving between chunks)", (t) => {
  t.timeout(1800_000);
  const result = difftestBoot(
    {
      bios: { name: "fw_jump.bin", bytes: readFileSync(FW_JUMP) },
      kernel: { name: "Image", bytes: readFileSync(IMAGE) },
      append: APPEND,
    },
    { coarse: true, chunkClock: true, jitThreshold: 1, maxSteps: 200_000_000, memoryCheckEvery: 5_000_000 },
  );
  t.is(result.divergence, undefined, result.divergence ? formatDivergence(result.divergence).join("\n") : "");
  // (The finisher's exit: the boot reached init's power-off on both machines.)
  t.is(result.end, "exit");
  t.true(result.instructions > 10_000_000, `${result.instructions} instructions`);
});
