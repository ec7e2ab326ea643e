/**
 * Instruction semantics at their edges, run as small hand-assembled programs on a Machine.
 * Expected values come from the RISC-V unprivileged/privileged specs (and, where the spec leaves
 * a choice, from QEMU 7.2's behaviour as recorded in guests/README.md), not from the emulator.
 */
import test from "ava";
import {
  CSR, Program, R,
  add, addi, addiw, addw, amoadd_d, amoadd_w, amomax_w, amomaxu_d, amomaxu_w, amomin_d, amomin_w, amominu_w,
  amoswap_d, auipc, csrr, csrrc, csrrs, csrrsi, csrrw, csrw, div, divu, divuw, divw, ebreak, ecall, jal, jalr, ld,
  lr_d, lr_w, lui, lw, mul, mulh, mulhsu, mulhu, mulw, nop, rem, remu, remuw, remw, sc_d, sc_w, sd, sll, slli,
  slliw, sllw, slt, slti, sltiu, sltu, sra, srai, sraiw, sraw, srl, srli, srliw, srlw, sub, subw, sw,
} from "./helpers/asm.ts";
import { runProgram, type Outcome } from "./helpers/machine.ts";

const MIN = -(1n << 63n);
const MAX = (1n << 63n) - 1n;
const U64 = (v: bigint) => BigInt.asUintN(64, v);
const hex = (v: bigint) => "0x" + U64(v).toString(16);
/** Exit code the trap handlers below use for "unexpected trap". */
const UNEXPECTED_TRAP = 99;

function expectExit(t: { is: (a: unknown, b: unknown, m?: string) => void }, o: Outcome, code = 0): void {
  t.is(o.result.reason, "exit", `run ended by ${o.result.reason}${o.result.fault ? ": " + o.result.fault : ""}`);
  t.is(o.result.exitCode, code, "exit code");
}

// --- register-register and register-immediate edge cases ----------------------------------------

type Encoder = (rd: number, rs1: number, rs2: number) => number;
/** [description, instruction (rd=a0, rs1=a1, rs2=a2), rs1 value, rs2 value, expected rd]. */
type AluCase = [string, Encoder, bigint, bigint, bigint];

/** Runs every case in one program: a1/a2 loaded, the instruction, a0 stored to results[i]. */
async function runAlu(cases: AluCase[]) {
  const p = new Program();
  p.la(R.s0, "results");
  for (const [, enc, a, b] of cases) {
    p.li(R.a0, 0x5a5a5a5a).li(R.a1, a).li(R.a2, b).emit(enc(R.a0, R.a1, R.a2), sd(R.a0, 0, R.s0), addi(R.s0, R.s0, 8));
  }
  p.exit(0).align(8).label("results").space(8 * cases.length);
  const o = await runProgram(p);
  const base = p.address("results");
  return { o, got: (i: number) => o.ram64(base + BigInt(8 * i)) };
}

function aluTest(title: string, cases: AluCase[]): void {
  test(title, async (t) => {
    const { o, got } = await runAlu(cases);
    expectExit(t, o);
    cases.forEach(([what, , a, b, want], i) => {
      t.is(hex(got(i)), hex(want), `${what} with rs1=${hex(a)} rs2=${hex(b)}`);
    });
  });
}

const imm = (f: (rd: number, rs1: number, imm: number) => number, value: number): Encoder => (rd, rs1) => f(rd, rs1, value);

aluTest("div/rem by zero and MIN/-1, 64-bit", [
  ["div x/0 = -1", div, 7n, 0n, -1n],
  ["div MIN/0 = -1", div, MIN, 0n, -1n],
  ["divu x/0 = 2^64-1", divu, 7n, 0n, -1n],
  ["rem x/0 = x", rem, -7n, 0n, -7n],
  ["remu x/0 = x", remu, MIN, 0n, MIN],
  ["div MIN/-1 = MIN (overflow)", div, MIN, -1n, MIN],
  ["rem MIN/-1 = 0", rem, MIN, -1n, 0n],
  ["divu MIN/-1 = 0", divu, MIN, -1n, 0n],
  ["remu MIN/-1 = MIN", remu, MIN, -1n, MIN],
  ["div rounds toward zero", div, -7n, 2n, -3n],
  ["rem has the dividend's sign", rem, -7n, 2n, -1n],
  ["rem positive dividend, negative divisor", rem, 7n, -2n, 1n],
  ["divu of a 'negative' dividend", divu, -7n, 2n, 0x7ffffffffffffffcn],
  ["remu of a 'negative' dividend", remu, -7n, 2n, 1n],
  ["div MAX/MIN", div, MAX, MIN, 0n],
  ["div MIN/MIN", div, MIN, MIN, 1n],
  ["div -1/-1", div, -1n, -1n, 1n],
]);

aluTest("div/rem W forms: by zero, MIN/-1, upper bits ignored, results sign-extended", [
  ["divw x/0 = -1", divw, 5n, 0n, -1n],
  ["divw x/0, only the low 32 bits of the divisor count", divw, 5n, 0x1_0000_0000n, -1n],
  ["divuw x/0 = -1 (0xffffffff sign-extended)", divuw, 5n, 0n, -1n],
  ["remw x/0 = sext(x)", remw, 0x1_0000_0005n, 0n, 5n],
  ["remw x/0 with bit 31 set", remw, 0x8000_0000n, 0n, -0x8000_0000n],
  ["remuw x/0 = sext(x)", remuw, 0x8000_0000n, 0n, -0x8000_0000n],
  ["divw INT32_MIN/-1 = INT32_MIN", divw, 0x8000_0000n, -1n, -0x8000_0000n],
  ["remw INT32_MIN/-1 = 0", remw, -0x8000_0000n, -1n, 0n],
  ["divw ignores the upper halves", divw, 0x1234_5678_0000_0010n, 0xffff_ffff_ffff_fffen, -8n],
  ["divuw ignores the upper halves", divuw, 0x1_ffff_fffen, 0x1_0000_0002n, 0x7fff_ffffn],
  ["divuw large quotient is sign-extended", divuw, 0xffff_ffffn, 1n, -1n],
  ["remuw", remuw, 0xffff_ffffn, 0x10n, 0xfn],
  ["remw negative", remw, -7n, 2n, -1n],
]);

aluTest("mul, mulh, mulhsu, mulhu with negative operands", [
  ["mul MIN*-1 = MIN", mul, MIN, -1n, MIN],
  ["mul -3*5", mul, -3n, 5n, -15n],
  ["mulh -1*-1", mulh, -1n, -1n, 0n],
  ["mulhu (2^64-1)^2", mulhu, -1n, -1n, 0xffff_ffff_ffff_fffen],
  ["mulhsu -1 * (2^64-1)", mulhsu, -1n, -1n, -1n],
  ["mulh MIN*MIN", mulh, MIN, MIN, 0x4000_0000_0000_0000n],
  ["mulhu 2^63*2^63", mulhu, MIN, MIN, 0x4000_0000_0000_0000n],
  ["mulhsu MIN * 2^63", mulhsu, MIN, MIN, -0x4000_0000_0000_0000n],
  ["mulh MIN*-1", mulh, MIN, -1n, 0n],
  ["mulh -1*2", mulh, -1n, 2n, -1n],
  ["mulh MAX*MAX", mulh, MAX, MAX, 0x3fff_ffff_ffff_ffffn],
  ["mulh MAX*MIN", mulh, MAX, MIN, -0x3fff_ffff_ffff_ffffn - 1n],
  ["mulhsu 2 * (2^64-1)", mulhsu, 2n, -1n, 1n],
  ["mulhsu -2 * 3", mulhsu, -2n, 3n, -1n],
  ["mulhsu -1 * 0", mulhsu, -1n, 0n, 0n],
  ["mulhu 0x123456789abcdef0 * 0xfedcba9876543210", mulhu, 0x123456789abcdef0n, 0xfedcba9876543210n,
    (0x123456789abcdef0n * 0xfedcba9876543210n) >> 64n],
  ["mulh mixed signs", mulh, -0x123456789abcdefn, 0x7edcba9876543210n,
    (-0x123456789abcdefn * 0x7edcba9876543210n) >> 64n],
  ["mulw overflow sign-extends", mulw, 0x7fff_ffffn, 2n, -2n],
  ["mulw ignores upper halves", mulw, 0x1_0000_0003n, 0x1_0000_0005n, 15n],
  ["mulw INT32_MIN*-1", mulw, 0x8000_0000n, -1n, -0x8000_0000n],
]);

aluTest("W operations sign-extend their 32-bit results", [
  ["addw 0x7fffffff + 1", addw, 0x7fff_ffffn, 1n, -0x8000_0000n],
  ["addw ignores the upper halves", addw, 0x1234_0000_0000_0001n, 0xffff_0000_0000_0001n, 2n],
  ["addiw 0 is sext.w", imm(addiw, 0), 0xffff_ffffn, 0n, -1n],
  ["addiw -1 from 0x80000000", imm(addiw, -1), 0x8000_0000n, 0n, 0x7fff_ffffn],
  ["subw 0 - 0x80000000", subw, 0n, 0x8000_0000n, -0x8000_0000n],
  ["subw wraps", subw, 0x8000_0000n, 1n, 0x7fff_ffffn],
  ["sllw 1<<31", sllw, 1n, 31n, -0x8000_0000n],
  ["sllw shift amount mod 32 (32 = 0)", sllw, 1n, 32n, 1n],
  ["sllw shift amount mod 32 (63 = 31)", sllw, 1n, 63n, -0x8000_0000n],
  ["srlw by 31 of a negative word", srlw, 0xffff_ffff_8000_0000n, 31n, 1n],
  ["srlw by 0 sign-extends bit 31", srlw, 0x8000_0000n, 0n, -0x8000_0000n],
  ["srlw by 32 (= 0)", srlw, -1n, 32n, -1n],
  ["sraw by 31", sraw, 0x8000_0000n, 31n, -1n],
  ["sraw uses bit 31, not bit 63", sraw, 0x7fff_ffff_0000_0000n, 4n, 0n],
  ["sraw by 4", sraw, 0x8000_0000n, 4n, -0x0800_0000n],
  ["slliw 31", imm(slliw, 31), 0xffff_ffffn, 0n, -0x8000_0000n],
  ["srliw 1 gives a positive word", imm(srliw, 1), 0xffff_ffff_8000_0000n, 0n, 0x4000_0000n],
  ["srliw 0 sign-extends", imm(srliw, 0), 0xffff_ffffn, 0n, -1n],
  ["sraiw 1", imm(sraiw, 1), 0x8000_0000n, 0n, -0x4000_0000n],
  ["sraiw 31", imm(sraiw, 31), 0x7fff_ffffn, 0n, 0n],
]);

aluTest("64-bit shifts by 63, 32 and amounts taken mod 64", [
  ["sll by 63", sll, 1n, 63n, MIN],
  ["sll by 64 (= 0)", sll, 1n, 64n, 1n],
  ["sll by -1 (= 63)", sll, 1n, -1n, MIN],
  ["sll by 32", sll, 0xffff_ffffn, 32n, -0x1_0000_0000n],
  ["srl by 63", srl, MIN, 63n, 1n],
  ["srl by 32", srl, -1n, 32n, 0xffff_ffffn],
  ["srl by 65 (= 1)", srl, MIN, 65n, 0x4000_0000_0000_0000n],
  ["sra by 63", sra, MIN, 63n, -1n],
  ["sra by 32", sra, MIN, 32n, -0x8000_0000n],
  ["sra by 127 (= 63)", sra, MAX, 127n, 0n],
  ["slli 63", imm(slli, 63), 3n, 0n, MIN],
  ["slli 32", imm(slli, 32), 0x8000_0001n, 0n, 0x8000_0001_0000_0000n],
  ["srli 63", imm(srli, 63), -1n, 0n, 1n],
  ["srli 32", imm(srli, 32), MIN, 0n, 0x8000_0000n],
  ["srai 63", imm(srai, 63), MIN, 0n, -1n],
  ["srai 32", imm(srai, 32), 0x7fff_ffff_0000_0000n, 0n, 0x7fff_ffffn],
]);

aluTest("comparisons: sltiu with -1, signed vs unsigned", [
  ["sltiu 0 < 2^64-1", imm(sltiu, -1), 0n, 0n, 1n],
  ["sltiu -2 < 2^64-1", imm(sltiu, -1), -2n, 0n, 1n],
  ["sltiu -1 < 2^64-1 is false", imm(sltiu, -1), -1n, 0n, 0n],
  ["sltiu MAX < 2^64-1", imm(sltiu, -1), MAX, 0n, 1n],
  ["sltiu x < 1 (seqz) of 0", imm(sltiu, 1), 0n, 0n, 1n],
  ["sltiu x < 1 (seqz) of MIN", imm(sltiu, 1), MIN, 0n, 0n],
  ["sltiu with -2048 (= 2^64-2048)", imm(sltiu, -2048), -2049n, 0n, 1n],
  ["sltiu with -2048, equal", imm(sltiu, -2048), -2048n, 0n, 0n],
  ["slti -1 < 0", imm(slti, 0), -1n, 0n, 1n],
  ["slti MIN < -2048", imm(slti, -2048), MIN, 0n, 1n],
  ["slti 0 < -1 is false", imm(slti, -1), 0n, 0n, 0n],
  ["slt MIN < MAX", slt, MIN, MAX, 1n],
  ["slt MAX < MIN", slt, MAX, MIN, 0n],
  ["sltu MAX < MIN (2^63)", sltu, MAX, MIN, 1n],
  ["sltu 0 < -1", sltu, 0n, -1n, 1n],
  ["sltu x0-style: 0 < 0", sltu, 0n, 0n, 0n],
  ["add wraps", add, MAX, 1n, MIN],
  ["sub wraps", sub, MIN, 1n, MAX],
]);

// --- x0 -----------------------------------------------------------------------------------------

test("writes to x0 are ignored, reads of x0 give 0", async (t) => {
  const p = new Program();
  p.la(R.s0, "data").li(R.t0, 7).emit(
    addi(0, 0, 5),
    lui(0, 0x12345),
    auipc(0, 1),
    add(0, R.t0, R.t0),
    ld(0, 0, R.s0),
    amoadd_d(0, R.t0, R.s0), // memory still changes
    csrrs(0, CSR.mscratch, 0),
    jal(0, 4),
    add(R.a0, 0, 0),
    addi(R.a1, 0, 0),
    sub(R.a2, 0, R.t0),
  );
  p.la(R.t1, "after").emit(jalr(0, R.t1, 0)).label("after");
  p.exit(0).align(8).label("data").dword(0x1111n);
  const o = await runProgram(p);
  expectExit(t, o);
  t.is(o.x(0), 0n);
  t.is(o.x(R.a0), 0n);
  t.is(o.x(R.a1), 0n);
  t.is(o.sx(R.a2), -7n);
  t.is(o.ram64(p.address("data")), 0x1118n, "amoadd.d with rd = x0 still adds");
});

// --- memory --------------------------------------------------------------------------------------

test("misaligned ld/sd/lw/sh work without a trap, also across a page (QEMU-compatible)", async (t) => {
  const p = new Program();
  p.setTrapVector("trap");
  p.la(R.s0, "buf").li(R.a0, 0x1122334455667788n).emit(
    sd(R.a0, 3, R.s0), ld(R.a1, 3, R.s0), lw(R.a2, 5, R.s0), sw(R.a0, 17, R.s0), ld(R.a3, 16, R.s0),
  );
  // s1 = the last 3 bytes of buf's first page: an 8-byte access that straddles the page boundary.
  p.la(R.s1, "page2").emit(addi(R.s1, R.s1, -3), sd(R.a0, 0, R.s1), ld(R.a4, 0, R.s1), ld(R.a5, -5, R.s1));
  p.exit(0);
  p.label("trap").exit(UNEXPECTED_TRAP);
  p.align(4096).label("buf").space(4096).label("page2").space(4096);
  const o = await runProgram(p);
  expectExit(t, o);
  const buf = p.address("buf");
  t.is(hex(o.x(R.a1)), "0x1122334455667788");
  t.is(hex(o.x(R.a2)), "0x33445566", "lw at +5 reads bytes 5..8 (sign-extended, positive)");
  t.is(hex(o.ram64(buf)), "0x4455667788000000", "bytes 3..7 of the first word");
  t.is(hex(o.x(R.a3)), "0x5566778800", "sw at +17 wrote bytes 17..20");
  t.is(hex(o.x(R.a4)), "0x1122334455667788", "ld across the page boundary");
  t.is(hex(o.x(R.a5)), "0x6677880000000000", "bytes before the boundary");
  const page2 = p.address("page2");
  t.is(hex(o.ram64(page2)), "0x1122334455", "bytes after the boundary");
});

test("lr/sc: success, second sc fails, sc without or with another reservation fails, lr.w/sc.w widths", async (t) => {
  const p = new Program();
  p.la(R.s0, "d0").la(R.s1, "d1").la(R.s2, "w0").li(R.t0, 0x1_2345_6789n).li(R.a7, 42);
  p.emit(
    lr_d(R.a0, R.s0), // a0 = 5
    addi(R.a1, R.a0, 1),
    sc_d(R.a2, R.a1, R.s0), // 0: d0 = 6
    sc_d(R.a3, R.a7, R.s0), // 1: reservation used up, d0 stays 6
    lr_d(R.a4, R.s0),
    sc_d(R.a5, R.a7, R.s1), // 1: another address; d1 unchanged
    sc_d(R.a6, R.a7, R.s0), // 1: the failed sc consumed the reservation
    lr_w(R.s3, R.s2, { aq: true }), // 0x80000000 sign-extended
    sc_w(R.s4, R.t0, R.s2, { rl: true }), // 0: stores 0x23456789 only
    lr_d(R.s5, R.s0),
    sd(R.a7, 0, R.s0), // our own store changes the value under the reservation
    sc_d(R.s6, R.a1, R.s0), // fails (QEMU compares the value lr read)
  );
  p.exit(0).align(8).label("d0").dword(5n).label("d1").dword(0xd1n).label("w0").dword(0xaaaa_aaaa_8000_0000n);
  const o = await runProgram(p);
  expectExit(t, o);
  t.is(o.x(R.a0), 5n);
  t.is(o.x(R.a2), 0n, "sc after lr succeeds");
  t.is(o.x(R.a3), 1n, "second sc fails");
  t.is(o.x(R.a4), 6n);
  t.is(o.x(R.a5), 1n, "sc to another address fails");
  t.is(o.x(R.a6), 1n, "sc after a failed sc fails");
  t.is(o.ram64(p.address("d1")), 0xd1n, "failed sc does not store");
  t.is(hex(o.x(R.s3)), "0xffffffff80000000", "lr.w sign-extends");
  t.is(o.x(R.s4), 0n, "sc.w succeeds");
  t.is(hex(o.ram64(p.address("w0"))), "0xaaaaaaaa23456789", "sc.w stores 32 bits only");
  t.is(o.x(R.s6), 1n, "sc fails after the reserved value changed");
  t.is(o.ram64(p.address("d0")), 42n);
});

test("AMO .w forms: signed/unsigned min/max on sign-extended words, rd sign-extended, other half untouched", async (t) => {
  const p = new Program();
  p.la(R.s0, "m0").la(R.s1, "m1").la(R.s2, "m2").la(R.s3, "m3").la(R.s4, "m4").la(R.s5, "m5").la(R.s6, "m6");
  p.li(R.t0, 1).li(R.t1, 0x7fff_ffff).li(R.t2, 0xffff_ffff_0000_0005n).li(R.t3, 0x1_0000_0000n).li(R.t4, -1);
  p.li(R.s7, MIN);
  p.emit(
    amomin_w(R.a0, R.t0, R.s0), // m0 low = -1: min(-1, 1) = -1, unchanged
    amominu_w(R.a1, R.t0, R.s1), // m1 low = 0xffffffff: minu = 1
    amomaxu_w(R.a2, R.t1, R.s2), // m2 = 0x80000000: maxu keeps it
    amomax_w(R.a3, R.t1, R.s2), // signed: 0x7fffffff > INT32_MIN
    amomax_w(R.a4, R.t2, R.s3), // operand's low word is 5 > 3 (upper bits ignored)
    amominu_w(R.a5, R.t3, R.s4), // operand's low word is 0
    amomaxu_d(R.a6, R.t4, R.s5), // 1 -> 2^64-1
    amomin_d(R.a7, R.s7, R.s6), // 0 -> MIN
    amoadd_w(R.s8, R.t0, R.s2), // 0x7fffffff + 1 = 0x80000000, upper half untouched
    amoswap_d(0, R.t0, R.s6),
  );
  p.exit(0).align(8);
  p.label("m0").dword(0x0000_0001_ffff_ffffn).label("m1").dword(0x0000_0002_ffff_ffffn);
  p.label("m2").dword(0x1234_5678_8000_0000n).label("m3").dword(3n).label("m4").dword(7n);
  p.label("m5").dword(1n).label("m6").dword(0n);
  const o = await runProgram(p);
  expectExit(t, o);
  const m = (l: string) => hex(o.ram64(p.address(l)));
  t.is(hex(o.x(R.a0)), "0xffffffffffffffff", "amomin.w rd = old word sign-extended");
  t.is(m("m0"), "0x1ffffffff", "amomin.w: -1 < 1 signed");
  t.is(hex(o.x(R.a1)), "0xffffffffffffffff");
  t.is(m("m1"), "0x200000001", "amominu.w: 1 < 0xffffffff unsigned; upper word untouched");
  t.is(hex(o.x(R.a2)), "0xffffffff80000000", "amomaxu.w rd sign-extended");
  t.is(hex(o.x(R.a3)), "0xffffffff80000000", "amomaxu.w kept 0x80000000");
  t.is(hex(o.x(R.a4)), "0x3");
  t.is(m("m3"), "0x5", "amomax.w compares the operand's low word only");
  t.is(hex(o.x(R.a5)), "0x7");
  t.is(m("m4"), "0x0", "amominu.w compares the operand's low word only");
  t.is(hex(o.x(R.a6)), "0x1");
  t.is(m("m5"), "0xffffffffffffffff");
  t.is(hex(o.x(R.a7)), "0x0");
  t.is(hex(o.x(R.s8)), "0x7fffffff", "amoadd.w rd");
  t.is(m("m2"), "0x1234567880000000", "amomax.w then amoadd.w, upper half untouched");
  t.is(m("m6"), "0x1", "amoswap.d with rd = x0 stores");
});

// --- traps ----------------------------------------------------------------------------------------

interface TrapRecord {
  cause: bigint;
  tval: bigint;
  epc: bigint;
}

/** Program with a logging trap handler: s10 = log pointer, s11 = trap count. */
function trapProgram(): Program {
  const p = new Program();
  p.setTrapVector("trap").la(R.s10, "log").emit(addi(R.s11, 0, 0));
  return p;
}

function finishTrapProgram(p: Program, logEntries = 32): Program {
  p.exit(0);
  p.loggingTrapHandler("trap");
  p.align(8).label("log").space(24 * logEntries);
  return p;
}

function traps(o: Outcome, p: Program): TrapRecord[] {
  const n = Number(o.x(R.s11));
  const base = p.address("log");
  return Array.from({ length: n }, (_, i) => ({
    cause: o.ram64(base + BigInt(24 * i)),
    tval: o.ram64(base + BigInt(24 * i + 8)),
    epc: o.ram64(base + BigInt(24 * i + 16)),
  }));
}

test("illegal instructions: mcause 2, mtval = the instruction bits (32-bit and compressed), mepc", async (t) => {
  const p = trapProgram();
  const illegal32 = [0x0000500b, 0x0005b507 /* fld */, 0x7ff02573 /* csrr a0, 0x7ff */, 0xc0001073 /* unimp */];
  const illegal16 = [0x8002 /* c.jr x0 */, 0x4002 /* c.lwsp x0 */, 0x6101 /* c.addi16sp 0 */, 0x2000 /* c.fld */];
  const at: bigint[] = [];
  for (const w of illegal32) {
    at.push(p.here);
    p.emit(w);
  }
  for (const h of illegal16) {
    at.push(p.here);
    p.half(h);
  }
  at.push(p.here);
  p.half(0x0000); // the defined-illegal all-zero parcel
  p.half(0x0001); // c.nop: realign
  finishTrapProgram(p);
  const o = await runProgram(p);
  expectExit(t, o);
  const log = traps(o, p);
  const bits = [...illegal32, ...illegal16, 0];
  t.is(log.length, bits.length, "one trap per illegal instruction");
  log.forEach((r, i) => {
    const what = `0x${bits[i]!.toString(16)}`;
    t.is(r.cause, 2n, `${what}: mcause`);
    t.is(hex(r.tval), hex(BigInt(bits[i]!)), `${what}: mtval = instruction bits`);
    t.is(hex(r.epc), hex(at[i]!), `${what}: mepc`);
  });
});

test("ecall gives mcause 11 (from M) with mtval 0; ebreak gives 3", async (t) => {
  const p = trapProgram();
  const ecallAt = p.here;
  p.emit(ecall());
  const ebreakAt = p.here;
  p.emit(ebreak());
  const cebreakAt = p.here;
  p.half(0x9002, 0x0001); // c.ebreak, c.nop
  finishTrapProgram(p);
  const o = await runProgram(p);
  expectExit(t, o);
  const [e, b, cb] = traps(o, p);
  t.deepEqual(e, { cause: 11n, tval: 0n, epc: ecallAt });
  t.is(b?.cause, 3n);
  t.is(b?.epc, ebreakAt);
  // The spec allows 0 or the pc; QEMU 7.2 gives 0.
  t.true(b?.tval === 0n || b?.tval === ebreakAt, `ebreak mtval ${hex(b?.tval ?? -1n)}`);
  t.is(cb?.cause, 3n);
  t.is(cb?.epc, cebreakAt);
  t.true(cb?.tval === 0n || cb?.tval === cebreakAt, `c.ebreak mtval ${hex(cb?.tval ?? -1n)}`);
  t.is(o.hart.csrs.mstatus & (3 << 11), 0, "mret leaves MPP = U (privileged spec 1.12)");
  t.is(o.hart.priv, 3, "back in M-mode");
});

test("access faults: load at 0 gives mcause 5 mtval 0, store gives 7, mtval = address", async (t) => {
  const p = trapProgram();
  p.li(R.a0, 0x5a).li(R.t0, 0x10);
  const at: bigint[] = [];
  const step = (w: number) => {
    at.push(p.here);
    p.emit(w);
  };
  step(ld(R.a0, 0, 0));
  step(sd(R.a0, 8, 0));
  step(lw(R.a1, 0, R.t0));
  step(sw(R.a0, 0xf0, 0));
  finishTrapProgram(p);
  const o = await runProgram(p);
  expectExit(t, o);
  t.deepEqual(traps(o, p), [
    { cause: 5n, tval: 0n, epc: at[0]! },
    { cause: 7n, tval: 8n, epc: at[1]! },
    { cause: 5n, tval: 0x10n, epc: at[2]! },
    { cause: 7n, tval: 0xf0n, epc: at[3]! },
  ]);
  t.is(o.x(R.a0), 0x5an, "a faulting load does not write rd");
});

test("instruction fetch from an unmapped address: mcause 1, mepc = mtval = the address", async (t) => {
  const p = new Program();
  p.setTrapVector("trap").li(R.t0, 0x10).emit(jalr(R.ra, R.t0, 0));
  p.label("after").exit(UNEXPECTED_TRAP);
  p.label("trap").exit(3);
  const o = await runProgram(p);
  expectExit(t, o, 3);
  t.is(o.hart.csrs.mcause, 1n);
  t.is(o.hart.csrs.mepc, 0x10n);
  t.is(o.hart.csrs.mtval, 0x10n);
  t.is(o.x(R.ra), p.address("after"), "jalr linked before the fault");
});

test("misaligned AMO and LR trap (AMO: 4 as QEMU or 6 as the spec), memory and rd unchanged", async (t) => {
  const p = trapProgram();
  p.la(R.s0, "buf").li(R.t0, 1).li(R.a0, 0xa0).li(R.a1, 0xa1).li(R.a2, 0xa2).li(R.a3, 0xa3);
  p.emit(addi(R.s1, R.s0, 2), addi(R.s2, R.s0, 4));
  const at: bigint[] = [];
  const step = (w: number) => {
    at.push(p.here);
    p.emit(w);
  };
  step(amoadd_w(R.a0, R.t0, R.s1));
  step(amoadd_d(R.a1, R.t0, R.s2));
  step(amoswap_d(R.a2, R.t0, R.s1));
  step(lr_d(R.a3, R.s2));
  p.emit(lr_d(R.a4, R.s0)); // aligned: fine, and it leaves a reservation on buf
  finishTrapProgram(p);
  p.align(8).label("buf").dword(0x1111_2222_3333_4444n, 0x5555_6666_7777_8888n);
  const o = await runProgram(p);
  expectExit(t, o);
  const log = traps(o, p);
  t.is(log.length, 4);
  const buf = p.address("buf");
  const addrs = [buf + 2n, buf + 4n, buf + 2n, buf + 4n];
  log.slice(0, 3).forEach((r, i) => {
    t.true(r.cause === 4n || r.cause === 6n, `AMO ${i}: mcause ${r.cause}`);
    t.is(hex(r.tval), hex(addrs[i]!), `AMO ${i}: mtval = address`);
    t.is(r.epc, at[i]!);
  });
  t.deepEqual(log[3], { cause: 4n, tval: addrs[3]!, epc: at[3]! }, "misaligned lr.d: load address misaligned");
  t.is(hex(o.ram64(buf)), "0x1111222233334444", "memory unchanged");
  t.is(hex(o.ram64(buf + 8n)), "0x5555666677778888", "memory unchanged");
  t.deepEqual([o.x(R.a0), o.x(R.a1), o.x(R.a2), o.x(R.a3)], [0xa0n, 0xa1n, 0xa2n, 0xa3n], "rd unchanged");
});

test("csrrs/csrrc with x0 on read-only mhartid do not trap, any write does", async (t) => {
  const p = trapProgram();
  p.li(R.a0, 0x55).li(R.a1, 1).li(R.a2, 0x55).li(R.a3, 0x55);
  p.emit(csrrs(R.a0, CSR.mhartid, 0), csrrc(R.a2, CSR.mhartid, 0), csrrsi(R.a3, CSR.mhartid, 0), csrr(R.a4, CSR.misa));
  const at: bigint[] = [];
  const step = (w: number) => {
    at.push(p.here);
    p.emit(w);
  };
  step(csrrw(R.a5, CSR.mhartid, R.a1)); // 0xf1459073 with rd = a5
  step(csrrw(0, CSR.mhartid, 0)); // csrrw always writes, even from x0
  step(csrrs(R.a6, CSR.mhartid, R.a1));
  step(csrw(CSR.mvendorid, R.a1));
  finishTrapProgram(p);
  const o = await runProgram(p);
  expectExit(t, o);
  t.is(o.x(R.a0), 0n, "mhartid of hart 0");
  t.is(o.x(R.a2), 0n);
  t.is(o.x(R.a3), 0n);
  t.is(o.x(R.a4) >> 62n, 2n, "misa.MXL = 2");
  const log = traps(o, p);
  t.is(log.length, 4, "every write attempt traps");
  log.forEach((r, i) => {
    t.is(r.cause, 2n);
    t.is(r.epc, at[i]!);
  });
  t.is(hex(log[0]!.tval), hex(BigInt(csrrw(R.a5, CSR.mhartid, R.a1))), "mtval = the csrrw bits");
  t.is(o.x(R.a5), 0n, "rd of a trapping CSR instruction is not written");
});

test("minstret/instret count retired instructions; writes take effect for the next instruction", async (t) => {
  const p = new Program();
  p.emit(csrr(R.a0, CSR.minstret));
  for (let i = 0; i < 10; i++) p.emit(nop());
  p.emit(csrr(R.a1, CSR.minstret), csrr(R.a2, CSR.instret), csrr(R.a3, CSR.minstret));
  p.li(R.a4, 1000).emit(csrw(CSR.minstret, R.a4), csrr(R.a5, CSR.minstret), csrr(R.a6, CSR.mcycle), csrr(R.a7, CSR.cycle));
  p.exit(0);
  const o = await runProgram(p);
  expectExit(t, o);
  t.is(o.x(R.a1) - o.x(R.a0), 11n, "csrr + 10 nops retired between the reads");
  t.is(o.x(R.a3) - o.x(R.a2), 1n, "instret and minstret are the same counter");
  t.is(o.x(R.a5), 1000n, "minstret reads the value written by the previous instruction");
  t.true(o.x(R.a7) > o.x(R.a6), "cycle counts up");
  // Straight-line program of 4-byte instructions: every one up to the finisher store retires once.
  const instructions = p.code().length / 4 - 1; // the spin loop after the store never runs
  t.is(o.result.harts[0]!.instructions, instructions, "retired count reported by run()");
});

test("32-bit instructions at 2 mod 4, after a compressed one", async (t) => {
  const p = new Program();
  p.half(0x4505); // c.li a0, 1
  p.li(R.a1, 0x1234_5678_9abc_def0n).emit(add(R.a2, R.a1, R.a0));
  p.half(0x0505); // c.addi a0, 1
  p.exit(0);
  const o = await runProgram(p);
  expectExit(t, o);
  t.is(o.x(R.a0), 2n);
  t.is(hex(o.x(R.a2)), "0x123456789abcdef1");
});
