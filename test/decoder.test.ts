/**
 * The decoder (vcpu/decoder.ts) against the instruction table and against GNU as.
 *
 * Reference encodings were produced once, offline, with binutils 2.40
 * (`riscv64-unknown-elf-as -march=rv64imac_zicsr_zifencei`, `.option norelax`, then
 * `riscv64-unknown-elf-objdump -d -M no-aliases`): each RVC form was assembled with `.option rvc`
 * and its 32-bit equivalent with `.option norvc`. They are hard-coded here so that the test needs
 * no cross toolchain.
 */
import test from "ava";
import { decode, decode32, expandCompressed } from "../vcpu/decoder.ts";
import { ILLEGAL_OP, INSTRUCTIONS, OP_NUMBER } from "../vcpu/isa.ts";
import { SEMANTICS } from "../vcpu/semantics.ts";

const hex = (n: number) => "0x" + (n >>> 0).toString(16).padStart(8, "0");

/** Deterministic xorshift32, for filling don't-care bits. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

// --- the table ---------------------------------------------------------------------------------

test("every row of INSTRUCTIONS decodes its own match to itself", (t) => {
  for (const [i, row] of INSTRUCTIONS.entries()) {
    const d = decode32(row.match);
    t.is(d.name, row.name, `${row.name} match ${hex(row.match)}`);
    t.is(d.op, i + 1, `${row.name}: op number`);
    t.is(d.length, 4);
    t.is(d.raw, row.match >>> 0);
    t.is(decode(row.match).name, row.name, `${row.name} through decode()`);
    t.is(OP_NUMBER.get(row.name), i + 1);
  }
});

test("rows stay themselves with random don't-care bits", (t) => {
  const next = prng(12345);
  for (const row of INSTRUCTIONS) {
    for (let k = 0; k < 64; k++) {
      const word = ((row.match & row.mask) | (next() & ~row.mask)) >>> 0;
      const d = decode32(word);
      if (d.name !== row.name) {
        t.fail(`${row.name}: ${hex(word)} decoded as ${d.name}`);
        return;
      }
    }
  }
  t.pass();
});

test("the table is unambiguous, 32-bit, and every row has semantics", (t) => {
  const names = new Set<string>();
  for (const [i, a] of INSTRUCTIONS.entries()) {
    t.false(names.has(a.name), `duplicate name ${a.name}`);
    names.add(a.name);
    t.is(a.match & 3, 3, `${a.name}: low bits 11`);
    t.is((a.match & ~a.mask) >>> 0, 0, `${a.name}: match has bits outside its mask`);
    t.truthy(SEMANTICS[a.name], `${a.name} has semantics`);
    for (const b of INSTRUCTIONS.slice(i + 1)) {
      // Some word matches both rows iff they agree on every bit both masks fix.
      const conflict = ((a.match ^ b.match) & a.mask & b.mask) >>> 0;
      t.not(conflict, 0, `${a.name} and ${b.name} overlap`);
    }
  }
  t.is(Object.keys(SEMANTICS).length, INSTRUCTIONS.length, "no semantics without a row");
  // RV64I (incl. fence.i, ecall/ebreak) + 4 privileged + 6 Zicsr + 13 M + 22 A.
  for (const required of ["lui", "jalr", "lwu", "sraiw", "sraw", "fence.i", "wfi", "sfence.vma", "csrrci", "remuw", "lr.w", "sc.d", "amomaxu.d"]) {
    t.true(names.has(required), required);
  }
});

// --- field and immediate extraction --------------------------------------------------------------

interface Fields {
  name: string;
  rd?: number;
  rs1?: number;
  rs2?: number;
  imm?: number;
}

/** [word from GNU as, its source, expected fields]. */
const FIELD_CASES: [number, string, Fields][] = [
  // R
  [0x00208fb3, "add t6, ra, sp", { name: "add", rd: 31, rs1: 1, rs2: 2, imm: 0 }],
  [0x40c58533, "sub a0, a1, a2", { name: "sub", rd: 10, rs1: 11, rs2: 12 }],
  [0x03df1fb3, "mulh t6, t5, t4", { name: "mulh", rd: 31, rs1: 30, rs2: 29 }],
  [0x02c5f53b, "remuw a0, a1, a2", { name: "remuw", rd: 10, rs1: 11, rs2: 12 }],
  [0x07eeafaf, "amoadd.w.aqrl t6, t5, (t4)", { name: "amoadd.w", rd: 31, rs1: 29, rs2: 30 }],
  [0x1005b52f, "lr.d a0, (a1)", { name: "lr.d", rd: 10, rs1: 11, rs2: 0 }],
  [0x140f2faf, "lr.w.aq t6, (t5)", { name: "lr.w", rd: 31, rs1: 30 }],
  [0x1ab6252f, "sc.w.rl a0, a1, (a2)", { name: "sc.w", rd: 10, rs1: 12, rs2: 11 }],
  [0x12b50073, "sfence.vma a0, a1", { name: "sfence.vma", rs1: 10, rs2: 11 }],
  // I: extremes of the 12-bit immediate
  [0x80008f93, "addi t6, ra, -2048", { name: "addi", rd: 31, rs1: 1, imm: -2048 }],
  [0x7ff50513, "addi a0, a0, 2047", { name: "addi", rd: 10, rs1: 10, imm: 2047 }],
  [0xfff00013, "addi x0, x0, -1", { name: "addi", rd: 0, rs1: 0, imm: -1 }],
  [0xfff5b513, "sltiu a0, a1, -1", { name: "sltiu", rd: 10, rs1: 11, imm: -1 }],
  [0xf005f513, "andi a0, a1, -256", { name: "andi", imm: -256 }],
  [0x80043f83, "ld t6, -2048(s0)", { name: "ld", rd: 31, rs1: 8, imm: -2048 }],
  [0x7ff5b503, "ld a0, 2047(a1)", { name: "ld", rd: 10, rs1: 11, imm: 2047 }],
  [0xfff64583, "lbu a1, -1(a2)", { name: "lbu", rd: 11, rs1: 12, imm: -1 }],
  [0x800f80e7, "jalr ra, -2048(t6)", { name: "jalr", rd: 1, rs1: 31, imm: -2048 }],
  [0x7ff50067, "jalr x0, 2047(a0)", { name: "jalr", rd: 0, rs1: 10, imm: 2047 }],
  [0xfff5851b, "addiw a0, a1, -1", { name: "addiw", rd: 10, rs1: 11, imm: -1 }],
  // S
  [0x81f0b023, "sd t6, -2048(ra)", { name: "sd", rs1: 1, rs2: 31, imm: -2048 }],
  [0x7ea13fa3, "sd a0, 2047(sp)", { name: "sd", rs1: 2, rs2: 10, imm: 2047 }],
  [0xfe0d8fa3, "sb x0, -1(s11)", { name: "sb", rs1: 27, rs2: 0, imm: -1 }],
  [0x00a5a623, "sw a0, 12(a1)", { name: "sw", rs1: 11, rs2: 10, imm: 12 }],
  // B: the 13-bit offset at both ends and ±2
  [0x81f08063, "beq ra, t6, .-4096", { name: "beq", rs1: 1, rs2: 31, imm: -4096 }],
  [0x7eb51fe3, "bne a0, a1, .+4094", { name: "bne", rs1: 10, rs2: 11, imm: 4094 }],
  [0xffdf4fe3, "blt t5, t4, .-2", { name: "blt", rs1: 30, rs2: 29, imm: -2 }],
  [0x01397163, "bgeu s2, s3, .+2", { name: "bgeu", rs1: 18, rs2: 19, imm: 2 }],
  // U: the immediate is the value added (bits 31:12), sign-extended from bit 31
  [0xffffffb7, "lui t6, 0xfffff", { name: "lui", rd: 31, imm: -4096 }],
  [0x80000537, "lui a0, 0x80000", { name: "lui", rd: 10, imm: -0x80000000 }],
  [0x7ffff537, "lui a0, 0x7ffff", { name: "lui", rd: 10, imm: 0x7ffff000 }],
  [0xfffff097, "auipc ra, 0xfffff", { name: "auipc", rd: 1, imm: -4096 }],
  // J: the 21-bit offset at both ends and -2
  [0x800000ef, "jal ra, .-0x100000", { name: "jal", rd: 1, imm: -0x100000 }],
  [0x7ffff06f, "jal x0, .+0xffffe", { name: "jal", rd: 0, imm: 0xffffe }],
  [0xffffffef, "jal t6, .-2", { name: "jal", rd: 31, imm: -2 }],
  // shifts: imm = shamt (6 bits; 5 for the W forms), without the funct6/funct7 bits
  [0x03f59513, "slli a0, a1, 63", { name: "slli", rd: 10, rs1: 11, imm: 63 }],
  [0x0200df93, "srli t6, ra, 32", { name: "srli", rd: 31, rs1: 1, imm: 32 }],
  [0x43f55513, "srai a0, a0, 63", { name: "srai", rd: 10, rs1: 10, imm: 63 }],
  [0x01f5951b, "slliw a0, a1, 31", { name: "slliw", imm: 31 }],
  [0x41ffdf9b, "sraiw t6, t6, 31", { name: "sraiw", rd: 31, rs1: 31, imm: 31 }],
  [0x0115d51b, "srliw a0, a1, 17", { name: "srliw", imm: 17 }],
  // CSR: imm = CSR number (12 bits, not sign-extended); rs1 = register or zimm
  [0xfff09ff3, "csrrw t6, 0xfff, ra", { name: "csrrw", rd: 31, rs1: 1, imm: 0xfff }],
  [0xf1402573, "csrrs a0, mhartid, x0", { name: "csrrs", rd: 10, rs1: 0, imm: 0xf14 }],
  [0x300ff073, "csrrci x0, mstatus, 31", { name: "csrrci", rd: 0, rs1: 31, imm: 0x300 }],
  [0x3408d573, "csrrwi a0, mscratch, 17", { name: "csrrwi", rd: 10, rs1: 17, imm: 0x340 }],
  [0x30446573, "csrrsi a0, mie, 8", { name: "csrrsi", rd: 10, rs1: 8, imm: 0x304 }],
  // no operands
  [0x00000073, "ecall", { name: "ecall" }],
  [0x00100073, "ebreak", { name: "ebreak" }],
  [0x30200073, "mret", { name: "mret" }],
  [0x10200073, "sret", { name: "sret" }],
  [0x10500073, "wfi", { name: "wfi" }],
  [0x0ff0000f, "fence", { name: "fence" }],
  [0x0310000f, "fence rw, w", { name: "fence" }],
  [0x0000100f, "fence.i", { name: "fence.i" }],
];

test("fields and immediates of every format, with negative and extreme immediates", (t) => {
  for (const [word, source, want] of FIELD_CASES) {
    const d = decode(word);
    t.is(d.length, 4, source);
    t.is(d.raw, word >>> 0, source);
    for (const key of ["name", "rd", "rs1", "rs2", "imm"] as const) {
      if (want[key] !== undefined) t.is(d[key], want[key], `${source} (${hex(word)}): ${key}`);
    }
  }
});

// --- RVC expansion -------------------------------------------------------------------------------

/** [16-bit encoding, 32-bit equivalent, source], both from GNU as. */
const RVC: [number, number, string][] = [
  [0x0040, 0x00410413, "c.addi4spn s0, sp, 4"],
  [0x1ffc, 0x3fc10793, "c.addi4spn a5, sp, 1020"],
  [0x0428, 0x20810513, "c.addi4spn a0, sp, 520"],
  [0x1024, 0x02810493, "c.addi4spn s1, sp, 40"],
  [0x4080, 0x0004a403, "c.lw s0, 0(s1)"],
  [0x5f7c, 0x07c72783, "c.lw a5, 124(a4)"],
  [0x4028, 0x04042503, "c.lw a0, 64(s0)"],
  [0x4144, 0x00452483, "c.lw s1, 4(a0)"],
  [0x6080, 0x0004b403, "c.ld s0, 0(s1)"],
  [0x2404, 0x00843487, "c.fld fs1, 8(s0)"],
  [0xbfe4, 0x0e97bc27, "c.fsd fs1, 248(a5)"],
  [0x20a2, 0x00813087, "c.fldsp ft1, 8(sp)"],
  [0x307e, 0x1f813007, "c.fldsp ft0, 504(sp)"],
  [0xa406, 0x00113427, "c.fsdsp ft1, 8(sp)"],
  [0xbffe, 0x1ff13c27, "c.fsdsp ft11, 504(sp)"],
  [0x7f7c, 0x0f873783, "c.ld a5, 248(a4)"],
  [0x61c8, 0x0805b503, "c.ld a0, 128(a1)"],
  [0x660c, 0x00863583, "c.ld a1, 8(a2)"],
  [0xc080, 0x0084a023, "c.sw s0, 0(s1)"],
  [0xdf7c, 0x06f72e23, "c.sw a5, 124(a4)"],
  [0xc2b0, 0x04c6a023, "c.sw a2, 64(a3)"],
  [0xc14c, 0x00b52223, "c.sw a1, 4(a0)"],
  [0xe080, 0x0084b023, "c.sd s0, 0(s1)"],
  [0xff7c, 0x0ef73c23, "c.sd a5, 248(a4)"],
  [0xe1c8, 0x08a5b023, "c.sd a0, 128(a1)"],
  [0xe614, 0x00d63423, "c.sd a3, 8(a2)"],
  [0x0001, 0x00000013, "c.nop"],
  [0x1501, 0xfe050513, "c.addi a0, -32"],
  [0x00fd, 0x01f08093, "c.addi ra, 31"],
  [0x0f85, 0x001f8f93, "c.addi t6, 1"],
  [0x117d, 0xfff10113, "c.addi sp, -1"],
  [0x3501, 0xfe05051b, "c.addiw a0, -32"],
  [0x2ffd, 0x01ff8f9b, "c.addiw t6, 31"],
  [0x2081, 0x0000809b, "c.addiw ra, 0"],
  [0x5501, 0xfe000513, "c.li a0, -32"],
  [0x4ffd, 0x01f00f93, "c.li t6, 31"],
  [0x4081, 0x00000093, "c.li ra, 0"],
  [0x7101, 0xe0010113, "c.addi16sp sp, -512"],
  [0x617d, 0x1f010113, "c.addi16sp sp, 496"],
  [0x6141, 0x01010113, "c.addi16sp sp, 16"],
  [0x717d, 0xff010113, "c.addi16sp sp, -16"],
  [0x6161, 0x05010113, "c.addi16sp sp, 80"],
  [0x6505, 0x00001537, "c.lui a0, 1"],
  [0x6ffd, 0x0001ffb7, "c.lui t6, 0x1f"],
  [0x7081, 0xfffe00b7, "c.lui ra, 0xfffe0"],
  [0x747d, 0xfffff437, "c.lui s0, 0xfffff"],
  [0x61c1, 0x000101b7, "c.lui gp, 0x10"],
  [0x8105, 0x00155513, "c.srli a0, 1"],
  [0x907d, 0x03f45413, "c.srli s0, 63"],
  [0x9381, 0x0207d793, "c.srli a5, 32"],
  [0x8505, 0x40155513, "c.srai a0, 1"],
  [0x94fd, 0x43f4d493, "c.srai s1, 63"],
  [0x9781, 0x4207d793, "c.srai a5, 32"],
  [0x9901, 0xfe057513, "c.andi a0, -32"],
  [0x887d, 0x01f47413, "c.andi s0, 31"],
  [0x8b81, 0x0007f793, "c.andi a5, 0"],
  [0x8c1d, 0x40f40433, "c.sub s0, a5"],
  [0x8d2d, 0x00b54533, "c.xor a0, a1"],
  [0x8fc1, 0x0087e7b3, "c.or a5, s0"],
  [0x8cf9, 0x00e4f4b3, "c.and s1, a4"],
  [0x9d1d, 0x40f5053b, "c.subw a0, a5"],
  [0x9c25, 0x0094043b, "c.addw s0, s1"],
  [0x9fa9, 0x00a787bb, "c.addw a5, a0"],
  [0xb001, 0x801ff06f, "c.j .-2048"],
  [0xaffd, 0x7fe0006f, "c.j .+2046"],
  [0xa009, 0x0020006f, "c.j .+2"],
  [0xbffd, 0xfffff06f, "c.j .-2"],
  [0xab91, 0x5540006f, "c.j .+0x554"],
  [0xa46d, 0x2aa0006f, "c.j .+0x2aa"],
  [0xb46d, 0xaabff06f, "c.j .-0x556"],
  [0xcc7d, 0x0e040f63, "c.beqz s0, .+254"],
  [0xd381, 0xf00780e3, "c.beqz a5, .-256"],
  [0xc64d, 0x0a060563, "c.beqz a2, .+0xaa"],
  [0xe109, 0x00051163, "c.bnez a0, .+2"],
  [0xfcfd, 0xfe049fe3, "c.bnez s1, .-2"],
  [0xfab1, 0xf4069ae3, "c.bnez a3, .-0xac"],
  [0xeb31, 0x04071a63, "c.bnez a4, .+0x54"],
  [0x0506, 0x00151513, "c.slli a0, 1"],
  [0x1ffe, 0x03ff9f93, "c.slli t6, 63"],
  [0x1082, 0x02009093, "c.slli ra, 32"],
  [0x4502, 0x00012503, "c.lwsp a0, 0(sp)"],
  [0x5ffe, 0x0fc12f83, "c.lwsp t6, 252(sp)"],
  [0x4092, 0x00412083, "c.lwsp ra, 4(sp)"],
  [0x440a, 0x08012403, "c.lwsp s0, 128(sp)"],
  [0x5582, 0x02012583, "c.lwsp a1, 32(sp)"],
  [0x6502, 0x00013503, "c.ldsp a0, 0(sp)"],
  [0x7ffe, 0x1f813f83, "c.ldsp t6, 504(sp)"],
  [0x60a2, 0x00813083, "c.ldsp ra, 8(sp)"],
  [0x6412, 0x10013403, "c.ldsp s0, 256(sp)"],
  [0x7102, 0x02013103, "c.ldsp sp, 32(sp)"],
  [0x8082, 0x00008067, "c.jr ra"],
  [0x8f82, 0x000f8067, "c.jr t6"],
  [0x852e, 0x00b00533, "c.mv a0, a1"],
  [0x8f86, 0x00100fb3, "c.mv t6, ra"],
  [0x9002, 0x00100073, "c.ebreak"],
  [0x9502, 0x000500e7, "c.jalr a0"],
  [0x9f82, 0x000f80e7, "c.jalr t6"],
  [0x952e, 0x00b50533, "c.add a0, a1"],
  [0x9f86, 0x001f8fb3, "c.add t6, ra"],
  [0xc02a, 0x00a12023, "c.swsp a0, 0(sp)"],
  [0xdffe, 0x0ff12e23, "c.swsp t6, 252(sp)"],
  [0xc206, 0x00112223, "c.swsp ra, 4(sp)"],
  [0xc122, 0x08812023, "c.swsp s0, 128(sp)"],
  [0xe02a, 0x00a13023, "c.sdsp a0, 0(sp)"],
  [0xfffe, 0x1ff13c23, "c.sdsp t6, 504(sp)"],
  [0xe406, 0x00113423, "c.sdsp ra, 8(sp)"],
  [0xe222, 0x10813023, "c.sdsp s0, 256(sp)"],
];

/** HINT encodings (no trap on QEMU; expansion worked out by hand from the spec's tables). */
const HINTS: [number, number, string][] = [
  [0x4015, 0x00500013, "c.li x0, 5 = addi x0, x0, 5"],
  [0x0015, 0x00500013, "c.nop 5 = addi x0, x0, 5"],
  [0x0502, 0x00051513, "c.slli a0, 0 = slli a0, a0, 0"],
  [0x0006, 0x00101013, "c.slli x0, 1 = slli x0, x0, 1"],
  [0x8101, 0x00055513, "c.srli a0, 0 = srli a0, a0, 0"],
  [0x802e, 0x00b00033, "c.mv x0, a1 = add x0, x0, a1"],
  [0x902e, 0x00b00033, "c.add x0, a1 = add x0, x0, a1"],
  [0x6005, 0x00001037, "c.lui x0, 1 = lui x0, 1"],
  [0x0501, 0x00050513, "c.addi a0, 0 = addi a0, a0, 0"],
];

test("every RV64C form expands to the instruction GNU as gives for it", (t) => {
  for (const [c, w, source] of RVC) {
    t.is(hex(expandCompressed(c)), hex(w), `${source} (${c.toString(16)})`);
    const d = decode(c);
    const e = decode32(w);
    t.not(d.op, ILLEGAL_OP, source);
    t.is(d.length, 2, source);
    t.is(d.raw, c, source);
    t.deepEqual([d.name, d.rd, d.rs1, d.rs2, d.imm], [e.name, e.rd, e.rs1, e.rs2, e.imm], source);
  }
  // Every RV64C mnemonic (RV64DC's too) is covered.
  const covered = new Set(RVC.map(([, , s]) => s.split(" ")[0]!));
  for (const m of [
    "c.addi4spn", "c.lw", "c.ld", "c.sw", "c.sd", "c.nop", "c.addi", "c.addiw", "c.li", "c.addi16sp", "c.lui",
    "c.srli", "c.srai", "c.andi", "c.sub", "c.xor", "c.or", "c.and", "c.subw", "c.addw", "c.j", "c.beqz", "c.bnez",
    "c.slli", "c.lwsp", "c.ldsp", "c.jr", "c.mv", "c.ebreak", "c.jalr", "c.add", "c.swsp", "c.sdsp",
    "c.fld", "c.fsd", "c.fldsp", "c.fsdsp",
  ]) {
    t.true(covered.has(m), `${m} covered`);
  }
});

test("RVC HINT encodings expand (they must not trap)", (t) => {
  for (const [c, w, source] of HINTS) {
    t.is(hex(expandCompressed(c)), hex(w), source);
    t.not(decode(c).op, ILLEGAL_OP, source);
  }
});

test("reserved and illegal compressed encodings decode as illegal", (t) => {
  const reserved: [number, string][] = [
    [0x0000, "all-zero parcel (defined illegal)"],
    [0x0004, "c.addi4spn with nzuimm 0"],
    [0x001c, "c.addi4spn a5 with nzuimm 0"],
    [0x6081, "c.lui ra, 0"],
    [0x6281, "c.lui t0, 0"],
    [0x6101, "c.addi16sp with nzimm 0"],
    [0x8002, "c.jr x0"],
    [0x4002, "c.lwsp x0"],
    [0x6002, "c.ldsp x0"],
    [0x2001, "c.addiw x0"],
    [0x9c41, "reserved (funct6 100111, funct2 10)"],
    [0x9c61, "reserved (funct6 100111, funct2 11)"],
    [0x8000, "reserved quadrant 0 funct3 100"],
  ];
  for (const [c, what] of reserved) {
    const d = decode(c);
    t.is(d.op, ILLEGAL_OP, `${what} (0x${c.toString(16)})`);
    t.is(d.name, "illegal", what);
    t.is(d.length, 2, what);
    t.is(d.raw, c, `${what}: raw keeps the 16 bits (it becomes mtval)`);
    t.is(expandCompressed(c), 0, what);
  }
});

test("the upper half of a compressed parcel is ignored", (t) => {
  for (const [c, w, source] of RVC.slice(0, 20)) {
    t.is(decode((0xdead0000 | c) >>> 0).name, decode32(w).name, source);
    t.is(decode((0xdead0000 | c) >>> 0).raw, c, source);
  }
});

test("all 16-bit parcels: expansion is 0 or a legal 32-bit instruction", (t) => {
  let legal = 0;
  for (let c = 0; c < 0x10000; c++) {
    if ((c & 3) === 3) continue;
    const w = expandCompressed(c);
    const d = decode(c);
    t.is(d.length, 2);
    if (w === 0) {
      if (d.op !== ILLEGAL_OP) t.fail(`0x${c.toString(16)}: expansion 0 but decodes as ${d.name}`);
      continue;
    }
    legal++;
    if ((w & 3) !== 3 || decode32(w).op === ILLEGAL_OP || d.op === ILLEGAL_OP) {
      t.fail(`0x${c.toString(16)} expands to ${hex(w)}, which is not a legal instruction`);
    }
  }
  // 24 slots of 2048 parcels; 1 slot is reserved, and a few hundred parcels reserved
  // (nzimm 0, rd x0): a sanity bound that catches "everything illegal".
  t.true(legal > 46000 && legal < 47104, `${legal} legal parcels`);
});

test("illegal 32-bit encodings decode as illegal", (t) => {
  const cases: [number, string][] = [
    [0x0000500b, "custom-0"],
    [0xffffffff, "all ones"],
    [0x0005c507, "flq (no Q)"],
    [0x00a5c027, "fsq (no Q)"],
    [0x06c58553, "fadd.q (no Q)"],
    [0x5a158553, "fsqrt.d with rs2 != 0"],
    [0xe205a553, "fmv.x.d with funct3 010"],
    [0xc2458553, "fcvt.w.d with rs2 00100"],
    [0x06000033, "OP with funct7 0000011"],
    [0x04051513, "slli with funct6 000001"],
    [0x0205151b, "slliw with shamt[5] set"],
    [0x0205551b, "srliw with shamt[5] set"],
    [0x1015b52f, "lr.d with rs2 != 0"],
    [0x0000452f, "AMO with funct3 100"],
    [0x08b6552f, "amoswap with funct3 101"],
    [0x00002063, "branch funct3 010"],
    [0x00007003, "load funct3 111"],
    [0x00004023, "store funct3 100"],
    [0x00001067, "jalr funct3 001"],
    [0x00004073, "SYSTEM funct3 100"],
    [0x00200073, "ecall/ebreak space, imm 2 (uret is gone)"],
    [0x7b200073, "dret (no debug mode)"],
    [0x0000203b, "OP-32 funct3 010"],
    [0x0000101b | (1 << 25), "slliw with funct7 0000001"],
  ];
  for (const [w, what] of cases) {
    const d = decode(w);
    t.is(d.op, ILLEGAL_OP, `${what} (${hex(w)}) decoded as ${d.name}`);
    t.is(d.length, 4, what);
    t.is(d.raw, w >>> 0, what);
  }
});
