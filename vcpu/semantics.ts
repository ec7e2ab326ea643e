/**
 * What each instruction does, one entry per row of isa.ts, in the style of Spike's riscv/insns/.
 * Every engine executes exactly these definitions (see sem.ts); none re-derives an instruction.
 */
import type { Sem, Expr } from "./sem.ts";

type Semantics = (s: Sem) => void;

// Shared definitions for the division family (RISC-V defines results where wasm would trap).
function div(s: Sem, a: Expr, b: Expr): Expr {
  const x = s.tmp(a), y = s.tmp(b);
  return s.ifElse(s.eq(y, s.const(0)), s.const(-1), s.ifElse(s.eq(y, s.const(-1)), s.sub(s.const(0), x), s.divS(x, y)));
}
function rem(s: Sem, a: Expr, b: Expr): Expr {
  const x = s.tmp(a), y = s.tmp(b);
  return s.ifElse(s.eq(y, s.const(0)), x, s.ifElse(s.eq(y, s.const(-1)), s.const(0), s.remS(x, y)));
}
function divu(s: Sem, a: Expr, b: Expr): Expr {
  const x = s.tmp(a), y = s.tmp(b);
  return s.ifElse(s.eq(y, s.const(0)), s.const(-1), s.divU(x, y));
}
function remu(s: Sem, a: Expr, b: Expr): Expr {
  const x = s.tmp(a), y = s.tmp(b);
  return s.ifElse(s.eq(y, s.const(0)), x, s.remU(x, y));
}
/** High half of a signed×signed (bothSigned) or signed×unsigned product, from the unsigned one. */
function mulhSigned(s: Sem, bothSigned: boolean): Expr {
  const a = s.tmp(s.rs1), b = s.tmp(s.rs2);
  const negA = s.ifElse(s.ltS(a, s.const(0)), b, s.const(0));
  const high = s.sub(s.mulhU(a, b), negA);
  return bothSigned ? s.sub(high, s.ifElse(s.ltS(b, s.const(0)), a, s.const(0))) : high;
}
const shamt32 = (s: Sem) => s.and(s.rs2, s.const(31));
const offsetAddress = (s: Sem) => s.add(s.rs1, s.imm);

const loads: Record<string, Semantics> = {
  lb: (s) => s.setRd(s.load(1, true, offsetAddress(s))),
  lh: (s) => s.setRd(s.load(2, true, offsetAddress(s))),
  lw: (s) => s.setRd(s.load(4, true, offsetAddress(s))),
  ld: (s) => s.setRd(s.load(8, true, offsetAddress(s))),
  lbu: (s) => s.setRd(s.load(1, false, offsetAddress(s))),
  lhu: (s) => s.setRd(s.load(2, false, offsetAddress(s))),
  lwu: (s) => s.setRd(s.load(4, false, offsetAddress(s))),
};

const stores: Record<string, Semantics> = {
  sb: (s) => s.store(1, offsetAddress(s), s.rs2),
  sh: (s) => s.store(2, offsetAddress(s), s.rs2),
  sw: (s) => s.store(4, offsetAddress(s), s.rs2),
  sd: (s) => s.store(8, offsetAddress(s), s.rs2),
};

function atomics(): Record<string, Semantics> {
  const out: Record<string, Semantics> = {};
  for (const [suffix, width] of [["w", 4], ["d", 8]] as const) {
    out[`lr.${suffix}`] = (s) => s.setRd(s.loadReserved(width, s.rs1));
    out[`sc.${suffix}`] = (s) => s.setRd(s.storeConditional(width, s.rs1, s.rs2));
    for (const kind of ["add", "swap", "xor", "and", "or", "min", "max", "minu", "maxu"] as const) {
      out[`amo${kind}.${suffix}`] = (s) => s.setRd(s.amo(kind, width, s.rs1, s.rs2));
    }
  }
  return out;
}

/** The high word of a NaN-boxed single (as a signed 64-bit constant). */
const BOX = -(1n << 32n);

/**
 * F and D. Every instruction first requires FS ≠ Off; arithmetic resolves its rounding mode
 * (trapping a reserved one) before anything else, so a trap leaves no effect.
 */
function floatingPoint(): Record<string, Semantics> {
  const out: Record<string, Semantics> = {};
  const fp = (body: Semantics): Semantics => (s) => {
    s.requireFp();
    body(s);
  };
  for (const t of ["s", "d"] as const) {
    const width = t === "s" ? 4 : 8;
    const box = (s: Sem, e: Expr) => (t === "s" ? s.or(e, s.const(BOX)) : e);
    out[t === "s" ? "flw" : "fld"] = fp((s) => s.setFrd(box(s, s.load(width, false, offsetAddress(s)))));
    out[t === "s" ? "fsw" : "fsd"] = fp((s) => s.store(width, offsetAddress(s), s.frs2));
    for (const op of ["add", "sub", "mul", "div"]) {
      out[`f${op}.${t}`] = fp((s) => s.setFrd(s.fp(`${op}.${t}`, s.roundingMode(), s.frs1, s.frs2)));
    }
    out[`fsqrt.${t}`] = fp((s) => s.setFrd(s.fp(`sqrt.${t}`, s.roundingMode(), s.frs1)));
    for (const op of ["madd", "msub", "nmsub", "nmadd"]) {
      out[`f${op}.${t}`] = fp((s) => s.setFrd(s.fp(`${op}.${t}`, s.roundingMode(), s.frs1, s.frs2, s.frs3)));
    }
    for (const op of ["sgnj", "sgnjn", "sgnjx", "min", "max"]) {
      out[`f${op}.${t}`] = fp((s) => s.setFrd(s.fp(`${op}.${t}`, s.const(0), s.frs1, s.frs2)));
    }
    for (const op of ["eq", "lt", "le"]) out[`f${op}.${t}`] = fp((s) => s.setRd(s.fp(`${op}.${t}`, s.const(0), s.frs1, s.frs2)));
    out[`fclass.${t}`] = fp((s) => s.setRd(s.fp(`class.${t}`, s.const(0), s.frs1)));
    for (const int of ["w", "wu", "l", "lu"]) {
      out[`fcvt.${int}.${t}`] = fp((s) => s.setRd(s.fp(`cvt.${int}.${t}`, s.roundingMode(), s.frs1)));
      out[`fcvt.${t}.${int}`] = fp((s) => s.setFrd(s.fp(`cvt.${t}.${int}`, s.roundingMode(), s.rs1)));
    }
  }
  // Moves copy bits: fmv.x.w sign-extends the single's bits, fmv.w.x NaN-boxes them.
  out["fmv.x.w"] = fp((s) => s.setRd(s.sext32(s.frs1)));
  out["fmv.w.x"] = fp((s) => s.setFrd(s.or(s.zext32(s.rs1), s.const(BOX))));
  out["fmv.x.d"] = fp((s) => s.setRd(s.frs1));
  out["fmv.d.x"] = fp((s) => s.setFrd(s.rs1));
  out["fcvt.s.d"] = fp((s) => s.setFrd(s.fp("cvt.s.d", s.roundingMode(), s.frs1)));
  out["fcvt.d.s"] = fp((s) => s.setFrd(s.fp("cvt.d.s", s.roundingMode(), s.frs1)));
  return out;
}

export const SEMANTICS: Readonly<Record<string, Semantics>> = {
  lui: (s) => s.setRd(s.imm),
  auipc: (s) => s.setRd(s.add(s.pc, s.imm)),
  jal: (s) => {
    s.setRd(s.nextPc);
    s.jump(s.add(s.pc, s.imm));
  },
  jalr: (s) => {
    const target = s.tmp(s.and(s.add(s.rs1, s.imm), s.const(-2)));
    s.setRd(s.nextPc);
    s.jump(target);
  },
  beq: (s) => s.branch(s.eq(s.rs1, s.rs2), s.add(s.pc, s.imm)),
  bne: (s) => s.branch(s.ne(s.rs1, s.rs2), s.add(s.pc, s.imm)),
  blt: (s) => s.branch(s.ltS(s.rs1, s.rs2), s.add(s.pc, s.imm)),
  bge: (s) => s.branch(s.geS(s.rs1, s.rs2), s.add(s.pc, s.imm)),
  bltu: (s) => s.branch(s.ltU(s.rs1, s.rs2), s.add(s.pc, s.imm)),
  bgeu: (s) => s.branch(s.geU(s.rs1, s.rs2), s.add(s.pc, s.imm)),
  ...loads,
  ...stores,
  addi: (s) => s.setRd(s.add(s.rs1, s.imm)),
  slti: (s) => s.setRd(s.bool(s.ltS(s.rs1, s.imm))),
  sltiu: (s) => s.setRd(s.bool(s.ltU(s.rs1, s.imm))),
  xori: (s) => s.setRd(s.xor(s.rs1, s.imm)),
  ori: (s) => s.setRd(s.or(s.rs1, s.imm)),
  andi: (s) => s.setRd(s.and(s.rs1, s.imm)),
  slli: (s) => s.setRd(s.shl(s.rs1, s.imm)),
  srli: (s) => s.setRd(s.shrU(s.rs1, s.imm)),
  srai: (s) => s.setRd(s.shrS(s.rs1, s.imm)),
  add: (s) => s.setRd(s.add(s.rs1, s.rs2)),
  sub: (s) => s.setRd(s.sub(s.rs1, s.rs2)),
  sll: (s) => s.setRd(s.shl(s.rs1, s.rs2)),
  slt: (s) => s.setRd(s.bool(s.ltS(s.rs1, s.rs2))),
  sltu: (s) => s.setRd(s.bool(s.ltU(s.rs1, s.rs2))),
  xor: (s) => s.setRd(s.xor(s.rs1, s.rs2)),
  srl: (s) => s.setRd(s.shrU(s.rs1, s.rs2)),
  sra: (s) => s.setRd(s.shrS(s.rs1, s.rs2)),
  or: (s) => s.setRd(s.or(s.rs1, s.rs2)),
  and: (s) => s.setRd(s.and(s.rs1, s.rs2)),
  addiw: (s) => s.setRd(s.sext32(s.add(s.rs1, s.imm))),
  slliw: (s) => s.setRd(s.sext32(s.shl(s.rs1, s.imm))),
  srliw: (s) => s.setRd(s.sext32(s.shrU(s.zext32(s.rs1), s.imm))),
  sraiw: (s) => s.setRd(s.shrS(s.sext32(s.rs1), s.imm)),
  addw: (s) => s.setRd(s.sext32(s.add(s.rs1, s.rs2))),
  subw: (s) => s.setRd(s.sext32(s.sub(s.rs1, s.rs2))),
  sllw: (s) => s.setRd(s.sext32(s.shl(s.rs1, shamt32(s)))),
  srlw: (s) => s.setRd(s.sext32(s.shrU(s.zext32(s.rs1), shamt32(s)))),
  sraw: (s) => s.setRd(s.shrS(s.sext32(s.rs1), shamt32(s))),
  fence: (s) => s.fence(),
  "fence.i": (s) => s.fenceI(),
  ecall: (s) => s.host("ecall"),
  ebreak: (s) => s.host("ebreak"),
  mret: (s) => s.host("mret"),
  sret: (s) => s.host("sret"),
  wfi: (s) => s.host("wfi"),
  "sfence.vma": (s) => s.host("sfence.vma"),
  csrrw: (s) => s.setRd(s.csr("rw", false)),
  csrrs: (s) => s.setRd(s.csr("rs", false)),
  csrrc: (s) => s.setRd(s.csr("rc", false)),
  csrrwi: (s) => s.setRd(s.csr("rw", true)),
  csrrsi: (s) => s.setRd(s.csr("rs", true)),
  csrrci: (s) => s.setRd(s.csr("rc", true)),
  mul: (s) => s.setRd(s.mul(s.rs1, s.rs2)),
  mulh: (s) => s.setRd(mulhSigned(s, true)),
  mulhsu: (s) => s.setRd(mulhSigned(s, false)),
  mulhu: (s) => s.setRd(s.mulhU(s.rs1, s.rs2)),
  div: (s) => s.setRd(div(s, s.rs1, s.rs2)),
  divu: (s) => s.setRd(divu(s, s.rs1, s.rs2)),
  rem: (s) => s.setRd(rem(s, s.rs1, s.rs2)),
  remu: (s) => s.setRd(remu(s, s.rs1, s.rs2)),
  mulw: (s) => s.setRd(s.sext32(s.mul(s.rs1, s.rs2))),
  divw: (s) => s.setRd(s.sext32(div(s, s.sext32(s.rs1), s.sext32(s.rs2)))),
  divuw: (s) => s.setRd(s.sext32(divu(s, s.zext32(s.rs1), s.zext32(s.rs2)))),
  remw: (s) => s.setRd(s.sext32(rem(s, s.sext32(s.rs1), s.sext32(s.rs2)))),
  remuw: (s) => s.setRd(s.sext32(remu(s, s.zext32(s.rs1), s.zext32(s.rs2)))),
  ...atomics(),
  ...floatingPoint(),
};
