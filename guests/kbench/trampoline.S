/* syscalls: the xv6-style trampoline.  One page, mapped at TRAMPOLINE in the
 * kernel's page table and in every process's, so that it keeps running
 * across the satp switch.  Every trap from U-mode enters uservec (stvec),
 * saves the user registers in the trap frame (TRAPFRAME, mapped in the user
 * page table only), switches to the kernel page table with a full TLB flush
 * (sfence.vma before and after, as xv6 does) and jumps to the kernel's trap
 * handler; userret(satp) switches back (again with a full flush), restores
 * the registers and srets.  So every system call pays two satp switches and
 * two full TLB flushes, and the TLB refills that follow. */
#include "sys.h"

  .section .text.trampoline, "ax", @progbits
  .balign 4096
  .globl trampoline, uservec, userret
trampoline:
uservec:
  csrw  sscratch, a0
  li    a0, TRAPFRAME
  sd    x1, TF_X(1)(a0)
  sd    x2, TF_X(2)(a0)
  sd    x3, TF_X(3)(a0)
  sd    x4, TF_X(4)(a0)
  sd    x5, TF_X(5)(a0)
  sd    x6, TF_X(6)(a0)
  sd    x7, TF_X(7)(a0)
  sd    x8, TF_X(8)(a0)
  sd    x9, TF_X(9)(a0)
  sd    x11, TF_X(11)(a0)
  sd    x12, TF_X(12)(a0)
  sd    x13, TF_X(13)(a0)
  sd    x14, TF_X(14)(a0)
  sd    x15, TF_X(15)(a0)
  sd    x16, TF_X(16)(a0)
  sd    x17, TF_X(17)(a0)
  sd    x18, TF_X(18)(a0)
  sd    x19, TF_X(19)(a0)
  sd    x20, TF_X(20)(a0)
  sd    x21, TF_X(21)(a0)
  sd    x22, TF_X(22)(a0)
  sd    x23, TF_X(23)(a0)
  sd    x24, TF_X(24)(a0)
  sd    x25, TF_X(25)(a0)
  sd    x26, TF_X(26)(a0)
  sd    x27, TF_X(27)(a0)
  sd    x28, TF_X(28)(a0)
  sd    x29, TF_X(29)(a0)
  sd    x30, TF_X(30)(a0)
  sd    x31, TF_X(31)(a0)
  csrr  t0, sscratch
  sd    t0, TF_X(10)(a0)
  csrr  t0, sepc
  sd    t0, TF_EPC(a0)
  ld    sp, TF_KERNEL_SP(a0)
  ld    gp, TF_KERNEL_GP(a0)
  ld    t0, TF_KERNEL_TRAP(a0)
  ld    t1, TF_KERNEL_SATP(a0)
  sfence.vma zero, zero
  csrw  satp, t1
  sfence.vma zero, zero
  jr    t0

/* userret(a0 = the process's satp): called at its TRAMPOLINE address */
userret:
  sfence.vma zero, zero
  csrw  satp, a0
  sfence.vma zero, zero
  li    a0, TRAPFRAME
  ld    t0, TF_EPC(a0)
  csrw  sepc, t0
  ld    x1, TF_X(1)(a0)
  ld    x2, TF_X(2)(a0)
  ld    x3, TF_X(3)(a0)
  ld    x4, TF_X(4)(a0)
  ld    x5, TF_X(5)(a0)
  ld    x6, TF_X(6)(a0)
  ld    x7, TF_X(7)(a0)
  ld    x8, TF_X(8)(a0)
  ld    x9, TF_X(9)(a0)
  ld    x11, TF_X(11)(a0)
  ld    x12, TF_X(12)(a0)
  ld    x13, TF_X(13)(a0)
  ld    x14, TF_X(14)(a0)
  ld    x15, TF_X(15)(a0)
  ld    x16, TF_X(16)(a0)
  ld    x17, TF_X(17)(a0)
  ld    x18, TF_X(18)(a0)
  ld    x19, TF_X(19)(a0)
  ld    x20, TF_X(20)(a0)
  ld    x21, TF_X(21)(a0)
  ld    x22, TF_X(22)(a0)
  ld    x23, TF_X(23)(a0)
  ld    x24, TF_X(24)(a0)
  ld    x25, TF_X(25)(a0)
  ld    x26, TF_X(26)(a0)
  ld    x27, TF_X(27)(a0)
  ld    x28, TF_X(28)(a0)
  ld    x29, TF_X(29)(a0)
  ld    x30, TF_X(30)(a0)
  ld    x31, TF_X(31)(a0)
  ld    a0, TF_X(10)(a0)
  sret
  .balign 4096
  .globl trampoline_end
trampoline_end:

/* the user program, linked at USER_BASE and turned into a flat image */
  .section .rodata.userimg, "a", @progbits
  .balign 8
  .globl userimg_start, userimg_end
userimg_start:
  .incbin USER_IMAGE
userimg_end:
