/* isa-test assembly part: the M-mode trap handler used by the trap checks,
 * and the RV64C checks (every RV64C instruction, written with explicit c.
 * mnemonics so that the assembler cannot choose another encoding). */

/* struct trap_info { u64 count, cause, epc, tval, resume; } */
  .section .bss
  .align 3
  .globl trap_info
trap_info:
  .zero 40

  .text
/* Records mcause/mepc/mtval, counts the trap, and resumes either at
 * trap_info.resume (if non-zero; it is then cleared) or after the trapping
 * instruction (its length is read from its low two bits). */
  .align 2
  .globl trap_entry
trap_entry:
  addi  sp, sp, -32
  sd    t0, 0(sp)
  sd    t1, 8(sp)
  sd    t2, 16(sp)
  la    t0, trap_info
  ld    t1, 0(t0)
  addi  t1, t1, 1
  sd    t1, 0(t0)
  csrr  t1, mcause
  sd    t1, 8(t0)
  csrr  t1, mepc
  sd    t1, 16(t0)
  csrr  t1, mtval
  sd    t1, 24(t0)
  ld    t2, 32(t0)
  beqz  t2, 1f
  sd    zero, 32(t0)
  csrw  mepc, t2
  j     2f
1:csrr  t1, mepc
  lhu   t2, 0(t1)
  andi  t2, t2, 3
  li    t0, 3
  addi  t1, t1, 2
  bne   t2, t0, 3f
  addi  t1, t1, 2
3:csrw  mepc, t1
2:ld    t0, 0(sp)
  ld    t1, 8(sp)
  ld    t2, 16(sp)
  addi  sp, sp, 32
  mret

/* ---------------------------------------------------------------------
 * RV64C: rvc_run(uint64_t *out) executes every RV64C instruction (c.fld
 * and friends excluded: no F/D) and stores results to out[]; the C side
 * compares them with hand-computed values (rvc_expected[] in isa-test.c,
 * in the same order as the OUT lines below).  Results are written with
 * ordinary sd through t6 so that the instructions under test only ever see
 * values they produced themselves.  c.ebreak is tested with the traps.
 * ------------------------------------------------------------------- */
  .set OUTN, 0
  .macro OUT reg
  sd    \reg, OUTN*8(t6)
  .set OUTN, OUTN+1
  .endm

  .text
  .align 2
  .globl rvc_run
rvc_run:
  addi  sp, sp, -32
  sd    ra, 0(sp)
  sd    s0, 8(sp)
  sd    s1, 16(sp)
  mv    t6, a0

  /* c.li, c.lui */
  c.li    a0, -32           ; OUT a0     /*  0: 0xffffffffffffffe0 */
  c.li    a1, 31            ; OUT a1     /*  1: 31 */
  c.li    t0, 0             ; OUT t0     /*  2: 0 */
  c.lui   a2, 0x1f          ; OUT a2     /*  3: 0x1f000 */
  c.lui   a3, 0xfffe0       ; OUT a3     /*  4: 0xfffffffffffe0000 */
  c.lui   t1, 1             ; OUT t1     /*  5: 0x1000 */

  /* c.addi, c.addiw, c.nop */
  c.addi  a0, 31            ; OUT a0     /*  6: -1 */
  c.addi  a1, -32           ; OUT a1     /*  7: -1 */
  c.addi  t0, 1             ; OUT t0     /*  8: 1 */
  c.nop
  li      a2, 0x7fffffff
  c.addiw a2, 1             ; OUT a2     /*  9: 0xffffffff80000000 */
  li      a3, 0x180000001
  c.addiw a3, 0             ; OUT a3     /* 10: 0xffffffff80000001 (sext.w) */
  li      t2, 0xfffffffe00000000
  c.addiw t2, -1            ; OUT t2     /* 11: 0xffffffffffffffff */

  /* c.addi16sp, c.addi4spn */
  mv      s1, sp
  c.addi16sp sp, -512
  sub     t0, sp, s1        ; OUT t0     /* 12: -512 */
  c.addi16sp sp, 496
  sub     t0, sp, s1        ; OUT t0     /* 13: -16 */
  c.addi16sp sp, 16
  sub     t0, sp, s1        ; OUT t0     /* 14: 0 */
  c.addi4spn a0, sp, 4
  sub     t0, a0, sp        ; OUT t0     /* 15: 4 */
  c.addi4spn s0, sp, 1020
  sub     t0, s0, sp        ; OUT t0     /* 16: 1020 */

  /* c.mv, c.add, c.sub, c.xor, c.or, c.and, c.addw, c.subw */
  li      a0, 0x0ff00ff0f0f0f0f0
  li      a1, 0x00ff00ff3c3c3c3c
  c.mv    a2, a0            ; OUT a2     /* 17: 0x0ff00ff0f0f0f0f0 */
  c.add   a2, a1            ; OUT a2     /* 18: 0x10ef10f02d2d2d2c */
  c.mv    a3, a0
  c.sub   a3, a1            ; OUT a3     /* 19: 0x0ef10ef1b4b4b4b4 */
  c.mv    a4, a0
  c.xor   a4, a1            ; OUT a4     /* 20: 0x0f0f0f0fcccccccc */
  c.mv    a5, a0
  c.or    a5, a1            ; OUT a5     /* 21: 0x0fff0ffffcfcfcfc */
  c.mv    s0, a0
  c.and   s0, a1            ; OUT s0     /* 22: 0x00f000f030303030 */
  li      a2, 0x7fffffff
  li      a3, 1
  c.addw  a2, a3            ; OUT a2     /* 23: 0xffffffff80000000 */
  li      a4, 0x1234567880000000
  c.subw  a4, a3            ; OUT a4     /* 24: 0x7fffffff */
  li      a5, 0
  c.subw  a5, a3            ; OUT a5     /* 25: 0xffffffffffffffff */
  li      t0, 5
  li      t1, -7
  c.add   t0, t1            ; OUT t0     /* 26: -2 (non-compressed registers) */
  c.mv    t3, t1            ; OUT t3     /* 27: -7 */

  /* c.slli, c.srli, c.srai, c.andi */
  li      a0, 0x8000000000000001
  c.mv    a1, a0
  c.slli  a1, 63            ; OUT a1     /* 28: 0x8000000000000000 */
  c.mv    a1, a0
  c.slli  a1, 1             ; OUT a1     /* 29: 2 */
  c.mv    t0, a0
  c.slli  t0, 32            ; OUT t0     /* 30: 0x0000000100000000 */
  c.mv    a2, a0
  c.srli  a2, 1             ; OUT a2     /* 31: 0x4000000000000000 */
  c.mv    a2, a0
  c.srli  a2, 63            ; OUT a2     /* 32: 1 */
  c.mv    a2, a0
  c.srli  a2, 32            ; OUT a2     /* 33: 0x80000000 */
  c.mv    a3, a0
  c.srai  a3, 1             ; OUT a3     /* 34: 0xc000000000000000 */
  c.mv    a3, a0
  c.srai  a3, 63            ; OUT a3     /* 35: -1 */
  c.mv    a3, a0
  c.srai  a3, 32            ; OUT a3     /* 36: 0xffffffff80000000 */
  li      a4, 0x123456789abcdef7
  c.mv    a5, a4
  c.andi  a5, -32           ; OUT a5     /* 37: 0x123456789abcdee0 */
  c.mv    a5, a4
  c.andi  a5, 31            ; OUT a5     /* 38: 0x17 */
  c.mv    a5, a4
  c.andi  a5, 0             ; OUT a5     /* 39: 0 */

  /* c.sw, c.lw, c.sd, c.ld (base a5 = rvc_data, 256 bytes) */
  la      a5, rvc_data
  li      a0, 0x1122334480000001
  c.sd    a0, 0(a5)
  c.sd    a0, 248(a5)
  c.ld    a1, 248(a5)       ; OUT a1     /* 40: 0x1122334480000001 */
  c.lw    a2, 0(a5)         ; OUT a2     /* 41: 0xffffffff80000001 */
  c.lw    a2, 4(a5)         ; OUT a2     /* 42: 0x11223344 */
  c.sw    a0, 124(a5)
  c.lw    a3, 124(a5)       ; OUT a3     /* 43: 0xffffffff80000001 */
  c.ld    a4, 120(a5)       ; OUT a4     /* 44: 0x8000000100000000 (rvc_data[15] was 0) */
  li      s1, 0x55
  c.sw    s1, 4(a5)
  c.ld    s0, 0(a5)         ; OUT s0     /* 45: 0x0000005580000001 */

  /* c.sdsp, c.ldsp, c.swsp, c.lwsp */
  addi    sp, sp, -512
  li      t0, 0x8765432187654321
  c.sdsp  t0, 504(sp)
  c.sdsp  t0, 0(sp)
  c.sdsp  t0, 248(sp)
  c.ldsp  t1, 504(sp)       ; OUT t1     /* 46: 0x8765432187654321 */
  c.lwsp  t2, 248(sp)       ; OUT t2     /* 47: 0xffffffff87654321 */
  c.lwsp  t2, 252(sp)       ; OUT t2     /* 48: 0xffffffff87654321 */
  li      t3, 0x12345678
  c.swsp  t3, 252(sp)
  c.lwsp  t4, 252(sp)       ; OUT t4     /* 49: 0x12345678 */
  c.swsp  t3, 4(sp)
  c.ldsp  t5, 0(sp)         ; OUT t5     /* 50: 0x1234567887654321 */
  addi    sp, sp, 512

  /* c.j, c.beqz, c.bnez (forward and backward) */
  li      a0, 0
  c.j     1f
  li      a0, 1                          /* skipped */
1:OUT a0                                 /* 51: 0 */
  li      a1, 0
  li      a0, 0
  c.beqz  a0, 2f
  li      a1, 1                          /* skipped */
2:OUT a1                                 /* 52: 0 */
  li      a1, 0
  li      a0, 0x100000000                /* non-zero only in the upper word */
  c.beqz  a0, 3f
  addi    a1, a1, 1                      /* executed */
3:c.bnez  a0, 4f
  addi    a1, a1, 2                      /* skipped */
4:OUT a1                                 /* 53: 1 */
  li      a2, 0
  li      a0, 0
  c.bnez  a0, 5f
  addi    a2, a2, 4                      /* executed */
5:OUT a2                                 /* 54: 4 */
  li      a3, 0                          /* backward: count 7 down to 0 */
  li      a0, 7
6:addi    a3, a3, 3
  c.addi  a0, -1
  c.bnez  a0, 6b
  OUT a3                                 /* 55: 21 */
  li      a4, 0
  c.j     8f
7:addi    a4, a4, 16
  c.j     9f
8:addi    a4, a4, 32
  c.j     7b
9:OUT a4                                 /* 56: 48 */

  /* c.jr, c.jalr */
  li      a0, 0
  la      t0, 10f
  c.jr    t0
  li      a0, 1                          /* skipped */
10:OUT a0                                /* 57: 0 */
  la      t0, rvc_leaf
  la      t2, 11f
  li      a0, 5
  c.jalr  t0
11:OUT a0                                /* 58: 5 * 3 = 15 */
  sub     t1, ra, t2 ; OUT t1            /* 59: 0 (ra = address after c.jalr) */

  ld      ra, 0(sp)
  ld      s0, 8(sp)
  ld      s1, 16(sp)
  addi    sp, sp, 32
  li      a0, OUTN
  ret

rvc_leaf:                     /* a0 *= 3, using c.add, returns with c.jr ra */
  c.mv    a1, a0
  c.add   a0, a1
  c.add   a0, a1
  c.jr    ra

  .section .bss
  .align 3
rvc_data:
  .zero 256
