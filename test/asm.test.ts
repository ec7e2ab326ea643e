/**
 * The test assembler (test/helpers/asm.ts) itself: its encodings against GNU as (binutils 2.40,
 * hard-coded), li() for awkward constants run on a Machine, and the ELF it writes.
 */
import test from "ava";
import { parseElf } from "../hypervisor/elf.ts";
import * as A from "./helpers/asm.ts";
import { runProgram } from "./helpers/machine.ts";

const { R } = A;
const hex = (n: number) => "0x" + (n >>> 0).toString(16).padStart(8, "0");

/** [GNU as encoding, our encoding, source]. Branch/jump offsets are relative to the instruction. */
const CASES: [number, number, string][] = [
  [0x00208fb3, A.add(R.t6, R.ra, R.sp), "add t6, ra, sp"],
  [0x40c58533, A.sub(R.a0, R.a1, R.a2), "sub a0, a1, a2"],
  [0x80008f93, A.addi(R.t6, R.ra, -2048), "addi t6, ra, -2048"],
  [0x7ff50513, A.addi(R.a0, R.a0, 2047), "addi a0, a0, 2047"],
  [0xffffffb7, A.lui(R.t6, 0xfffff), "lui t6, 0xfffff"],
  [0x80000537, A.lui(R.a0, 0x80000), "lui a0, 0x80000"],
  [0xfffff097, A.auipc(R.ra, 0xfffff), "auipc ra, 0xfffff"],
  [0x80043f83, A.ld(R.t6, -2048, R.s0), "ld t6, -2048(s0)"],
  [0x7ff5b503, A.ld(R.a0, 2047, R.a1), "ld a0, 2047(a1)"],
  [0xfff64583, A.lbu(R.a1, -1, R.a2), "lbu a1, -1(a2)"],
  [0x81f0b023, A.sd(R.t6, -2048, R.ra), "sd t6, -2048(ra)"],
  [0x7ea13fa3, A.sd(R.a0, 2047, R.sp), "sd a0, 2047(sp)"],
  [0xfe0d8fa3, A.sb(0, -1, R.s11), "sb x0, -1(s11)"],
  [0x81f08063, A.beq(R.ra, R.t6, -4096), "beq ra, t6, .-4096"],
  [0x7eb51fe3, A.bne(R.a0, R.a1, 4094), "bne a0, a1, .+4094"],
  [0xffdf4fe3, A.blt(R.t5, R.t4, -2), "blt t5, t4, .-2"],
  [0x01397163, A.bgeu(R.s2, R.s3, 2), "bgeu s2, s3, .+2"],
  [0x00b55463, A.bge(R.a0, R.a1, 8), "bge a0, a1, .+8"],
  [0x00b56463, A.bltu(R.a0, R.a1, 8), "bltu a0, a1, .+8"],
  [0x800000ef, A.jal(R.ra, -0x100000), "jal ra, .-0x100000"],
  [0x7ffff06f, A.jal(0, 0xffffe), "jal x0, .+0xffffe"],
  [0xffffffef, A.jal(R.t6, -2), "jal t6, .-2"],
  [0x800f80e7, A.jalr(R.ra, R.t6, -2048), "jalr ra, -2048(t6)"],
  [0x03f59513, A.slli(R.a0, R.a1, 63), "slli a0, a1, 63"],
  [0x0200df93, A.srli(R.t6, R.ra, 32), "srli t6, ra, 32"],
  [0x43f55513, A.srai(R.a0, R.a0, 63), "srai a0, a0, 63"],
  [0x01f5951b, A.slliw(R.a0, R.a1, 31), "slliw a0, a1, 31"],
  [0x41ffdf9b, A.sraiw(R.t6, R.t6, 31), "sraiw t6, t6, 31"],
  [0x0115d51b, A.srliw(R.a0, R.a1, 17), "srliw a0, a1, 17"],
  [0xfff5851b, A.addiw(R.a0, R.a1, -1), "addiw a0, a1, -1"],
  [0xfff09ff3, A.csrrw(R.t6, 0xfff, R.ra), "csrrw t6, 0xfff, ra"],
  [0xf1402573, A.csrrs(R.a0, A.CSR.mhartid, 0), "csrrs a0, mhartid, x0"],
  [0x300ff073, A.csrrci(0, A.CSR.mstatus, 31), "csrrci x0, mstatus, 31"],
  [0x3408d573, A.csrrwi(R.a0, A.CSR.mscratch, 17), "csrrwi a0, mscratch, 17"],
  [0x3005b573, A.csrrc(R.a0, A.CSR.mstatus, R.a1), "csrrc a0, mstatus, a1"],
  [0x30446573, A.csrrsi(R.a0, A.CSR.mie, 8), "csrrsi a0, mie, 8"],
  [0x02c58533, A.mul(R.a0, R.a1, R.a2), "mul a0, a1, a2"],
  [0x03df1fb3, A.mulh(R.t6, R.t5, R.t4), "mulh t6, t5, t4"],
  [0x02c5a533, A.mulhsu(R.a0, R.a1, R.a2), "mulhsu a0, a1, a2"],
  [0x02c5b533, A.mulhu(R.a0, R.a1, R.a2), "mulhu a0, a1, a2"],
  [0x02c5c533, A.div(R.a0, R.a1, R.a2), "div a0, a1, a2"],
  [0x02c5d533, A.divu(R.a0, R.a1, R.a2), "divu a0, a1, a2"],
  [0x02c5e533, A.rem(R.a0, R.a1, R.a2), "rem a0, a1, a2"],
  [0x02c5f533, A.remu(R.a0, R.a1, R.a2), "remu a0, a1, a2"],
  [0x02c5853b, A.mulw(R.a0, R.a1, R.a2), "mulw a0, a1, a2"],
  [0x02c5c53b, A.divw(R.a0, R.a1, R.a2), "divw a0, a1, a2"],
  [0x02c5d53b, A.divuw(R.a0, R.a1, R.a2), "divuw a0, a1, a2"],
  [0x02c5e53b, A.remw(R.a0, R.a1, R.a2), "remw a0, a1, a2"],
  [0x02c5f53b, A.remuw(R.a0, R.a1, R.a2), "remuw a0, a1, a2"],
  [0x00c5853b, A.addw(R.a0, R.a1, R.a2), "addw a0, a1, a2"],
  [0x40c5853b, A.subw(R.a0, R.a1, R.a2), "subw a0, a1, a2"],
  [0x00c5953b, A.sllw(R.a0, R.a1, R.a2), "sllw a0, a1, a2"],
  [0x00c5d53b, A.srlw(R.a0, R.a1, R.a2), "srlw a0, a1, a2"],
  [0x40c5d53b, A.sraw(R.a0, R.a1, R.a2), "sraw a0, a1, a2"],
  [0x00c59533, A.sll(R.a0, R.a1, R.a2), "sll a0, a1, a2"],
  [0x00c5d533, A.srl(R.a0, R.a1, R.a2), "srl a0, a1, a2"],
  [0x40c5d533, A.sra(R.a0, R.a1, R.a2), "sra a0, a1, a2"],
  [0x00c5a533, A.slt(R.a0, R.a1, R.a2), "slt a0, a1, a2"],
  [0x00c5b533, A.sltu(R.a0, R.a1, R.a2), "sltu a0, a1, a2"],
  [0x00c5c533, A.xor(R.a0, R.a1, R.a2), "xor a0, a1, a2"],
  [0x00c5e533, A.or(R.a0, R.a1, R.a2), "or a0, a1, a2"],
  [0x00c5f533, A.and(R.a0, R.a1, R.a2), "and a0, a1, a2"],
  [0xffb5a513, A.slti(R.a0, R.a1, -5), "slti a0, a1, -5"],
  [0xfff5b513, A.sltiu(R.a0, R.a1, -1), "sltiu a0, a1, -1"],
  [0xfff5c513, A.xori(R.a0, R.a1, -1), "xori a0, a1, -1"],
  [0x5555e513, A.ori(R.a0, R.a1, 0x555), "ori a0, a1, 0x555"],
  [0xf005f513, A.andi(R.a0, R.a1, -256), "andi a0, a1, -256"],
  [0x00158503, A.lb(R.a0, 1, R.a1), "lb a0, 1(a1)"],
  [0x00259503, A.lh(R.a0, 2, R.a1), "lh a0, 2(a1)"],
  [0x0045a503, A.lw(R.a0, 4, R.a1), "lw a0, 4(a1)"],
  [0x0065d503, A.lhu(R.a0, 6, R.a1), "lhu a0, 6(a1)"],
  [0x0085e503, A.lwu(R.a0, 8, R.a1), "lwu a0, 8(a1)"],
  [0x00a59523, A.sh(R.a0, 10, R.a1), "sh a0, 10(a1)"],
  [0x00a5a623, A.sw(R.a0, 12, R.a1), "sw a0, 12(a1)"],
  [0x00b6352f, A.amoadd_d(R.a0, R.a1, R.a2), "amoadd.d a0, a1, (a2)"],
  [0x07eeafaf, A.amoadd_w(R.t6, R.t5, R.t4, { aq: true, rl: true }), "amoadd.w.aqrl t6, t5, (t4)"],
  [0x08b6352f, A.amoswap_d(R.a0, R.a1, R.a2), "amoswap.d a0, a1, (a2)"],
  [0x20b6252f, A.amoxor_w(R.a0, R.a1, R.a2), "amoxor.w a0, a1, (a2)"],
  [0x40b6352f, A.amoor_d(R.a0, R.a1, R.a2), "amoor.d a0, a1, (a2)"],
  [0x60b6252f, A.amoand_w(R.a0, R.a1, R.a2), "amoand.w a0, a1, (a2)"],
  [0x80b6252f, A.amomin_w(R.a0, R.a1, R.a2), "amomin.w a0, a1, (a2)"],
  [0xa0b6352f, A.amomax_d(R.a0, R.a1, R.a2), "amomax.d a0, a1, (a2)"],
  [0xc0b6352f, A.amominu_d(R.a0, R.a1, R.a2), "amominu.d a0, a1, (a2)"],
  [0xe0b6252f, A.amomaxu_w(R.a0, R.a1, R.a2), "amomaxu.w a0, a1, (a2)"],
  [0x1005b52f, A.lr_d(R.a0, R.a1), "lr.d a0, (a1)"],
  [0x140f2faf, A.lr_w(R.t6, R.t5, { aq: true }), "lr.w.aq t6, (t5)"],
  [0x18b6352f, A.sc_d(R.a0, R.a1, R.a2), "sc.d a0, a1, (a2)"],
  [0x1ab6252f, A.sc_w(R.a0, R.a1, R.a2, { rl: true }), "sc.w.rl a0, a1, (a2)"],
  [0x00000073, A.ecall(), "ecall"],
  [0x00100073, A.ebreak(), "ebreak"],
  [0x30200073, A.mret(), "mret"],
  [0x10200073, A.sret(), "sret"],
  [0x10500073, A.wfi(), "wfi"],
  [0x0ff0000f, A.fence(0xf, 0xf), "fence"],
  [0x0310000f, A.fence(0b0011, 0b0001), "fence rw, w"],
  [0x0000100f, A.fence_i(), "fence.i"],
];

test("encodings match GNU as", (t) => {
  for (const [gas, ours, source] of CASES) t.is(hex(ours), hex(gas), source);
});

test("encoders reject operands that do not fit", (t) => {
  t.throws(() => A.addi(R.a0, R.a0, 2048), { instanceOf: RangeError });
  t.throws(() => A.addi(R.a0, R.a0, -2049), { instanceOf: RangeError });
  t.throws(() => A.beq(R.a0, R.a1, 3), { instanceOf: RangeError });
  t.throws(() => A.beq(R.a0, R.a1, 4096), { instanceOf: RangeError });
  t.throws(() => A.jal(R.ra, 1 << 20), { instanceOf: RangeError });
  t.throws(() => A.slli(R.a0, R.a0, 64), { instanceOf: RangeError });
  t.throws(() => A.slliw(R.a0, R.a0, 32), { instanceOf: RangeError });
  t.throws(() => A.lui(R.a0, 0x100000), { instanceOf: RangeError });
  t.throws(() => A.add(32, 0, 0), { instanceOf: RangeError });
  t.throws(() => new A.Program().j("nowhere").code(), { message: /undefined label/ });
});

test("li() loads awkward 64-bit constants exactly", async (t) => {
  const values = [
    0n, 1n, -1n, 2047n, -2048n, 2048n, -2049n, 0x7ff_fffn, 0x7fff_f800n, 0x7fff_ffffn, -0x8000_0000n, 0x8000_0000n,
    0xffff_ffffn, 0x1_0000_0000n, 0x1234_5678_9abc_def0n, -0x1234_5678_9abc_def0n, (1n << 63n) - 1n, -(1n << 63n),
    0x8000_0000_0000_0800n, 0xffff_ffff_0000_0000n, 0x0000_ffff_ffff_f800n, 0x5555_5555_5555_5555n, 0xdead_beefn,
  ];
  const p = new A.Program();
  p.la(R.s0, "out");
  for (const v of values) p.li(R.a0, v).emit(A.sd(R.a0, 0, R.s0), A.addi(R.s0, R.s0, 8));
  p.exit(0).align(8).label("out").space(8 * values.length);
  const o = await runProgram(p);
  t.is(o.result.exitCode, 0);
  values.forEach((v, i) => t.is(o.ram64(p.address("out") + BigInt(8 * i)), BigInt.asUintN(64, v), `li ${v}`));
  t.true(values.every((v) => A.li(R.a0, v).length <= 8), "at most 8 instructions per constant");
});

test("Program resolves forward and backward labels; the ELF parses", (t) => {
  const p = new A.Program();
  p.label("top").branch(A.beq, R.a0, R.a1, "end").j("top").la(R.a2, "top").label("end").emit(A.nop());
  const words = new DataView(p.code().buffer);
  t.is(hex(words.getUint32(0, true)), hex(A.beq(R.a0, R.a1, 16)));
  t.is(hex(words.getUint32(4, true)), hex(A.jal(0, -4)));
  t.is(hex(words.getUint32(8, true)), hex(A.auipc(R.a2, 0)));
  t.is(hex(words.getUint32(12, true)), hex(A.addi(R.a2, R.a2, -8)));
  const image = parseElf(p.elf(), "t.elf");
  t.is(image.entry, A.RAM_BASE);
  t.is(image.segments.length, 1);
  t.is(image.segments[0]!.paddr, A.RAM_BASE);
  t.deepEqual(Array.from(image.segments[0]!.fileData), Array.from(p.code()));
});
