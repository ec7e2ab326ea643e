/* htif-hello start-up: hart 0 runs main() on a small stack, then exits via
 * HTIF with main's return value; other harts park.  No UART, no .bss use
 * before clearing (there is none to clear). */
  .section .text.init, "ax", @progbits
  .globl _start
_start:
  .option push
  .option norelax
  la    gp, __global_pointer$
  .option pop
  csrr  a0, mhartid
  bnez  a0, 2f
  la    sp, __stack_top
  call  main
  call  htif_exit
2:wfi
  j     2b
