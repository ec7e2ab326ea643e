/* minikernel: entry, M-mode trap handler (timer -> STIP, SBI set_timer),
 * S-mode trap entry/exit, and the switch to/from user mode. */
#include "kernel.h"

  .section .text.init, "ax", @progbits
  .globl _start
_start:
  .option push
  .option norelax
  la    gp, __global_pointer$
  .option pop
  csrr  a0, mhartid
  bnez  a0, park              /* only hart 0 runs the kernel */
  la    sp, __stack_top
  la    t0, m_trap_entry
  csrw  mtvec, t0
  la    t0, __bss_start
  la    t1, __bss_end
1:bgeu  t0, t1, 2f
  sd    zero, 0(t0)
  addi  t0, t0, 8
  j     1b
2:call  m_init                /* sets up M-mode state and mrets into s_main */
park:
  csrw  mie, zero
3:wfi
  j     3b

/* ---------------------------------------------------------------------- */
/* M-mode trap handler.  mscratch = top of a private M-mode stack.
 *   machine timer interrupt -> set mip.STIP, clear mie.MTIE
 *   ecall from S, a7 = 0    -> mtimecmp = a0, clear mip.STIP, set mie.MTIE
 *   ecall from S, other a7  -> a0 = -2 (not supported)
 *   anything else           -> __default_trap (prints, exit 255)          */
  .text
  .align 2
  .globl m_trap_entry
m_trap_entry:
  csrrw sp, mscratch, sp
  addi  sp, sp, -32
  sd    t0, 0(sp)
  sd    t1, 8(sp)
  csrr  t0, mcause
  bltz  t0, m_interrupt
  li    t1, EXC_ECALL_S
  bne   t0, t1, m_unexpected
  bnez  a7, 1f
  li    t1, CLINT_MTIMECMP0
  sd    a0, 0(t1)
  li    t1, MIP_STIP
  csrc  mip, t1
  li    t1, MIP_MTIP
  csrs  mie, t1
  li    a0, 0
  j     2f
1:li    a0, SBI_ERR_NOT_SUPPORTED
2:csrr  t0, mepc
  addi  t0, t0, 4
  csrw  mepc, t0
  j     m_return
m_interrupt:
  slli  t0, t0, 1
  srli  t0, t0, 1
  li    t1, IRQ_M_TIMER
  bne   t0, t1, m_unexpected
  li    t1, MIP_MTIP
  csrc  mie, t1
  li    t1, MIP_STIP
  csrs  mip, t1
m_return:
  ld    t0, 0(sp)
  ld    t1, 8(sp)
  addi  sp, sp, 32
  csrrw sp, mscratch, sp
  mret
m_unexpected:
  csrr  a0, mcause
  csrr  a1, mepc
  csrr  a2, mtval
  call  __default_trap
  j     park

/* ---------------------------------------------------------------------- */
/* S-mode trap entry.  sscratch = kernel stack top while in U-mode, 0 in S. */
  .align 2
  .globl s_trap_entry
s_trap_entry:
  csrrw sp, sscratch, sp
  bnez  sp, from_user
  csrrw sp, sscratch, sp        /* from S: back to the kernel sp, sscratch = 0 */
  addi  sp, sp, -FRAME_SIZE
  sd    t0, 5*8(sp)
  addi  t0, sp, FRAME_SIZE
  sd    t0, 2*8(sp)
  j     save_rest
from_user:
  addi  sp, sp, -FRAME_SIZE
  sd    t0, 5*8(sp)
  csrr  t0, sscratch            /* the user's sp */
  sd    t0, 2*8(sp)
  csrw  sscratch, zero
save_rest:
  sd    x1, 1*8(sp)
  sd    x3, 3*8(sp)
  sd    x4, 4*8(sp)
  sd    x6, 6*8(sp)
  sd    x7, 7*8(sp)
  sd    x8, 8*8(sp)
  sd    x9, 9*8(sp)
  sd    x10, 10*8(sp)
  sd    x11, 11*8(sp)
  sd    x12, 12*8(sp)
  sd    x13, 13*8(sp)
  sd    x14, 14*8(sp)
  sd    x15, 15*8(sp)
  sd    x16, 16*8(sp)
  sd    x17, 17*8(sp)
  sd    x18, 18*8(sp)
  sd    x19, 19*8(sp)
  sd    x20, 20*8(sp)
  sd    x21, 21*8(sp)
  sd    x22, 22*8(sp)
  sd    x23, 23*8(sp)
  sd    x24, 24*8(sp)
  sd    x25, 25*8(sp)
  sd    x26, 26*8(sp)
  sd    x27, 27*8(sp)
  sd    x28, 28*8(sp)
  sd    x29, 29*8(sp)
  sd    x30, 30*8(sp)
  sd    x31, 31*8(sp)
  csrr  t0, sepc
  sd    t0, FRAME_SEPC*8(sp)
  .option push
  .option norelax
  la    gp, __global_pointer$   /* the user may have changed gp */
  .option pop
  mv    a0, sp
  call  s_trap
  ld    t0, FRAME_SEPC*8(sp)
  csrw  sepc, t0
  csrr  t0, sstatus
  andi  t0, t0, SSTATUS_SPP
  bnez  t0, 1f
  addi  t0, sp, FRAME_SIZE      /* back to U: next trap uses this stack */
  csrw  sscratch, t0
1:ld    x1, 1*8(sp)
  ld    x3, 3*8(sp)
  ld    x4, 4*8(sp)
  ld    x5, 5*8(sp)
  ld    x6, 6*8(sp)
  ld    x7, 7*8(sp)
  ld    x8, 8*8(sp)
  ld    x9, 9*8(sp)
  ld    x10, 10*8(sp)
  ld    x11, 11*8(sp)
  ld    x12, 12*8(sp)
  ld    x13, 13*8(sp)
  ld    x14, 14*8(sp)
  ld    x15, 15*8(sp)
  ld    x16, 16*8(sp)
  ld    x17, 17*8(sp)
  ld    x18, 18*8(sp)
  ld    x19, 19*8(sp)
  ld    x20, 20*8(sp)
  ld    x21, 21*8(sp)
  ld    x22, 22*8(sp)
  ld    x23, 23*8(sp)
  ld    x24, 24*8(sp)
  ld    x25, 25*8(sp)
  ld    x26, 26*8(sp)
  ld    x27, 27*8(sp)
  ld    x28, 28*8(sp)
  ld    x29, 29*8(sp)
  ld    x30, 30*8(sp)
  ld    x31, 31*8(sp)
  ld    x2, 2*8(sp)
  sret

/* ---------------------------------------------------------------------- */
/* long enter_user(unsigned long entry, unsigned long usp, struct kctx *ctx)
 * Saves the kernel's callee-saved context in ctx and srets to entry in
 * U-mode.  Returns (through leave_user) with the user's exit code. */
  .globl enter_user
enter_user:
  sd    ra, 0*8(a2)
  sd    sp, 1*8(a2)
  sd    s0, 2*8(a2)
  sd    s1, 3*8(a2)
  sd    s2, 4*8(a2)
  sd    s3, 5*8(a2)
  sd    s4, 6*8(a2)
  sd    s5, 7*8(a2)
  sd    s6, 8*8(a2)
  sd    s7, 9*8(a2)
  sd    s8, 10*8(a2)
  sd    s9, 11*8(a2)
  sd    s10, 12*8(a2)
  sd    s11, 13*8(a2)
  csrw  sepc, a0
  li    t0, SSTATUS_SPP
  csrc  sstatus, t0             /* sret to U */
  li    t0, SSTATUS_SPIE
  csrs  sstatus, t0
  csrw  sscratch, sp            /* kernel stack for traps from U */
  mv    sp, a1
  /* clear the registers the user could otherwise see */
  li    ra, 0
  li    gp, 0
  li    tp, 0
  li    t0, 0
  li    t1, 0
  li    t2, 0
  li    s0, 0
  li    s1, 0
  li    a0, 0
  li    a1, 0
  li    a2, 0
  li    a3, 0
  li    a4, 0
  li    a5, 0
  li    a6, 0
  li    a7, 0
  li    s2, 0
  li    s3, 0
  li    s4, 0
  li    s5, 0
  li    s6, 0
  li    s7, 0
  li    s8, 0
  li    s9, 0
  li    s10, 0
  li    s11, 0
  li    t3, 0
  li    t4, 0
  li    t5, 0
  li    t6, 0
  sret

/* void leave_user(struct kctx *ctx, long code): called from s_trap on the
 * user's exit(); resumes the kernel after its enter_user call. */
  .globl leave_user
leave_user:
  ld    ra, 0*8(a0)
  ld    sp, 1*8(a0)
  ld    s0, 2*8(a0)
  ld    s1, 3*8(a0)
  ld    s2, 4*8(a0)
  ld    s3, 5*8(a0)
  ld    s4, 6*8(a0)
  ld    s5, 7*8(a0)
  ld    s6, 8*8(a0)
  ld    s7, 9*8(a0)
  ld    s8, 10*8(a0)
  ld    s9, 11*8(a0)
  ld    s10, 12*8(a0)
  ld    s11, 13*8(a0)
  csrw  sscratch, zero
  mv    a0, a1
  ret

  .section .bss
  .align 4
  .globl m_stack_top
m_stack:
  .space 1024
m_stack_top:
