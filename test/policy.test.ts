/**
 * Mirroring policies and the hypercall interface (mirror/policy.ts): `ranges:` protects only the
 * listed pages (their stores reach the copies; others' do not, and a DUE there is fatal); a guest
 * kernel probes, protects, releases and queries through ecall a7 = 0x0A4B4D56.
 */
import test from "ava";
import { Machine } from "../hypervisor/machine.ts";
import { KMEMVISOR_EXTENSION, parseMirrorPolicy } from "../mirror/policy.ts";
import { PAGE_SIZE, RAM_BASE } from "../shared-mem/layout.ts";
import { Program, R, ecall, sd } from "./helpers/asm.ts";
import { kmemvisor, GUESTS } from "./helpers/cli.ts";
import { join } from "node:path";

const PROTECTED = RAM_BASE + 0x8_0000;
const UNPROTECTED = RAM_BASE + 0x9_0000;

function mirrorWord(machine: Machine, gpa: number): bigint {
  const host = machine.physicalMap.frameOf(machine.physicalMap.pageOf(gpa)) * PAGE_SIZE + (gpa % PAGE_SIZE) + machine.layout.copyStride;
  return new DataView(machine.memory.buffer).getBigUint64(host, true);
}

test("ranges: stores reach the copies only in protected pages", async (t) => {
  const machine = new Machine({ ramSize: 1 << 20, harts: 1, copies: 2, mirror: parseMirrorPolicy(`ranges:${PROTECTED}-${PROTECTED + PAGE_SIZE}`) });
  const p = new Program();
  p.li(R.a1, 0x1234_5678_9abc_def0n).li(R.a0, PROTECTED).emit(sd(R.a1, 8, R.a0)).li(R.a0, UNPROTECTED).emit(sd(R.a1, 8, R.a0)).exit(0);
  machine.start(machine.loadElf(p.elf(), "ranges.elf").entry);
  const result = await machine.run({ timeoutMs: 10_000 });
  t.is(result.exitCode, 0);
  t.is(result.harts[0]!.mirroredStores, 1, "one store was mirrored: the one to the protected page");
  t.is(mirrorWord(machine, PROTECTED + 8), 0x1234_5678_9abc_def0n);
  t.is(mirrorWord(machine, UNPROTECTED + 8), 0n, "no mirror store for an unprotected page");
  t.is(machine.mirrorControl.protectedPages(), 1);
});

test("the hypercall interface: probe, status, protect, release, errors; other ecalls still trap", async (t) => {
  const machine = new Machine({ ramSize: 1 << 20, harts: 1, copies: 3, mirror: { kind: "ranges", ranges: [] } });
  const p = new Program();
  const call = (fn: number, a0 = 0n, a1 = 0n) => p.li(R.a7, KMEMVISOR_EXTENSION).li(R.a6, fn).li(R.a0, a0).li(R.a1, a1).emit(ecall());
  const save = (slot: number, ...regs: number[]) => regs.forEach((r, i) => p.emit(sd(r, 8 * (slot + i), R.s0)));
  p.setTrapVector("trap").la(R.s0, "results");
  call(0); save(0, R.a0, R.a1); // probe
  call(1, BigInt(PROTECTED), 2n * BigInt(PAGE_SIZE)); save(2, R.a0); // protect 2 pages
  call(3); save(3, R.a0, R.a1, R.a2, R.a3); // status
  call(2, BigInt(PROTECTED), BigInt(PAGE_SIZE)); save(7, R.a0); // release 1 page
  call(3); save(8, R.a2);
  call(1, 0x1000n, 16n); save(9, R.a0); // not RAM
  call(9); save(10, R.a0); // unknown function
  p.li(R.a7, 93).emit(ecall()); // an ordinary ecall: goes to the guest's handler
  p.exit(1);
  p.label("trap").exit(0);
  p.align(8).label("results").space(8 * 12);
  machine.start(machine.loadElf(p.elf(), "hypercall.elf").entry);
  const result = await machine.run({ timeoutMs: 10_000 });
  t.is(result.exitCode, 0, "the ordinary ecall reached the guest's trap handler");
  const words = machine.readRam(Number(p.address("results")), 8 * 11);
  const at = (i: number) => BigInt.asIntN(64, new DataView(words.buffer).getBigUint64(8 * i, true));
  t.deepEqual([at(0), at(1)], [0n, 1n], "probe: success, version 1");
  t.is(at(2), 0n, "protect");
  t.deepEqual([at(3), at(4), at(5), at(6)], [0n, 3n, 2n, 0n], "status: 3 copies, 2 protected pages, no recoveries");
  t.is(at(7), 0n, "release");
  t.is(at(8), 1n, "one page left protected");
  t.is(at(9), -3n, "invalid address");
  t.is(at(10), -2n, "not supported");
});

test("a DUE in an unprotected page is fatal, in a protected one recovered", async (t) => {
  const elf = join(GUESTS, "parallel-sum-small.elf");
  // Code lives in the first pages; protect them (and nothing else) and lose the first one, at hart
  // 0's millionth instruction (of ~2.9 M): mid-run on any host, where a DUE timed at 0.02 s could
  // land after the guest had finished and this test pass with no recovery at all.
  const covered = await kmemvisor(["run", "--smp", "2", "--mirror", "ranges:0x80000000-0x80010000", "--inject", "due@i:1000000:0x80000000", "--json", "--timeout", "60", elf]);
  t.is(covered.status, 0, covered.stderr);
  const report = JSON.parse(covered.stderr.trim().split("\n").pop()!) as { memory: { injected: number; recoveries: number } };
  t.deepEqual([report.memory.injected, report.memory.recoveries], [1, 1], "the DUE landed and was recovered");
  const uncovered = await kmemvisor(["run", "--smp", "2", "--mirror", "ranges:0x80100000-0x80200000", "--inject", "due@i:1000000:0x80000000", "--timeout", "60", elf]);
  t.is(uncovered.status, 70);
  t.regex(uncovered.stderr, /not protected by the VM's mirroring policy/);
});

test("bad policies are refused", async (t) => {
  t.throws(() => parseMirrorPolicy("ranges:0x80000000"), { message: /START-END/ });
  t.throws(() => parseMirrorPolicy("ranges:0x80001000-0x80000000"), { message: /END must be above START/ });
  t.throws(() => parseMirrorPolicy("all"), { message: /expected off, vm or ranges/ });
  const outside = await kmemvisor(["run", "--mirror", "ranges:0x10000000-0x10001000", join(GUESTS, "hello.elf")]);
  t.is(outside.status, 64);
  t.regex(outside.stderr, /not inside guest RAM/);
});
