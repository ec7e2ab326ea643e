/**
 * The instruction table: one row per instruction, (name, mask, match, format), as in Spike's
 * encoding.h and QEMU's decodetree. The decoder is driven by this table alone; what each
 * instruction does lives in semantics.ts under the same name. Adding an instruction is one row here
 * plus one entry there.
 *
 * Compressed (RVC) instructions have no rows: decoder.ts expands them into the 32-bit instruction
 * they stand for, so every engine sees one set of instructions.
 */

/** How the operand fields and the immediate are laid out in the 32-bit word. */
export type Format =
  | "R" // rd, rs1, rs2
  | "I" // rd, rs1, imm[11:0]
  | "S" // rs1, rs2, imm[11:5|4:0]
  | "B" // rs1, rs2, branch offset
  | "U" // rd, imm[31:12] << 12
  | "J" // rd, jump offset
  | "SHIFT" // rd, rs1, shamt[5:0]
  | "CSR" // rd, rs1 (register or 5-bit immediate), imm = CSR number
  | "RM" // rd, rs1, rs2, imm = rounding mode (funct3)
  | "R4" // rd, rs1, rs2, imm = rounding mode | rs3 << 3 (the fused multiply-adds)
  | "NONE"; // no operands we use (fence, ecall, ...)

export interface InstructionRow {
  readonly name: string;
  readonly mask: number;
  readonly match: number;
  readonly format: Format;
  /** Which operand fields name floating-point registers (FpRegs bits); 0 for integer-only rows. */
  readonly fpRegs: number;
}

/** Bits of InstructionRow.fpRegs: the field names an f register, not an x register. */
export const FpRegs = { RD: 1, RS1: 2, RS2: 4, RS3: 8 } as const;

const OPCODE = 0x7f;
const F3 = 0x707f;
const F7 = 0xfe00707f;
const F6 = 0xfc00707f;
const AMO = 0xf800707f;
const LR = 0xf9f0707f; // rs2 must be zero
const EXACT = 0xffffffff;

function row(name: string, mask: number, match: number, format: Format, fpRegs = 0): InstructionRow {
  return { name, mask: mask >>> 0, match: match >>> 0, format, fpRegs };
}

/**
 * F and D (RV64): the same rows for s (fmt 00) and d (fmt 01). Register classes per row: `f` for
 * an f register, `x` for an x register, `-` for a field that is no register (rd, rs1, rs2[, rs3]).
 */
function floatingPoint(): InstructionRow[] {
  const FUNCT7_RS2 = 0xfff0007f; // funct7, rs2 and opcode fixed; funct3 is the rounding mode
  const FUNCT7 = 0xfe00007f; // funct7 and opcode fixed; funct3 is the rounding mode
  const FUNCT7_F3 = 0xfe00707f;
  const FUNCT7_RS2_F3 = 0xfff0707f;
  const R4 = 0x0600007f; // opcode and fmt
  const rows: InstructionRow[] = [];
  const classes = (spec: string) =>
    [FpRegs.RD, FpRegs.RS1, FpRegs.RS2, FpRegs.RS3].reduce((bits, bit, i) => (spec[i] === "f" ? bits | bit : bits), 0);
  for (const [t, fmt] of [["s", 0], ["d", 1]] as const) {
    // name: the mnemonic without its format suffix, or a function of the format (fmv's names).
    const op = (name: string | ((t: string) => string), mask: number, funct7: number, rs2: number, f3: number, format: Format, regs: string) =>
      rows.push(row(typeof name === "string" ? `${name}.${t}` : name(t), mask,
        ((funct7 | fmt) << 25) | (rs2 << 20) | (f3 << 12) | 0x53, format, classes(regs)));
    rows.push(row(`fl${t === "s" ? "w" : "d"}`, F3, ((2 + fmt) << 12) | 0x07, "I", classes("fx")));
    rows.push(row(`fs${t === "s" ? "w" : "d"}`, F3, ((2 + fmt) << 12) | 0x27, "S", classes("-xf")));
    for (const [name, opcode] of [["fmadd", 0x43], ["fmsub", 0x47], ["fnmsub", 0x4b], ["fnmadd", 0x4f]] as const) {
      rows.push(row(`${name}.${t}`, R4, (fmt << 25) | opcode, "R4", classes("ffff")));
    }
    op("fadd", FUNCT7, 0x00, 0, 0, "RM", "fff");
    op("fsub", FUNCT7, 0x04, 0, 0, "RM", "fff");
    op("fmul", FUNCT7, 0x08, 0, 0, "RM", "fff");
    op("fdiv", FUNCT7, 0x0c, 0, 0, "RM", "fff");
    op("fsqrt", FUNCT7_RS2, 0x2c, 0, 0, "RM", "ff");
    op("fsgnj", FUNCT7_F3, 0x10, 0, 0, "R", "fff");
    op("fsgnjn", FUNCT7_F3, 0x10, 0, 1, "R", "fff");
    op("fsgnjx", FUNCT7_F3, 0x10, 0, 2, "R", "fff");
    op("fmin", FUNCT7_F3, 0x14, 0, 0, "R", "fff");
    op("fmax", FUNCT7_F3, 0x14, 0, 1, "R", "fff");
    op("feq", FUNCT7_F3, 0x50, 0, 2, "R", "xff");
    op("flt", FUNCT7_F3, 0x50, 0, 1, "R", "xff");
    op("fle", FUNCT7_F3, 0x50, 0, 0, "R", "xff");
    op("fclass", FUNCT7_RS2_F3, 0x70, 0, 1, "R", "xf");
    op((t) => (t === "s" ? "fmv.x.w" : "fmv.x.d"), FUNCT7_RS2_F3, 0x70, 0, 0, "R", "xf");
    op((t) => (t === "s" ? "fmv.w.x" : "fmv.d.x"), FUNCT7_RS2_F3, 0x78, 0, 0, "R", "fx");
    for (const [i, int] of ["w", "wu", "l", "lu"].entries()) {
      op(`fcvt.${int}`, FUNCT7_RS2, 0x60, i, 0, "RM", "xf"); // fcvt.w.s: to w from s
      op((t) => `fcvt.${t}.${int}`, FUNCT7_RS2, 0x68, i, 0, "RM", "fx");
    }
  }
  rows.push(row("fcvt.s.d", FUNCT7_RS2, (0x20 << 25) | (1 << 20) | 0x53, "RM", classes("ff")));
  rows.push(row("fcvt.d.s", FUNCT7_RS2, (0x21 << 25) | (0 << 20) | 0x53, "RM", classes("ff")));
  return rows;
}

const amoFunct5: Record<string, number> = {
  amoadd: 0b00000,
  amoswap: 0b00001,
  amoxor: 0b00100,
  amoor: 0b01000,
  amoand: 0b01100,
  amomin: 0b10000,
  amomax: 0b10100,
  amominu: 0b11000,
  amomaxu: 0b11100,
};

function atomics(): InstructionRow[] {
  const rows: InstructionRow[] = [];
  for (const [suffix, f3] of [["w", 2], ["d", 3]] as const) {
    rows.push(row(`lr.${suffix}`, LR, (0b00010 << 27) | (f3 << 12) | 0x2f, "R"));
    rows.push(row(`sc.${suffix}`, AMO, (0b00011 << 27) | (f3 << 12) | 0x2f, "R"));
    for (const [name, funct5] of Object.entries(amoFunct5)) {
      rows.push(row(`${name}.${suffix}`, AMO, (funct5 << 27) | (f3 << 12) | 0x2f, "R"));
    }
  }
  return rows;
}

export const INSTRUCTIONS: readonly InstructionRow[] = [
  // RV64I
  row("lui", OPCODE, 0x37, "U"),
  row("auipc", OPCODE, 0x17, "U"),
  row("jal", OPCODE, 0x6f, "J"),
  row("jalr", F3, 0x67, "I"),
  row("beq", F3, 0x0063, "B"),
  row("bne", F3, 0x1063, "B"),
  row("blt", F3, 0x4063, "B"),
  row("bge", F3, 0x5063, "B"),
  row("bltu", F3, 0x6063, "B"),
  row("bgeu", F3, 0x7063, "B"),
  row("lb", F3, 0x0003, "I"),
  row("lh", F3, 0x1003, "I"),
  row("lw", F3, 0x2003, "I"),
  row("ld", F3, 0x3003, "I"),
  row("lbu", F3, 0x4003, "I"),
  row("lhu", F3, 0x5003, "I"),
  row("lwu", F3, 0x6003, "I"),
  row("sb", F3, 0x0023, "S"),
  row("sh", F3, 0x1023, "S"),
  row("sw", F3, 0x2023, "S"),
  row("sd", F3, 0x3023, "S"),
  row("addi", F3, 0x0013, "I"),
  row("slti", F3, 0x2013, "I"),
  row("sltiu", F3, 0x3013, "I"),
  row("xori", F3, 0x4013, "I"),
  row("ori", F3, 0x6013, "I"),
  row("andi", F3, 0x7013, "I"),
  row("slli", F6, 0x1013, "SHIFT"),
  row("srli", F6, 0x5013, "SHIFT"),
  row("srai", F6, 0x40005013, "SHIFT"),
  row("add", F7, 0x0033, "R"),
  row("sub", F7, 0x40000033, "R"),
  row("sll", F7, 0x1033, "R"),
  row("slt", F7, 0x2033, "R"),
  row("sltu", F7, 0x3033, "R"),
  row("xor", F7, 0x4033, "R"),
  row("srl", F7, 0x5033, "R"),
  row("sra", F7, 0x40005033, "R"),
  row("or", F7, 0x6033, "R"),
  row("and", F7, 0x7033, "R"),
  row("addiw", F3, 0x001b, "I"),
  row("slliw", F7, 0x101b, "SHIFT"),
  row("srliw", F7, 0x501b, "SHIFT"),
  row("sraiw", F7, 0x4000501b, "SHIFT"),
  row("addw", F7, 0x003b, "R"),
  row("subw", F7, 0x4000003b, "R"),
  row("sllw", F7, 0x103b, "R"),
  row("srlw", F7, 0x503b, "R"),
  row("sraw", F7, 0x4000503b, "R"),
  row("fence", F3, 0x000f, "NONE"),
  row("fence.i", F3, 0x100f, "NONE"),
  row("ecall", EXACT, 0x00000073, "NONE"),
  row("ebreak", EXACT, 0x00100073, "NONE"),
  // Privileged
  row("mret", EXACT, 0x30200073, "NONE"),
  row("sret", EXACT, 0x10200073, "NONE"),
  row("wfi", EXACT, 0x10500073, "NONE"),
  row("sfence.vma", 0xfe007fff, 0x12000073, "R"),
  // Zicsr
  row("csrrw", F3, 0x1073, "CSR"),
  row("csrrs", F3, 0x2073, "CSR"),
  row("csrrc", F3, 0x3073, "CSR"),
  row("csrrwi", F3, 0x5073, "CSR"),
  row("csrrsi", F3, 0x6073, "CSR"),
  row("csrrci", F3, 0x7073, "CSR"),
  // RV64M
  row("mul", F7, 0x02000033, "R"),
  row("mulh", F7, 0x02001033, "R"),
  row("mulhsu", F7, 0x02002033, "R"),
  row("mulhu", F7, 0x02003033, "R"),
  row("div", F7, 0x02004033, "R"),
  row("divu", F7, 0x02005033, "R"),
  row("rem", F7, 0x02006033, "R"),
  row("remu", F7, 0x02007033, "R"),
  row("mulw", F7, 0x0200003b, "R"),
  row("divw", F7, 0x0200403b, "R"),
  row("divuw", F7, 0x0200503b, "R"),
  row("remw", F7, 0x0200603b, "R"),
  row("remuw", F7, 0x0200703b, "R"),
  // RV64A
  ...atomics(),
  // RV64F, RV64D
  ...floatingPoint(),
];

/** Operation numbers as stored in decode caches: 0 is "illegal instruction", rows count from 1. */
export const ILLEGAL_OP = 0;
export const OP_NUMBER: ReadonlyMap<string, number> = new Map(INSTRUCTIONS.map((r, i) => [r.name, i + 1]));
