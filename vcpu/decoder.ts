/**
 * The one decoder every engine uses. It turns raw instruction bits into an operation number
 * (a row of isa.ts) and operand fields. Compressed instructions are first expanded into the 32-bit
 * instruction they stand for (RISC-V unprivileged spec, chapter "C" tables 16.5–16.7), so that
 * semantics exist once per operation.
 */
import { INSTRUCTIONS, ILLEGAL_OP, type Format, type InstructionRow } from "./isa.ts";

export interface Decoded {
  /** Operation number: index into INSTRUCTIONS + 1, or ILLEGAL_OP. */
  op: number;
  name: string;
  rd: number;
  rs1: number;
  rs2: number;
  /** Sign-extended immediate (CSR number for CSR instructions, shift amount for shifts). */
  imm: number;
  /** Instruction length in bytes: 2 for compressed, 4 otherwise. */
  length: 2 | 4;
  /** The raw bits (16 bits for compressed instructions). */
  raw: number;
}

// Bucket rows by major opcode (bits 6:0) so that decoding scans a handful of rows, not all of them.
const rowsByOpcode: InstructionRow[][] = Array.from({ length: 128 }, () => []);
INSTRUCTIONS.forEach((r) => rowsByOpcode[r.match & 0x7f]!.push(r));
const opNumberOf = new Map(INSTRUCTIONS.map((r, i) => [r, i + 1]));

function bits(value: number, hi: number, lo: number): number {
  return (value >>> lo) & ((1 << (hi - lo + 1)) - 1);
}

function immediate(inst: number, format: Format): number {
  switch (format) {
    case "I":
      return inst >> 20;
    case "S":
      return ((inst >> 25) << 5) | bits(inst, 11, 7);
    case "B":
      return ((inst >> 31) << 12) | (bits(inst, 7, 7) << 11) | (bits(inst, 30, 25) << 5) | (bits(inst, 11, 8) << 1);
    case "U":
      return inst & 0xfffff000;
    case "J":
      return ((inst >> 31) << 20) | (bits(inst, 19, 12) << 12) | (bits(inst, 20, 20) << 11) | (bits(inst, 30, 21) << 1);
    case "SHIFT":
      return bits(inst, 25, 20);
    case "CSR":
      return bits(inst, 31, 20);
    case "RM":
      return bits(inst, 14, 12);
    case "R4":
      return bits(inst, 14, 12) | (bits(inst, 31, 27) << 3);
    case "R":
    case "NONE":
      return 0;
  }
}

/** Decode one 32-bit instruction word (low two bits 11). */
export function decode32(inst: number): Decoded {
  const word = inst >>> 0;
  for (const r of rowsByOpcode[word & 0x7f]!) {
    if ((word & r.mask) >>> 0 === r.match) {
      return {
        op: opNumberOf.get(r)!,
        name: r.name,
        rd: bits(word, 11, 7),
        rs1: bits(word, 19, 15),
        rs2: bits(word, 24, 20),
        imm: immediate(word, r.format),
        length: 4,
        raw: word,
      };
    }
  }
  return illegal(word, 4);
}

function illegal(raw: number, length: 2 | 4): Decoded {
  return { op: ILLEGAL_OP, name: "illegal", rd: 0, rs1: 0, rs2: 0, imm: 0, length, raw };
}

/** Decode raw instruction bits: a 16-bit parcel if the low bits are not 11, else a 32-bit word. */
export function decode(raw: number): Decoded {
  if ((raw & 3) !== 3) {
    const half = raw & 0xffff;
    const expanded = expandCompressed(half);
    if (expanded === 0) return illegal(half, 2);
    const d = decode32(expanded);
    return d.op === ILLEGAL_OP ? illegal(half, 2) : { ...d, length: 2, raw: half };
  }
  return decode32(raw);
}

// --- 32-bit encoders used by the RVC expansion -------------------------------------------------

const encI = (opcode: number, f3: number, rd: number, rs1: number, imm: number) =>
  (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opcode) >>> 0;
const encR = (opcode: number, f3: number, f7: number, rd: number, rs1: number, rs2: number) =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opcode) >>> 0;
const encS = (opcode: number, f3: number, rs1: number, rs2: number, imm: number) =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | opcode) >>> 0;
const encB = (f3: number, rs1: number, rs2: number, imm: number) =>
  ((((imm >> 12) & 1) << 31) |
    (((imm >> 5) & 0x3f) << 25) |
    (rs2 << 20) |
    (rs1 << 15) |
    (f3 << 12) |
    (((imm >> 1) & 0xf) << 8) |
    (((imm >> 11) & 1) << 7) |
    0x63) >>>
  0;
const encJ = (rd: number, imm: number) =>
  ((((imm >> 20) & 1) << 31) |
    (((imm >> 1) & 0x3ff) << 21) |
    (((imm >> 11) & 1) << 20) |
    (((imm >> 12) & 0xff) << 12) |
    (rd << 7) |
    0x6f) >>>
  0;
const encU = (opcode: number, rd: number, imm: number) => ((imm & 0xfffff000) | (rd << 7) | opcode) >>> 0;

const sext = (value: number, width: number) => (value << (32 - width)) >> (32 - width);

/**
 * Expand a 16-bit RVC instruction (RV64C) into its 32-bit equivalent; 0 means illegal or reserved.
 * (RV64C has no c.flw/c.fsw: those encodings are c.ld/c.sd.)
 */
export function expandCompressed(c: number): number {
  const op = c & 3;
  const funct3 = bits(c, 15, 13);
  const rdFull = bits(c, 11, 7);
  const rs2Full = bits(c, 6, 2);
  const rdPrime = bits(c, 4, 2) + 8;
  const rs1Prime = bits(c, 9, 7) + 8;
  const imm6 = sext((bits(c, 12, 12) << 5) | bits(c, 6, 2), 6);

  if (op === 0) {
    switch (funct3) {
      case 0: {
        // c.addi4spn
        const nzuimm = (bits(c, 12, 11) << 4) | (bits(c, 10, 7) << 6) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 3);
        return nzuimm === 0 ? 0 : encI(0x13, 0, rdPrime, 2, nzuimm);
      }
      case 2: // c.lw
        return encI(0x03, 2, rdPrime, rs1Prime, (bits(c, 12, 10) << 3) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 6));
      case 1: // c.fld
        return encI(0x07, 3, rdPrime, rs1Prime, (bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6));
      case 3: // c.ld
        return encI(0x03, 3, rdPrime, rs1Prime, (bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6));
      case 6: // c.sw
        return encS(0x23, 2, rs1Prime, rdPrime, (bits(c, 12, 10) << 3) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 6));
      case 5: // c.fsd
        return encS(0x27, 3, rs1Prime, rdPrime, (bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6));
      case 7: // c.sd
        return encS(0x23, 3, rs1Prime, rdPrime, (bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6));
      default: // reserved
        return 0;
    }
  }

  if (op === 1) {
    switch (funct3) {
      case 0: // c.addi (c.nop when rd = 0)
        return encI(0x13, 0, rdFull, rdFull, imm6);
      case 1: // c.addiw
        return rdFull === 0 ? 0 : encI(0x1b, 0, rdFull, rdFull, imm6);
      case 2: // c.li
        return encI(0x13, 0, rdFull, 0, imm6);
      case 3: {
        if (rdFull === 2) {
          // c.addi16sp
          const nzimm = sext(
            (bits(c, 12, 12) << 9) | (bits(c, 6, 6) << 4) | (bits(c, 5, 5) << 6) | (bits(c, 4, 3) << 7) | (bits(c, 2, 2) << 5),
            10,
          );
          return nzimm === 0 ? 0 : encI(0x13, 0, 2, 2, nzimm);
        }
        // c.lui
        return imm6 === 0 ? 0 : encU(0x37, rdFull, imm6 << 12);
      }
      case 4: {
        const funct2 = bits(c, 11, 10);
        const shamt = (bits(c, 12, 12) << 5) | bits(c, 6, 2);
        if (funct2 === 0) return encI(0x13, 5, rs1Prime, rs1Prime, shamt); // c.srli
        if (funct2 === 1) return encI(0x13, 5, rs1Prime, rs1Prime, shamt | 0x400); // c.srai
        if (funct2 === 2) return encI(0x13, 7, rs1Prime, rs1Prime, imm6); // c.andi
        const sub = bits(c, 6, 5);
        if (bits(c, 12, 12) === 0) {
          const [f3, f7] = ([[0, 0x20], [4, 0], [6, 0], [7, 0]] as const)[sub]; // sub, xor, or, and
          return encR(0x33, f3, f7, rs1Prime, rs1Prime, rdPrime);
        }
        if (sub === 0) return encR(0x3b, 0, 0x20, rs1Prime, rs1Prime, rdPrime); // c.subw
        if (sub === 1) return encR(0x3b, 0, 0, rs1Prime, rs1Prime, rdPrime); // c.addw
        return 0;
      }
      case 5: {
        // c.j
        const offset = sext(
          (bits(c, 12, 12) << 11) |
            (bits(c, 11, 11) << 4) |
            (bits(c, 10, 9) << 8) |
            (bits(c, 8, 8) << 10) |
            (bits(c, 7, 7) << 6) |
            (bits(c, 6, 6) << 7) |
            (bits(c, 5, 3) << 1) |
            (bits(c, 2, 2) << 5),
          12,
        );
        return encJ(0, offset);
      }
      default: {
        // c.beqz (6), c.bnez (7)
        const offset = sext(
          (bits(c, 12, 12) << 8) | (bits(c, 11, 10) << 3) | (bits(c, 6, 5) << 6) | (bits(c, 4, 3) << 1) | (bits(c, 2, 2) << 5),
          9,
        );
        return encB(funct3 === 6 ? 0 : 1, rs1Prime, 0, offset);
      }
    }
  }

  if (op === 2) {
    switch (funct3) {
      case 0: // c.slli
        return encI(0x13, 1, rdFull, rdFull, (bits(c, 12, 12) << 5) | bits(c, 6, 2));
      case 1: // c.fldsp (f0 is a valid destination)
        return encI(0x07, 3, rdFull, 2, (bits(c, 12, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6));
      case 2: // c.lwsp
        return rdFull === 0 ? 0 : encI(0x03, 2, rdFull, 2, (bits(c, 12, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6));
      case 3: // c.ldsp
        return rdFull === 0 ? 0 : encI(0x03, 3, rdFull, 2, (bits(c, 12, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6));
      case 4: {
        if (bits(c, 12, 12) === 0) {
          if (rs2Full === 0) return rdFull === 0 ? 0 : encI(0x67, 0, 0, rdFull, 0); // c.jr
          return encR(0x33, 0, 0, rdFull, 0, rs2Full); // c.mv
        }
        if (rs2Full === 0) {
          if (rdFull === 0) return 0x00100073; // c.ebreak
          return encI(0x67, 0, 1, rdFull, 0); // c.jalr
        }
        return encR(0x33, 0, 0, rdFull, rdFull, rs2Full); // c.add
      }
      case 6: // c.swsp
        return encS(0x23, 2, 2, rs2Full, (bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6));
      case 5: // c.fsdsp
        return encS(0x27, 3, 2, rs2Full, (bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6));
      case 7: // c.sdsp
        return encS(0x23, 3, 2, rs2Full, (bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6));
      default:
        return 0;
    }
  }
  return 0;
}
