/**
 * A tiny RISC-V (RV64IMAC + Zicsr) encoder for tests, and a minimal ELF64 writer, so that tests
 * can run hand-made programs on a Machine without a cross compiler.
 *
 * Operand order follows the assembly syntax: `ld(rd, offset, rs1)` is `ld rd, offset(rs1)`,
 * `sd(rs2, offset, rs1)` is `sd rs2, offset(rs1)`, `amoadd_d(rd, rs2, rs1)` is
 * `amoadd.d rd, rs2, (rs1)`, `jalr(rd, rs1, offset)` is `jalr rd, offset(rs1)`. Branch and jump
 * offsets are byte offsets from the instruction; Program resolves labels into them.
 *
 * Every encoder checks its operands' ranges and throws, so a test cannot silently encode something
 * other than what it says.
 */

export const RAM_BASE = 0x8000_0000n;
/** sifive_test finisher on QEMU virt. */
export const FINISHER = 0x10_0000;

/** ABI register names. */
export const R = {
  zero: 0, ra: 1, sp: 2, gp: 3, tp: 4, t0: 5, t1: 6, t2: 7, s0: 8, s1: 9,
  a0: 10, a1: 11, a2: 12, a3: 13, a4: 14, a5: 15, a6: 16, a7: 17,
  s2: 18, s3: 19, s4: 20, s5: 21, s6: 22, s7: 23, s8: 24, s9: 25, s10: 26, s11: 27,
  t3: 28, t4: 29, t5: 30, t6: 31,
} as const;

/** CSR numbers used by tests. */
export const CSR = {
  mstatus: 0x300, misa: 0x301, mie: 0x304, mtvec: 0x305, mscratch: 0x340, mepc: 0x341, mcause: 0x342,
  mtval: 0x343, mip: 0x344, mcycle: 0xb00, minstret: 0xb02, cycle: 0xc00, time: 0xc01, instret: 0xc02,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14,
} as const;

// --- operand checks ---------------------------------------------------------------------------

function reg(r: number): number {
  if (!Number.isInteger(r) || r < 0 || r > 31) throw new RangeError(`bad register x${r}`);
  return r;
}

function signed(value: number, bits: number, what: string): number {
  const lo = -(2 ** (bits - 1));
  const hi = 2 ** (bits - 1) - 1;
  if (!Number.isInteger(value) || value < lo || value > hi) {
    throw new RangeError(`${what} ${value} does not fit in ${bits} signed bits`);
  }
  return value;
}

function unsigned(value: number, bits: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new RangeError(`${what} ${value} does not fit in ${bits} unsigned bits`);
  }
  return value;
}

function even(value: number, what: string): number {
  if (value % 2 !== 0) throw new RangeError(`${what} ${value} is odd`);
  return value;
}

// --- instruction formats ----------------------------------------------------------------------

export function rType(opcode: number, funct3: number, funct7: number, rd: number, rs1: number, rs2: number): number {
  return ((funct7 << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (funct3 << 12) | (reg(rd) << 7) | opcode) >>> 0;
}

export function iType(opcode: number, funct3: number, rd: number, rs1: number, imm: number): number {
  signed(imm, 12, "I-immediate");
  return (((imm & 0xfff) << 20) | (reg(rs1) << 15) | (funct3 << 12) | (reg(rd) << 7) | opcode) >>> 0;
}

export function sType(opcode: number, funct3: number, rs1: number, rs2: number, imm: number): number {
  signed(imm, 12, "S-immediate");
  return ((((imm >> 5) & 0x7f) << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (funct3 << 12) |
    ((imm & 0x1f) << 7) | opcode) >>> 0;
}

export function bType(funct3: number, rs1: number, rs2: number, offset: number): number {
  signed(even(offset, "branch offset"), 13, "branch offset");
  return ((((offset >> 12) & 1) << 31) | (((offset >> 5) & 0x3f) << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) |
    (funct3 << 12) | (((offset >> 1) & 0xf) << 8) | (((offset >> 11) & 1) << 7) | 0x63) >>> 0;
}

/** `imm20` is the 20-bit field (bits 31:12 of the result), as in `lui rd, imm20`. */
export function uType(opcode: number, rd: number, imm20: number): number {
  unsigned(imm20, 20, "U-immediate");
  return ((imm20 << 12) | (reg(rd) << 7) | opcode) >>> 0;
}

export function jType(rd: number, offset: number): number {
  signed(even(offset, "jump offset"), 21, "jump offset");
  return ((((offset >> 20) & 1) << 31) | (((offset >> 1) & 0x3ff) << 21) | (((offset >> 11) & 1) << 20) |
    (((offset >> 12) & 0xff) << 12) | (reg(rd) << 7) | 0x6f) >>> 0;
}

// --- RV64I ------------------------------------------------------------------------------------

const op = (f3: number, f7: number) => (rd: number, rs1: number, rs2: number) => rType(0x33, f3, f7, rd, rs1, rs2);
const op32 = (f3: number, f7: number) => (rd: number, rs1: number, rs2: number) => rType(0x3b, f3, f7, rd, rs1, rs2);
const opImm = (f3: number) => (rd: number, rs1: number, imm: number) => iType(0x13, f3, rd, rs1, imm);
const load = (f3: number) => (rd: number, offset: number, rs1: number) => iType(0x03, f3, rd, rs1, offset);
const store = (f3: number) => (rs2: number, offset: number, rs1: number) => sType(0x23, f3, rs1, rs2, offset);
const branch = (f3: number) => (rs1: number, rs2: number, offset: number) => bType(f3, rs1, rs2, offset);
const shift = (opcode: number, f3: number, high: number, bits: number) => (rd: number, rs1: number, shamt: number) =>
  (iType(opcode, f3, rd, rs1, 0) | (high << 25) | (unsigned(shamt, bits, "shift amount") << 20)) >>> 0;

export const lui = (rd: number, imm20: number) => uType(0x37, rd, imm20);
export const auipc = (rd: number, imm20: number) => uType(0x17, rd, imm20);
export const jal = (rd: number, offset: number) => jType(rd, offset);
export const jalr = (rd: number, rs1: number, offset = 0) => iType(0x67, 0, rd, rs1, offset);
export const beq = branch(0);
export const bne = branch(1);
export const blt = branch(4);
export const bge = branch(5);
export const bltu = branch(6);
export const bgeu = branch(7);
export const lb = load(0);
export const lh = load(1);
export const lw = load(2);
export const ld = load(3);
export const lbu = load(4);
export const lhu = load(5);
export const lwu = load(6);
export const sb = store(0);
export const sh = store(1);
export const sw = store(2);
export const sd = store(3);
export const addi = opImm(0);
export const slti = opImm(2);
export const sltiu = opImm(3);
export const xori = opImm(4);
export const ori = opImm(6);
export const andi = opImm(7);
export const slli = shift(0x13, 1, 0, 6);
export const srli = shift(0x13, 5, 0, 6);
export const srai = shift(0x13, 5, 0x20, 6);
export const add = op(0, 0);
export const sub = op(0, 0x20);
export const sll = op(1, 0);
export const slt = op(2, 0);
export const sltu = op(3, 0);
export const xor = op(4, 0);
export const srl = op(5, 0);
export const sra = op(5, 0x20);
export const or = op(6, 0);
export const and = op(7, 0);
export const addiw = (rd: number, rs1: number, imm: number) => iType(0x1b, 0, rd, rs1, imm);
export const slliw = shift(0x1b, 1, 0, 5);
export const srliw = shift(0x1b, 5, 0, 5);
export const sraiw = shift(0x1b, 5, 0x20, 5);
export const addw = op32(0, 0);
export const subw = op32(0, 0x20);
export const sllw = op32(1, 0);
export const srlw = op32(5, 0);
export const sraw = op32(5, 0x20);
/** fence with pred/succ as 4-bit IORW masks (default: rw, rw). */
export const fence = (pred = 0b0011, succ = 0b0011) => ((pred << 24) | (succ << 20) | 0x0f) >>> 0;
export const fence_i = () => 0x0000100f;
export const ecall = () => 0x00000073;
export const ebreak = () => 0x00100073;
export const mret = () => 0x30200073;
export const sret = () => 0x10200073;
export const wfi = () => 0x10500073;
export const nop = () => addi(0, 0, 0);
export const mv = (rd: number, rs: number) => addi(rd, rs, 0);

// --- Zicsr ------------------------------------------------------------------------------------

const csrOp = (f3: number) => (rd: number, csr: number, rs1OrZimm: number) =>
  ((unsigned(csr, 12, "CSR number") << 20) | (unsigned(rs1OrZimm, 5, "rs1/zimm") << 15) | (f3 << 12) |
    (reg(rd) << 7) | 0x73) >>> 0;
export const csrrw = csrOp(1);
export const csrrs = csrOp(2);
export const csrrc = csrOp(3);
export const csrrwi = csrOp(5);
export const csrrsi = csrOp(6);
export const csrrci = csrOp(7);
export const csrr = (rd: number, csr: number) => csrrs(rd, csr, 0);
export const csrw = (csr: number, rs1: number) => csrrw(0, csr, rs1);

// --- RV64M ------------------------------------------------------------------------------------

export const mul = op(0, 1);
export const mulh = op(1, 1);
export const mulhsu = op(2, 1);
export const mulhu = op(3, 1);
export const div = op(4, 1);
export const divu = op(5, 1);
export const rem = op(6, 1);
export const remu = op(7, 1);
export const mulw = op32(0, 1);
export const divw = op32(4, 1);
export const divuw = op32(5, 1);
export const remw = op32(6, 1);
export const remuw = op32(7, 1);

// --- RV64A ------------------------------------------------------------------------------------

export interface Ordering {
  aq?: boolean;
  rl?: boolean;
}

const amo = (funct5: number, f3: number) => (rd: number, rs2: number, rs1: number, order: Ordering = {}) =>
  rType(0x2f, f3, (funct5 << 2) | (order.aq ? 2 : 0) | (order.rl ? 1 : 0), rd, rs1, rs2);

export const lr_w = (rd: number, rs1: number, order: Ordering = {}) => amo(0b00010, 2)(rd, 0, rs1, order);
export const lr_d = (rd: number, rs1: number, order: Ordering = {}) => amo(0b00010, 3)(rd, 0, rs1, order);
export const sc_w = amo(0b00011, 2);
export const sc_d = amo(0b00011, 3);
export const amoswap_w = amo(0b00001, 2);
export const amoswap_d = amo(0b00001, 3);
export const amoadd_w = amo(0b00000, 2);
export const amoadd_d = amo(0b00000, 3);
export const amoxor_w = amo(0b00100, 2);
export const amoxor_d = amo(0b00100, 3);
export const amoand_w = amo(0b01100, 2);
export const amoand_d = amo(0b01100, 3);
export const amoor_w = amo(0b01000, 2);
export const amoor_d = amo(0b01000, 3);
export const amomin_w = amo(0b10000, 2);
export const amomin_d = amo(0b10000, 3);
export const amomax_w = amo(0b10100, 2);
export const amomax_d = amo(0b10100, 3);
export const amominu_w = amo(0b11000, 2);
export const amominu_d = amo(0b11000, 3);
export const amomaxu_w = amo(0b11100, 2);
export const amomaxu_d = amo(0b11100, 3);

// --- constants --------------------------------------------------------------------------------

const sext12 = (v: bigint) => BigInt.asIntN(12, v);

/**
 * The instructions that put a 64-bit constant in `rd` (the algorithm of LLVM's RISCVMatInt:
 * lui/addiw for 32-bit values, otherwise the upper part recursively, then slli and addi).
 */
export function li(rd: number, value: bigint | number): number[] {
  const v = BigInt.asIntN(64, BigInt(value));
  if (v >= -(1n << 31n) && v < 1n << 31n) {
    const lo = Number(sext12(v));
    const hi20 = Number(((v + 0x800n) >> 12n) & 0xfffffn);
    if (hi20 === 0) return [addi(rd, 0, lo)];
    return lo === 0 ? [lui(rd, hi20)] : [lui(rd, hi20), addiw(rd, rd, lo)];
  }
  const lo = sext12(v);
  let hi = (v - lo) >> 12n;
  let shamt = 12;
  while ((hi & 1n) === 0n) {
    hi >>= 1n;
    shamt++;
  }
  const out = [...li(rd, hi), slli(rd, rd, shamt)];
  if (lo !== 0n) out.push(addi(rd, rd, Number(lo)));
  return out;
}

// --- programs with labels ---------------------------------------------------------------------

type Piece =
  | { kind: "bytes"; data: Uint8Array }
  | { kind: "fixup"; size: 4 | 8; resolve: (at: bigint) => number[] };

/**
 * A program under construction: instructions, data and labels, laid out from `base`.
 * Registers t5 and t6 are scratch for the helpers (exit, trap handlers, setTrapVector).
 */
export class Program {
  private readonly pieces: Piece[] = [];
  private size = 0;
  private readonly labels = new Map<string, bigint>();

  constructor(readonly base: bigint = RAM_BASE) {}

  /** Address of the next byte emitted. */
  get here(): bigint {
    return this.base + BigInt(this.size);
  }

  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.labels.set(name, this.here);
    return this;
  }

  /** Address of a label (only once it is defined). */
  address(name: string): bigint {
    const a = this.labels.get(name);
    if (a === undefined) throw new Error(`undefined label ${name}`);
    return a;
  }

  /** Emit 32-bit instruction words (arrays, e.g. from li(), are flattened). */
  emit(...words: (number | number[])[]): this {
    for (const w of words.flat()) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, w >>> 0, true);
      this.push({ kind: "bytes", data: b });
    }
    return this;
  }

  /** Emit 16-bit parcels (compressed instructions). */
  half(...halves: number[]): this {
    for (const h of halves) {
      const b = new Uint8Array(2);
      new DataView(b.buffer).setUint16(0, unsigned(h, 16, "halfword"), true);
      this.push({ kind: "bytes", data: b });
    }
    return this;
  }

  dword(...values: bigint[]): this {
    for (const v of values) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
      this.push({ kind: "bytes", data: b });
    }
    return this;
  }

  space(bytes: number, fill = 0): this {
    this.push({ kind: "bytes", data: new Uint8Array(bytes).fill(fill) });
    return this;
  }

  align(n: number): this {
    const pad = (n - (this.size % n)) % n;
    return pad ? this.space(pad) : this;
  }

  private push(piece: Piece): void {
    this.pieces.push(piece);
    this.size += piece.kind === "bytes" ? piece.data.length : piece.size;
  }

  private offsetTo(label: string, at: bigint): number {
    return Number(this.address(label) - at);
  }

  li(rd: number, value: bigint | number): this {
    return this.emit(li(rd, value));
  }

  /** Conditional branch to a label: `p.branch(beq, a0, a1, "done")`. */
  branch(kind: (rs1: number, rs2: number, offset: number) => number, rs1: number, rs2: number, label: string): this {
    this.push({ kind: "fixup", size: 4, resolve: (at) => [kind(rs1, rs2, this.offsetTo(label, at))] });
    return this;
  }

  jal(rd: number, label: string): this {
    this.push({ kind: "fixup", size: 4, resolve: (at) => [jal(rd, this.offsetTo(label, at))] });
    return this;
  }

  j(label: string): this {
    return this.jal(0, label);
  }

  /** rd = address of label (auipc + addi, pc-relative like GNU as). */
  la(rd: number, label: string): this {
    this.push({
      kind: "fixup",
      size: 8,
      resolve: (at) => {
        const offset = BigInt(this.offsetTo(label, at));
        const lo = Number(sext12(offset));
        const hi = Number(((offset - BigInt(lo)) >> 12n) & 0xfffffn);
        return [auipc(rd, hi), addi(rd, rd, lo)];
      },
    });
    return this;
  }

  /** Stop the machine with `code` through the sifive_test finisher; clobbers t5, t6. */
  exit(code: number): this {
    const value = code === 0 ? 0x5555 : ((code << 16) | 0x3333) >>> 0;
    this.li(R.t6, FINISHER).li(R.t5, value).emit(sw(R.t5, 0, R.t6));
    const spin = `$spin${this.size}`;
    return this.label(spin).j(spin);
  }

  /** mtvec = label; clobbers t6. */
  setTrapVector(label: string): this {
    return this.la(R.t6, label).emit(csrw(CSR.mtvec, R.t6));
  }

  /**
   * A trap handler at `label` that appends (mcause, mtval, mepc) to a log at the address in s10
   * (advancing s10 by 24), counts traps in s11, skips the trapping instruction (2 or 4 bytes,
   * read from memory at mepc: not for instruction fetch faults) and returns with mret.
   * Clobbers t5, t6.
   */
  loggingTrapHandler(label: string): this {
    const skip = `${label}$long`;
    return this.label(label).emit(
      csrr(R.t5, CSR.mcause), sd(R.t5, 0, R.s10),
      csrr(R.t5, CSR.mtval), sd(R.t5, 8, R.s10),
      csrr(R.t5, CSR.mepc), sd(R.t5, 16, R.s10),
      addi(R.s10, R.s10, 24), addi(R.s11, R.s11, 1),
      lhu(R.t6, 0, R.t5), andi(R.t6, R.t6, 3), addi(R.t5, R.t5, 2), addi(R.t6, R.t6, -3),
    ).branch(bne, R.t6, 0, skip).emit(addi(R.t5, R.t5, 2)).label(skip).emit(csrw(CSR.mepc, R.t5), mret());
  }

  /** The program's bytes. */
  code(): Uint8Array {
    const out = new Uint8Array(this.size);
    const view = new DataView(out.buffer);
    let offset = 0;
    for (const piece of this.pieces) {
      if (piece.kind === "bytes") {
        out.set(piece.data, offset);
        offset += piece.data.length;
      } else {
        const words = piece.resolve(this.base + BigInt(offset));
        if (words.length * 4 !== piece.size) throw new Error("fixup size mismatch");
        for (const w of words) {
          view.setUint32(offset, w >>> 0, true);
          offset += 4;
        }
      }
    }
    return out;
  }

  /** A runnable ELF of this program, entry at its base. */
  elf(options: Omit<ElfOptions, "base" | "entry"> = {}): Uint8Array {
    return buildElf(this.code(), { ...options, base: this.base, entry: this.base });
  }
}

// --- ELF --------------------------------------------------------------------------------------

export interface ElfOptions {
  /** Load (and physical) address of the code; default 0x8000_0000. */
  base?: bigint;
  /** Entry point; default = base. */
  entry?: bigint;
  /** p_memsz, when larger than the code (zero-filled like .bss). */
  memSize?: number;
  /** e_machine; default 243 (EM_RISCV). */
  machine?: number;
}

const EHDR = 64;
const PHDR = 56;
const CODE_OFFSET = 128;

/** A minimal static ELF64 little-endian executable: one PT_LOAD (RWX), no sections. */
export function buildElf(code: Uint8Array, options: ElfOptions = {}): Uint8Array {
  const base = options.base ?? RAM_BASE;
  const out = new Uint8Array(CODE_OFFSET + code.length);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2 /* ELFCLASS64 */, 1 /* LSB */, 1 /* EV_CURRENT */], 0);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, options.machine ?? 243, true);
  v.setUint32(20, 1, true); // e_version
  v.setBigUint64(24, options.entry ?? base, true);
  v.setBigUint64(32, BigInt(EHDR), true); // e_phoff
  v.setBigUint64(40, 0n, true); // e_shoff
  v.setUint32(48, 0x1, true); // e_flags: EF_RISCV_RVC, soft-float ABI
  v.setUint16(52, EHDR, true);
  v.setUint16(54, PHDR, true);
  v.setUint16(56, 1, true); // e_phnum
  v.setUint16(58, 64, true); // e_shentsize
  v.setUint16(60, 0, true);
  v.setUint16(62, 0, true);
  const ph = EHDR;
  v.setUint32(ph, 1, true); // PT_LOAD
  v.setUint32(ph + 4, 7, true); // RWX
  v.setBigUint64(ph + 8, BigInt(CODE_OFFSET), true);
  v.setBigUint64(ph + 16, base, true);
  v.setBigUint64(ph + 24, base, true);
  v.setBigUint64(ph + 32, BigInt(code.length), true);
  v.setBigUint64(ph + 40, BigInt(Math.max(code.length, options.memSize ?? 0)), true);
  v.setBigUint64(ph + 48, 16n, true);
  out.set(code, CODE_OFFSET);
  return out;
}
