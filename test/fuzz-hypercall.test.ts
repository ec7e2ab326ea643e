/**
 * Fuzzing the mirror hypercall (issue 16): random sequences of calls — any function, base and
 * size, from M, S or U mode — made by a guest, on unmirrored and mirrored VMs, with a page a DUE
 * already emptied. Property: every call gives the documented result (a correct protection change
 * or the SBI error the interface names; from U-mode, an ordinary environment call to the kernel),
 * the guest runs to its end (no exception, no hang), guest data is untouched and every protected
 * page's copies agree with it.
 */
import test from "ava";
import assert from "node:assert/strict";
import fc from "fast-check";
import { compareCopies } from "../mirror/copies.ts";
import { KMEMVISOR_EXTENSION } from "../mirror/policy.ts";
import { PAGE_SIZE } from "../shared-mem/layout.ts";
import { CSR, Program, R, RAM_BASE, beq, csrr, csrrc, csrrs, csrw, ecall, jalr, mret, addi, sd } from "./helpers/asm.ts";
import { fuzzParameters } from "./helpers/fuzz.ts";
import { runProgram } from "./helpers/machine.ts";

const RAM_SIZE = 1 << 20;
const PAGES = RAM_SIZE / PAGE_SIZE;
const RAM = BigInt(RAM_BASE);
const RAM_END = RAM + BigInt(RAM_SIZE);
const MASK64 = (1n << 64n) - 1n;
/** Guest code lives in the first pages, the call log after it; data the calls must not change from DATA_PAGE on. */
const LOG = Number(RAM_BASE) + 0x4_0000;
const DATA_PAGE = 0x50;
const Mode = { U: 0, S: 1, M: 3 } as const;
type Mode = (typeof Mode)[keyof typeof Mode];

interface Call {
  mode: Mode;
  fn: bigint;
  base: bigint;
  size: bigint;
}

const u64 = fc.bigInt({ min: 0n, max: MASK64 });
const page = fc.integer({ min: 0, max: PAGES - 1 });
/** Bases mostly in or next to RAM (page-aligned or not), sometimes anything. */
const base = fc.oneof(
  page.map((p) => RAM + BigInt(p * PAGE_SIZE)),
  fc.tuple(page, fc.integer({ min: 1, max: PAGE_SIZE - 1 })).map(([p, o]) => RAM + BigInt(p * PAGE_SIZE + o)),
  fc.constantFrom(RAM - 1n, RAM_END, RAM_END - 1n, 0n, MASK64),
  u64,
);
const size = fc.oneof(
  fc.integer({ min: 1, max: 4 * PAGE_SIZE }).map(BigInt),
  fc.constantFrom(0n, 1n, BigInt(PAGE_SIZE), BigInt(RAM_SIZE), BigInt(RAM_SIZE) + 1n, MASK64, 1n << 63n),
  u64,
);
const call = fc.record({
  mode: fc.constantFrom<Mode>(Mode.U, Mode.S, Mode.M),
  fn: fc.oneof(fc.constantFrom(0n, 1n, 2n, 3n), fc.constantFrom(1n, 2n), u64),
  base,
  size,
});

/** What the interface documents, on a model of the protection bits. */
function expected(c: Call, model: { copies: number; protection: boolean[]; poisoned: number }): bigint[] {
  if (c.mode === Mode.U) return [c.base, c.size, 0n, 0n, 8n]; // registers untouched, cause 8 logged
  const out = (...a: bigint[]) => [...a, ...[c.base, c.size, 0n, 0n].slice(a.length), 0n].map((v) => v & MASK64);
  switch (c.fn) {
    case 0n:
      return out(0n, 1n);
    case 1n:
    case 2n: {
      if (model.copies === 1) return out(-2n);
      if (c.base < RAM || c.size === 0n || c.base + c.size > RAM_END) return out(-3n);
      const first = Number((c.base - RAM) / BigInt(PAGE_SIZE));
      const last = Number((c.base + c.size - 1n - RAM) / BigInt(PAGE_SIZE));
      const on = c.fn === 1n;
      if (on && first <= model.poisoned && model.poisoned <= last && !model.protection[model.poisoned]) return out(-1n);
      for (let p = first; p <= last; p++) model.protection[p] = on;
      return out(0n);
    }
    case 3n:
      return out(0n, BigInt(model.copies), BigInt(model.protection.filter(Boolean).length), 0n);
    default:
      return out(-2n);
  }
}

/**
 * The guest: an M-mode kernel that, for each call, enters the call's mode at a call site (mret),
 * where the hypercall is made and a0..a3 are logged; the site then returns to the kernel with an
 * ordinary ecall (a7 = 0). The trap handler logs the cause of a trapped hypercall (U-mode) and
 * resumes after it.
 */
function guest(calls: readonly Call[]): Program {
  const p = new Program();
  p.setTrapVector("trap").li(R.s8, LOG);
  calls.forEach((c, i) => {
    p.li(R.t0, 3 << 11).emit(csrrc(0, CSR.mstatus, R.t0)).li(R.t0, c.mode << 11).emit(csrrs(0, CSR.mstatus, R.t0));
    p.la(R.t0, `site${i}`).emit(csrw(CSR.mepc, R.t0)).la(R.s9, `back${i}`).emit(mret());
    p.label(`site${i}`).li(R.a7, KMEMVISOR_EXTENSION).li(R.a6, c.fn).li(R.a0, c.base).li(R.a1, c.size).li(R.a2, 0).li(R.a3, 0);
    p.emit(ecall(), sd(R.a0, 0, R.s8), sd(R.a1, 8, R.s8), sd(R.a2, 16, R.s8), sd(R.a3, 24, R.s8));
    p.li(R.a7, 0).emit(ecall());
    p.label(`back${i}`).emit(addi(R.s8, R.s8, 40));
  });
  p.exit(0);
  p.label("trap").branch(beq, R.a7, R.zero, "toKernel");
  p.emit(csrr(R.t5, CSR.mcause), sd(R.t5, 32, R.s8), csrr(R.t5, CSR.mepc), addi(R.t5, R.t5, 4), csrw(CSR.mepc, R.t5), mret());
  p.label("toKernel").emit(jalr(0, R.s9, 0));
  return p;
}

test("hypercalls with any function, base and size, from any mode: the documented result, nothing else", async (t) => {
  t.timeout(120_000);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(1, 2, 3),
      fc.array(call, { minLength: 1, maxLength: 10 }),
      fc.integer({ min: DATA_PAGE, max: PAGES - 1 }),
      fc.integer({ min: 0, max: 255 }),
      async (copies, calls, poisoned, fill) => {
        const model = { copies, protection: Array<boolean>(PAGES).fill(false), poisoned };
        const want = calls.map((c) => expected(c, model));
        const data = Uint8Array.from({ length: RAM_SIZE - DATA_PAGE * PAGE_SIZE }, (_, i) => (i * 7 + fill) & 0xff);
        const { result, machine } = await runProgram(guest(calls), {
          ramSize: RAM_SIZE,
          copies,
          engine: { kind: "interp" },
          machine: { mirror: { kind: "ranges", ranges: [] } },
          timeoutMs: 20_000,
          beforeRun: (m) => {
            m.writeRam(Number(RAM_BASE) + DATA_PAGE * PAGE_SIZE, data);
            m.injectDue(Number(RAM_BASE) + poisoned * PAGE_SIZE, 0);
          },
        });
        assert.equal(result.exitCode, 0, `guest did not finish: ${result.reason} ${result.fault ?? ""}`);
        const log = new DataView(machine.readRam(LOG, 40 * calls.length).buffer);
        const got = calls.map((_, i) => Array.from({ length: 5 }, (_, r) => log.getBigUint64(i * 40 + r * 8, true)));
        // Thrown (not t.*) so that fast-check sees the failure and shrinks it to the smallest case.
        assert.deepEqual(got, want, "each call's a0..a3 and trap cause");
        const protection = Array.from({ length: PAGES }, (_, g) => machine.physicalMap.isProtected(g));
        assert.deepEqual(protection, copies > 1 ? model.protection : model.protection.map(() => false), "the protected pages");
        assert.deepEqual(compareCopies(machine.memory.buffer, machine.layout, machine.physicalMap), [], "every protected page's copies agree");
        // The data pages, read through the p2m, except the poisoned one (any read of it stops the VM).
        for (let g = DATA_PAGE; g < PAGES; g++) {
          if (g === poisoned) continue;
          const seen = machine.readRam(Number(RAM_BASE) + g * PAGE_SIZE, PAGE_SIZE);
          const at = (g - DATA_PAGE) * PAGE_SIZE;
          assert.ok(seen.every((b, i) => b === data[at + i]), `data page ${g} changed`);
        }
      },
    ),
    fuzzParameters(0.3),
  );
  t.pass();
});
