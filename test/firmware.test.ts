/**
 * Boots Debian's OpenSBI (fw_jump) with Debian's U-Boot for qemu-riscv64_smode, drives U-Boot's
 * console (stop autoboot, `version`, `poweroff`) and checks what it printed and that poweroff
 * went through SBI system reset to the sifive_test finisher (exit status 0).
 * .ci/run installs the opensbi and u-boot-qemu packages.
 */
import test from "ava";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const FW_JUMP = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";
const CLI = ["bin/kmemvisor.js", "run"];

function requireFile(path: string, pkg: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: apt-get install ${pkg} (.ci/run does)`);
}

interface Session {
  output: string;
  status: number | null;
}

/** Run U-Boot, answering prompts as they appear; resolves when the VM exits. */
function scriptedUBoot(extraArgs: string[], script: [RegExp, string][]): Promise<Session> {
  requireFile(FW_JUMP, "opensbi");
  requireFile(UBOOT, "u-boot-qemu");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, "-m", "256M", "--bios", FW_JUMP, "--kernel", UBOOT, "--timeout", "90", ...extraArgs], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    let step = 0;
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("latin1");
      while (step < script.length && script[step]![0].test(output)) {
        child.stdin.write(script[step]![1]);
        step++;
      }
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("latin1");
    });
    child.on("error", reject);
    child.on("exit", (status) => resolve({ output, status }));
  });
}

const promptAfter = (text: string) => new RegExp(`${text}[\\s\\S]*=> $`);

for (const smp of [1, 2]) test(`OpenSBI fw_jump + U-Boot reach the prompt with ${smp} hart(s); version and poweroff work`, async (t) => {
  const session = await scriptedUBoot(["--smp", String(smp)], [
    // Ctrl-C stops autoboot, or, if autoboot already gave up, just cancels the prompt line.
    [/Hit any key to stop autoboot/, "\x03"],
    [/=> $/, "version\n"],
    [promptAfter("=> version"), "poweroff\n"],
  ]);
  t.regex(session.output, /OpenSBI v\d+\.\d+/);
  t.regex(session.output, /Boot HART Base ISA\s+: rv64imafdc/);
  t.regex(session.output, /DRAM:\s+256 MiB/);
  t.regex(session.output, new RegExp(`Platform HART Count\\s+: ${smp}\\b`));
  // `version` prints U-Boot's banner again, after the command echo.
  t.regex(session.output, /=> version\r?\nU-Boot 20\d\d\.\d\d/);
  t.regex(session.output, /=> poweroff/);
  t.is(session.status, 0, session.output.slice(-2000));
});

test("unsupported or broken firmware gives a clear error", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kmv-fw-"));
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty.bin", new Uint8Array(0), /empty/],
    ["efi.bin", Uint8Array.from([0x4d, 0x5a, 0x90, 0x00, 1, 2, 3, 4]), /PE\/EFI image/],
    ["uimage.bin", Uint8Array.from([0x27, 0x05, 0x19, 0x56, 0, 0, 0, 0]), /uImage/],
    ["huge.bin", new Uint8Array(40 << 20), /do not fit/],
  ];
  for (const [name, bytes, message] of cases) {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    const result = spawnSync(process.execPath, [...CLI, "-m", "32M", "--bios", path, "--timeout", "5"], { encoding: "utf8" });
    t.is(result.status, 65, `${name}: ${result.stderr}`);
    t.regex(result.stderr, message, name);
  }
  const missing = spawnSync(process.execPath, [...CLI, "--bios", join(dir, "nope.bin")], { encoding: "utf8" });
  t.is(missing.status, 66);
  t.regex(missing.stderr, /firmware ".*nope\.bin" does not exist/);
});

test("--dumpdtb writes a device tree that dtc accepts and that describes the configuration", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kmv-dtb-"));
  const dtb = join(dir, "virt.dtb");
  const result = spawnSync(process.execPath, [...CLI, "--smp", "2", "-m", "256M", "--dumpdtb", dtb], { encoding: "utf8" });
  t.is(result.status, 0, result.stderr);
  const dts = spawnSync("dtc", ["-I", "dtb", "-O", "dts", dtb], { encoding: "utf8" });
  if (dts.error) throw new Error("dtc is missing: apt-get install device-tree-compiler (.ci/run does)");
  t.is(dts.status, 0, dts.stderr);
  t.regex(dts.stdout, /cpu@1 \{/);
  t.regex(dts.stdout, /memory@80000000 \{[\s\S]*?reg = <0x00 0x80000000 0x00 0x10000000>/);
});
