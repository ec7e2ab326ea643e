/**
 * Nothing lost, no way in (issue 16 items 2–4): recovery votes among 3+ copies word by word;
 * protect refuses a page a DUE already emptied; the mirror hypercall is not served from U-mode.
 */
import test from "ava";
import { KMEMVISOR_EXTENSION } from "../mirror/policy.ts";
import { PAGE_SIZE } from "../shared-mem/layout.ts";
import type { EngineChoice } from "../vcpu/hart.ts";
import { CSR, Program, R, RAM_BASE, addi, beq, csrr, csrw, ebreak, ecall, ld, mret, sd } from "./helpers/asm.ts";
import { runProgram } from "./helpers/machine.ts";

/** A data word in its own page, away from the code. */
const ADDR = Number(RAM_BASE) + 0x8_0000 + 0x128;
const VALUE = 0x0123_4567_89ab_cdefn;
/** Where the guests leave their results (another page). */
const RESULTS = Number(RAM_BASE) + 0x9_0000;

/** Store VALUE at ADDR, spin a while (the test injects failures during the spin), read it back: exit 0 if it is intact. */
function storeWaitCheck(): Program {
  const p = new Program();
  p.li(R.s0, ADDR).li(R.s1, VALUE).emit(sd(R.s1, 0, R.s0));
  p.li(R.t0, 2000).label("spin").emit(addi(R.t0, R.t0, -1)).branch(beq, R.t0, R.zero, "check").j("spin");
  p.label("check").emit(ld(R.t1, 0, R.s0)).branch(beq, R.t1, R.s1, "good");
  p.exit(1);
  p.label("good").exit(0);
  return p;
}

/** Run storeWaitCheck on `copies` copies; after the store, flip a bit in each of `sdcCopies` and poison the primary. */
async function lostPrimaryWithCorruptCopies(copies: number, sdcCopies: number[]) {
  return runProgram(storeWaitCheck(), {
    copies,
    engine: { kind: "interp" },
    beforeRun: (machine) => {
      machine.harts[0]!.run(20); // past the store, inside the spin
      if (machine.readRam(ADDR, 8).every((b) => b === 0)) throw new Error("the store has not happened yet");
      for (const copy of sdcCopies) machine.injectSdc(ADDR + 2, 5, copy);
      machine.injectDue(ADDR, 0);
    },
  });
}

test("NMR 5: a DUE on the primary is recovered by a word-by-word vote, outvoting a silent corruption in copy 1", async (t) => {
  const { result, machine } = await lostPrimaryWithCorruptCopies(5, [1]);
  t.is(result.reason, "exit", result.fault);
  t.is(result.exitCode, 0, "the guest read back what it stored, not copy 1's flipped bit");
  t.is(result.memory.recoveries, 1);
  const page = machine.physicalMap.pageOf(ADDR);
  const host = machine.physicalMap.frameOf(page) * PAGE_SIZE + (ADDR % PAGE_SIZE);
  const view = new DataView(machine.memory.buffer);
  const copiesSeen = Array.from({ length: 5 }, (_, c) => view.getBigUint64(host + c * machine.layout.copyStride, true));
  t.deepEqual(copiesSeen, Array(5).fill(VALUE), "every copy of the spare holds the voted value");
});

test("NMR 3: a DUE on the primary with the two survivors disagreeing is undecidable: the VM stops and says where", async (t) => {
  const { result } = await lostPrimaryWithCorruptCopies(3, [1]);
  t.is(result.reason, "fault");
  t.regex(result.fault ?? "", new RegExp(`undecidable: its surviving copies disagree at 0x${ADDR.toString(16)} with no majority \\(copy 1 0x[0-9a-f]{16}, copy 2 0x${VALUE.toString(16).padStart(16, "0")}\\)`));
});

test("NMR 2: with the primary lost the single survivor is used, as before", async (t) => {
  const { result } = await lostPrimaryWithCorruptCopies(2, []);
  t.is(result.exitCode, 0, result.fault);
  t.is(result.memory.recoveries, 1);
});

test("protect of a page a DUE emptied fails with SBI_ERR_FAILED and changes nothing; the access then stops the VM", async (t) => {
  const p = new Program();
  p.li(R.s4, RESULTS);
  p.li(R.a7, KMEMVISOR_EXTENSION).li(R.a6, 1).li(R.a0, ADDR - (ADDR % PAGE_SIZE)).li(R.a1, PAGE_SIZE).emit(ecall(), sd(R.a0, 0, R.s4));
  p.li(R.a7, KMEMVISOR_EXTENSION).li(R.a6, 3).emit(ecall(), sd(R.a2, 8, R.s4)); // status: protected pages
  p.li(R.s0, ADDR).emit(ld(R.t0, 0, R.s0)); // the lost data: must stop the VM
  p.exit(0);
  const { result, ram64, machine } = await runProgram(p, {
    copies: 2,
    machine: { mirror: { kind: "ranges", ranges: [] } },
    beforeRun: (m) => m.injectDue(ADDR, 0),
  });
  t.is(BigInt.asIntN(64, ram64(BigInt(RESULTS))), -1n, "protect: SBI_ERR_FAILED");
  t.is(ram64(BigInt(RESULTS + 8)), 0n, "no page became protected");
  t.false(machine.physicalMap.isProtected(machine.physicalMap.pageOf(ADDR)));
  t.is(result.reason, "fault", "the read of the lost page stopped the VM");
  t.regex(result.fault ?? "", /not protected by the VM's mirroring policy/);
  t.is(result.memory.recoveries, 0, "nothing was 'recovered' from copies that never held the data");
});

/**
 * An M-mode kernel drops to U-mode, whose program asks the hypervisor to release all of RAM and
 * then asks the kernel to finish (a7 = 93). The kernel's handler logs every mcause and, at the
 * end, asks the hypervisor itself (M-mode: served) how many pages are protected.
 */
function userReleaseGuest(ramSize: number): Program {
  const p = new Program();
  p.li(R.s10, RESULTS + 16).li(R.s11, 0).setTrapVector("trap");
  p.la(R.t0, "user").emit(csrw(CSR.mepc, R.t0), mret()); // mstatus.MPP is 0 (U) at reset
  p.label("trap").emit(csrr(R.t5, CSR.mcause), sd(R.t5, 0, R.s10), addi(R.s10, R.s10, 8), addi(R.s11, R.s11, 1));
  p.li(R.t6, 93).branch(beq, R.a7, R.t6, "finish");
  p.emit(csrr(R.t5, CSR.mepc), addi(R.t5, R.t5, 4), csrw(CSR.mepc, R.t5), mret());
  p.label("finish").li(R.s4, RESULTS).emit(sd(R.s11, 0, R.s4));
  p.li(R.a7, KMEMVISOR_EXTENSION).li(R.a6, 3).emit(ecall(), sd(R.a2, 8, R.s4)).exit(0);
  p.align(PAGE_SIZE).label("user"); // its own page, so the translator makes a user-mode page of it
  p.li(R.s2, 3).label("again"); // three tries, so the page runs hot
  p.li(R.a7, KMEMVISOR_EXTENSION).li(R.a6, 2).li(R.a0, RAM_BASE).li(R.a1, ramSize).emit(ecall());
  p.emit(addi(R.s2, R.s2, -1)).branch(beq, R.s2, R.zero, "done").j("again");
  p.label("done").li(R.a7, 93).emit(ecall(), ebreak());
  return p;
}

for (const [name, engine] of [
  ["interp", { kind: "interp" }],
  ["jit", { kind: "jit", threshold: 0, synchronous: true }],
] as [string, EngineChoice][]) {
  test(`the mirror hypercall from U-mode is an ordinary ecall for the kernel (cause 8); protection unchanged (${name})`, async (t) => {
    const ramSize = 1 << 20;
    const { result, ram64 } = await runProgram(userReleaseGuest(ramSize), { ramSize, copies: 2, engine });
    t.is(result.exitCode, 0, result.fault);
    t.is(ram64(BigInt(RESULTS)), 4n, "the kernel took four traps: three release attempts and the exit request");
    for (let i = 0; i < 4; i++) t.is(ram64(BigInt(RESULTS + 16 + 8 * i)), 8n, `trap ${i}: environment call from U-mode`);
    t.is(ram64(BigInt(RESULTS + 8)), BigInt(ramSize / PAGE_SIZE), "every page is still protected");
    if (engine.kind === "jit") t.true((result.harts[0]!.jit?.pagesCompiled ?? 0) > 0, "pages were translated");
  });
}
