/* minikernel: the user program, assembled into the kernel image as a blob
 * (user_blob_start..user_blob_end) and copied by the kernel to USER_VA.
 * It is position independent (pc-relative only; no linker relaxation
 * against gp).  Results go to the data page at USER_DATA_VA:
 *   +0  sum of squares 1..1000 (also the exit code)
 *   +8  return value of write()
 *   +16 1 if two rdtime reads were monotonic
 *   +24 return value of an unknown system call (-38 expected)
 * Expected traps, each reported to and skipped by the kernel:
 *   user_illegal   csrr a0, mstatus    -> illegal instruction (2)
 *   user_kload     ld from 0x80000000  -> load page fault (13), S-only page
 *   user_rdcycle   rdcycle             -> illegal (2): scounteren.CY = 0
 *   user_codewrite sw to its code page -> store page fault (15)            */
#include "kernel.h"

  .section .text.user, "ax", @progbits
  .option push
  .option norelax
  .balign 4
  .globl user_blob_start, user_blob_end, user_ret_insn
  .globl user_illegal, user_kload, user_rdcycle, user_codewrite
user_blob_start:
  j     1f
user_ret_insn:                  /* the kernel calls this from S: must fault */
  ret
1:
  li    a7, 64                  /* write(1, msg, len) */
  li    a0, 1
  la    a1, user_msg
  la    a2, user_msg_end
  sub   a2, a2, a1
  ecall
  li    t4, USER_DATA_VA
  sd    a0, 8(t4)

  li    t0, 0                   /* sum of i*i, i = 1..1000 */
  li    t1, 1
  li    t2, 1000
2:mul   t3, t1, t1
  add   t0, t0, t3
  addi  t1, t1, 1
  bleu  t1, t2, 2b
  addi  sp, sp, -16             /* through the user stack */
  sd    t0, 8(sp)
  ld    t5, 8(sp)
  addi  sp, sp, 16
  sd    t5, 0(t4)

user_illegal:
  csrr  a0, mstatus
  li    t6, 0x80000000
user_kload:
  ld    a0, 0(t6)
  rdtime a3
  rdtime a4
  sltu  a5, a4, a3
  xori  a5, a5, 1
  sd    a5, 16(t4)
user_rdcycle:
  rdcycle a0
  la    t6, user_blob_start
user_codewrite:
  sw    zero, 0(t6)

  li    a7, 1234                /* unknown system call */
  ecall
  sd    a0, 24(t4)

  mv    a0, t5                  /* exit(sum) */
  li    a7, 93
  ecall
3:j     3b

user_msg:
  .ascii "minikernel: hello from U-mode\n"
user_msg_end:
  .balign 4
user_blob_end:
  .option pop
