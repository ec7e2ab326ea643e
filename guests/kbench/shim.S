/* kbench: entry of the kernel-pattern guests.  Hart 0 sets up its stack,
 * clears .bss and calls main() in M-mode (which ends in m_enter_s); the
 * other harts park in wfi with every interrupt disabled, so that `--smp 2`
 * runs the same kernel with an idle second hart, as a one-hart kernel
 * booted on a two-hart board would leave it. */
  .section .text.init, "ax", @progbits
  .globl _start
_start:
  .option push
  .option norelax
  la    gp, __global_pointer$
  .option pop
  csrr  a0, mhartid
  bnez  a0, park
  la    sp, __stack_top
  la    t0, m_trap_entry
  csrw  mtvec, t0
  la    t0, __bss_start
  la    t1, __bss_end
1:bgeu  t0, t1, 2f
  sd    zero, 0(t0)
  addi  t0, t0, 8
  j     1b
2:call  main
  call  exit
park:
  csrw  mie, zero
3:wfi
  j     3b

/* M-mode traps: none is expected once the kernel runs in S (everything it
 * handles is delegated), so report and exit 255. */
  .align 2
m_trap_entry:
  csrr  a0, mcause
  csrr  a1, mepc
  csrr  a2, mtval
  call  __default_trap
  j     park

/* S-mode trap entry for kernels without user mode (uart-storm, disk-small,
 * micro-tlb): the interrupted code is S-mode on this stack, so save the
 * caller-saved registers, call s_trap() and sret. */
  .align 2
  .globl s_trap_entry
s_trap_entry:
  addi  sp, sp, -144
  sd    ra, 0(sp)
  sd    t0, 8(sp)
  sd    t1, 16(sp)
  sd    t2, 24(sp)
  sd    a0, 32(sp)
  sd    a1, 40(sp)
  sd    a2, 48(sp)
  sd    a3, 56(sp)
  sd    a4, 64(sp)
  sd    a5, 72(sp)
  sd    a6, 80(sp)
  sd    a7, 88(sp)
  sd    t3, 96(sp)
  sd    t4, 104(sp)
  sd    t5, 112(sp)
  sd    t6, 120(sp)
  call  s_trap
  ld    ra, 0(sp)
  ld    t0, 8(sp)
  ld    t1, 16(sp)
  ld    t2, 24(sp)
  ld    a0, 32(sp)
  ld    a1, 40(sp)
  ld    a2, 48(sp)
  ld    a3, 56(sp)
  ld    a4, 64(sp)
  ld    a5, 72(sp)
  ld    a6, 80(sp)
  ld    a7, 88(sp)
  ld    t3, 96(sp)
  ld    t4, 104(sp)
  ld    t5, 112(sp)
  ld    t6, 120(sp)
  addi  sp, sp, 144
  sret
