/**
 * F and D in both engines: hand-assembled programs whose results are checked against values
 * computed here with JavaScript's own binary64 arithmetic (Math.fround for singles) and the ISA
 * manual's rules (mstatus.FS, reserved rounding modes, NaN-boxing, fflags, conversion limits).
 * The bit-exact comparison over millions of operands is test/fp-qemu.test.ts (against QEMU).
 */
import test from "ava";
import { CSR, Program, R, addi, csrr, csrrci, csrrs, csrrsi, csrrw, csrrwi, csrw, iType, rType, sType } from "./helpers/asm.ts";
import { runProgram, type Outcome } from "./helpers/machine.ts";
import type { EngineChoice } from "../vcpu/hart.ts";

const ENGINES: [string, EngineChoice][] = [
  ["interpreter", { kind: "interp" }],
  ["translator", { kind: "jit", threshold: 0, synchronous: true }],
];

// --- encoders (F/D are not in the shared test assembler) ----------------------------------------
const DYN = 7;
const fop = (funct7: number, rd: number, rs1: number, rs2: number, rm = DYN) => rType(0x53, rm, funct7, rd, rs1, rs2);
const fadd_s = (rd: number, a: number, b: number, rm = DYN) => fop(0x00, rd, a, b, rm);
const fadd_d = (rd: number, a: number, b: number, rm = DYN) => fop(0x01, rd, a, b, rm);
const fdiv_d = (rd: number, a: number, b: number, rm = DYN) => fop(0x0d, rd, a, b, rm);
const fsqrt_d = (rd: number, a: number, rm = DYN) => fop(0x2d, rd, a, 0, rm);
const fcvt_s_d = (rd: number, a: number, rm = DYN) => fop(0x20, rd, a, 1, rm);
const fcvt_w_d = (rd: number, a: number, rm = DYN) => fop(0x61, rd, a, 0, rm);
const fcvt_wu_d = (rd: number, a: number, rm = DYN) => fop(0x61, rd, a, 1, rm);
const fmin_d = (rd: number, a: number, b: number) => fop(0x15, rd, a, b, 0);
const feq_d = (rd: number, a: number, b: number) => fop(0x51, rd, a, b, 2);
const fclass_d = (rd: number, a: number) => fop(0x71, rd, a, 0, 1);
const fmv_x_d = (rd: number, a: number) => fop(0x71, rd, a, 0, 0);
const fmv_x_w = (rd: number, a: number) => fop(0x70, rd, a, 0, 0);
const fmv_d_x = (rd: number, a: number) => fop(0x79, rd, a, 0, 0);
const fmadd_d = (rd: number, a: number, b: number, c: number, rm = DYN) =>
  ((c << 27) | (1 << 25) | (b << 20) | (a << 15) | (rm << 12) | (rd << 7) | 0x43) >>> 0;
const fld = (rd: number, offset: number, rs1: number) => iType(0x07, 3, rd, rs1, offset);
const fsd = (rs2: number, offset: number, rs1: number) => sType(0x27, 3, rs1, rs2, offset);
const c_fsdsp = (rs2: number, offset: number) => 0xa002 | (((offset >> 3) & 7) << 10) | (((offset >> 6) & 7) << 7) | (rs2 << 2);
const c_fldsp = (rd: number, offset: number) => 0x2002 | (((offset >> 5) & 1) << 12) | (rd << 7) | (((offset >> 3) & 3) << 5) | (((offset >> 6) & 7) << 2);
const FFLAGS = 0x001, FRM = 0x002, FCSR = 0x003;
const MSTATUS_FS_INITIAL = 1 << 13;

const buf = new DataView(new ArrayBuffer(8));
const bits = (x: number) => (buf.setFloat64(0, x, true), buf.getBigUint64(0, true));
const bits32 = (x: number) => (buf.setFloat32(0, x, true), BigInt(buf.getUint32(0, true)));
const NV = 16n, NX = 1n;

function enableFp(p: Program): Program {
  return p.li(R.t0, MSTATUS_FS_INITIAL).emit(csrrs(0, CSR.mstatus, R.t0));
}

for (const [engine, choice] of ENGINES) {
  test(`${engine}: F/D results, fflags, NaN-boxing, conversions limits, c.fsdsp/c.fldsp`, async (t) => {
    const p = enableFp(new Program());
    p.li(R.a0, bits(1)).emit(fmv_d_x(1, R.a0));
    p.li(R.a0, bits(3)).emit(fmv_d_x(2, R.a0));
    // 1/3: inexact.
    p.emit(fdiv_d(3, 1, 2), fmv_x_d(R.s1, 3), csrr(R.s2, FFLAGS));
    // To single: the register holds it NaN-boxed; fmv.x.w sign-extends its 32 bits.
    p.emit(fcvt_s_d(4, 3), fmv_x_d(R.s3, 4), fmv_x_w(R.s4, 4));
    // A double read as a single is not NaN-boxed: the canonical NaN.
    p.emit(fadd_s(5, 2, 2), fmv_x_d(R.s5, 5));
    // NaN to w: the largest value, NV (and no NX).
    p.emit(csrw(FFLAGS, 0)).li(R.a0, 0x7ff8000000000001n).emit(fmv_d_x(6, R.a0), fcvt_w_d(R.s6, 6, 1), csrr(R.s7, FFLAGS));
    // √3 rounded up and down: neighbours.
    p.emit(fsqrt_d(7, 2, 3), fmv_x_d(R.s8, 7), fsqrt_d(7, 2, 2), fmv_x_d(R.s9, 7));
    // 1·3 + 1/3 in one rounding (the product is exact: equal to the RNE sum).
    p.emit(fmadd_d(8, 1, 2, 3, 0), fmv_x_d(R.a1, 8));
    // Through memory, compressed: c.fsdsp f1, 8(sp); c.fldsp f9, 8(sp).
    p.la(R.sp, "scratch");
    p.half(c_fsdsp(1, 8), c_fldsp(9, 8));
    p.emit(fmv_x_d(R.a2, 9), fsd(3, 16, R.sp), fld(10, 16, R.sp), fmv_x_d(R.a3, 10));
    // min(−0, +0) = −0; feq(NaN, NaN) = 0; fclass(−0) = bit 3; fcvt.wu.d(−1.0) = 0 with NV.
    p.li(R.a0, 1n << 63n).emit(fmv_d_x(11, R.a0), fmv_d_x(12, 0), fmin_d(13, 12, 11), fmv_x_d(R.a4, 13));
    p.emit(feq_d(R.a5, 6, 6), fclass_d(R.a6, 11));
    p.li(R.a0, bits(-1)).emit(fmv_d_x(14, R.a0), csrw(FFLAGS, 0), fcvt_wu_d(R.a7, 14, 1), csrr(R.s11, FFLAGS));
    p.emit(csrr(R.s10, CSR.mstatus));
    p.exit(0);
    p.align(8).label("scratch").space(64);
    const o: Outcome = await runProgram(p, { engine: choice });
    t.is(o.result.reason, "exit", o.result.fault);
    t.is(o.x(R.s1), bits(1 / 3));
    t.is(o.x(R.s2), NX);
    t.is(o.x(R.s3), 0xffffffff00000000n | bits32(1 / 3));
    t.is(o.x(R.s4), BigInt.asUintN(64, BigInt.asIntN(32, bits32(1 / 3))));
    t.is(o.x(R.s5), 0xffffffff7fc00000n);
    t.is(o.x(R.s6), 0x7fffffffn);
    t.is(o.x(R.s7), NV);
    t.is(o.x(R.s8) - o.x(R.s9), 1n);
    t.true(o.x(R.s8) === bits(Math.sqrt(3)) || o.x(R.s9) === bits(Math.sqrt(3)));
    t.is(o.x(R.a1), bits(3 + 1 / 3));
    t.is(o.x(R.a2), bits(1));
    t.is(o.x(R.a3), bits(1 / 3));
    t.is(o.x(R.a4), 1n << 63n);
    t.is(o.x(R.a5), 0n);
    t.is(o.x(R.a6), 1n << 3n);
    t.is(o.x(R.a7), 0n);
    t.is(o.x(R.s11), NV);
    // FS Dirty (3) after FP writes, and SD set.
    t.is((o.x(R.s10) >> 13n) & 3n, 3n);
    t.is(o.x(R.s10) >> 63n, 1n);
  });

  test(`${engine}: fflags, frm and fcsr are views of one register; reads leave FS alone, writes make it Dirty`, async (t) => {
    const p = enableFp(new Program());
    p.emit(csrr(R.s1, FFLAGS), csrr(R.s2, CSR.mstatus)); // FS still Initial (1)
    p.li(R.a0, 0xff).emit(csrrw(R.s3, FCSR, R.a0), csrr(R.s4, FRM), csrr(R.s5, FFLAGS));
    p.emit(csrrci(R.s6, FFLAGS, 3), csrr(R.s7, FCSR), csrrsi(R.s8, FRM, 0), csrr(R.s9, CSR.mstatus));
    p.li(R.a0, 0x123).emit(csrrw(0, FRM, R.a0), csrr(R.s10, FCSR));
    p.exit(0);
    const o = await runProgram(p, { engine: choice });
    t.is(o.result.reason, "exit", o.result.fault);
    t.is(o.x(R.s1), 0n);
    t.is((o.x(R.s2) >> 13n) & 3n, 1n, "FS Initial after a read");
    t.is(o.x(R.s3), 0n);
    t.is(o.x(R.s4), 7n);
    t.is(o.x(R.s5), 0x1fn);
    t.is(o.x(R.s6), 0x1fn);
    t.is(o.x(R.s7), 0xfcn);
    t.is(o.x(R.s8), 7n);
    t.is((o.x(R.s9) >> 13n) & 3n, 3n, "FS Dirty after a write");
    t.is(o.x(R.s10), 0x7cn, "frm takes the low 3 bits of what is written");
  });

  test(`${engine}: FS = Off makes F/D instructions and fcsr illegal; reserved rounding modes are illegal`, async (t) => {
    const p = new Program();
    p.setTrapVector("trap").la(R.s10, "log").emit(addi(R.s11, 0, 0));
    const at: bigint[] = [];
    const illegal = (...words: number[]) => {
      at.push(p.here);
      p.emit(...words);
    };
    illegal(fadd_d(1, 2, 3)); // FS Off
    illegal(csrr(R.a0, FFLAGS)); // FS Off
    enableFp(p);
    illegal(fadd_d(1, 2, 3, 5)); // rm 5 reserved
    p.emit(csrrwi(0, FRM, 6));
    illegal(fadd_d(1, 2, 3)); // dynamic, frm 6 reserved
    p.emit(csrrwi(0, FRM, 1), fadd_d(1, 2, 3)); // fine again
    p.exit(0);
    p.loggingTrapHandler("trap");
    p.align(8).label("log").space(24 * 8);
    const o = await runProgram(p, { engine: choice });
    t.is(o.result.reason, "exit", o.result.fault);
    t.is(o.x(R.s11), BigInt(at.length));
    const log = p.address("log");
    at.forEach((pc, i) => {
      t.is(o.ram64(log + BigInt(24 * i)), 2n, `trap ${i}: illegal instruction`);
      t.is(o.ram64(log + BigInt(24 * i + 16)), pc, `trap ${i}: mepc`);
    });
  });
}

