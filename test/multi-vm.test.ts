/**
 * Several VMs in one host process (`run --vm FILE ...`): a mirrored and an unmirrored VM side by
 * side, each with its own harts, memory and devices, both hit by a DUE in their code page. The
 * mirrored one recovers and finishes; the unmirrored one stops with the report; the process exit
 * status is the failure's (70).
 */
import test from "ava";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXPECTED, GUESTS, kmemvisor } from "./helpers/cli.ts";

const GUEST = join(GUESTS, "parallel-sum-small.elf");

function vmFile(dir: string, config: Record<string, unknown>): string {
  const path = join(dir, `${String(config.name)}.json`);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

// Each DUE at its VM's hart 0's millionth instruction (of ~2.9 M on 2 harts, ~6 M on 1): mid-run
// on any host, where one timed at 0.02 s could come after a fast host's guest had finished.
test("a mirrored and an unmirrored VM side by side under the same failure", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kmv-vms-"));
  const mirrored = vmFile(dir, { name: "safe", kernel: GUEST, smp: 2, mirror: "vm", inject: ["due@i:1000000:0x80000000"], json: true });
  const plain = vmFile(dir, { name: "bare", kernel: GUEST, smp: 1, inject: "due@i:1000000:0x80000000", json: true });
  const r = await kmemvisor(["run", "--vm", mirrored, "--vm", plain, "--timeout", "60"]);
  const expected = readFileSync(join(EXPECTED, "parallel-sum-small.out"), "latin1");
  const safeLines = r.stdout.split("\n").filter((l) => l.startsWith("[safe] ")).map((l) => l.slice(7));
  t.is(safeLines.join("\n") + "\n", expected, r.stderr);
  t.notRegex(r.stdout, /\[bare\] parallel-sum: OK/);
  t.regex(r.stderr, /kmemvisor: \[bare\] guest stopped: uncorrectable memory error \(DUE\) in guest page 0x80000000 .*not mirrored/);
  t.is(r.status, 70);
  const reports = r.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { vm: string; status: number; memory: { recoveries: number } });
  t.deepEqual(reports.map((x) => [x.vm, x.status, x.memory.recoveries]), [["safe", 0, 1], ["bare", 70, 0]]);
});

test("bad VM configuration files are refused clearly", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kmv-vms-"));
  const missing = await kmemvisor(["run", "--vm", join(dir, "none.json")]);
  t.is(missing.status, 66);
  t.regex(missing.stderr, /VM configuration ".*none\.json" does not exist/);
  const typo = vmFile(dir, { name: "typo", kernal: GUEST });
  const unknown = await kmemvisor(["run", "--vm", typo]);
  t.is(unknown.status, 65);
  t.regex(unknown.stderr, /unknown key "kernal"/);
  const broken = join(dir, "broken.json");
  writeFileSync(broken, "{ kernel: ");
  const invalid = await kmemvisor(["run", "--vm", broken]);
  t.is(invalid.status, 65);
  t.regex(invalid.stderr, /not valid JSON/);
  const both = await kmemvisor(["run", "--vm", typo, GUEST]);
  t.is(both.status, 64);
});
