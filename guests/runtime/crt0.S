/* kmemvisor guest runtime: start-up code.
 * Entered in M-mode at the ELF entry by every hart (QEMU virt, -bios none).
 * Each hart gets a 16 KiB stack; hart 0 clears .bss and calls main(), whose
 * return value becomes the exit code via the sifive_test finisher.  Other
 * harts (< MAX_HARTS) wait for hart 0 to finish clearing .bss and then call
 * hart_main(hartid) (weak; the default parks them in a wfi loop).  Harts with
 * an id >= MAX_HARTS park at once. */
#define MAX_HARTS  8
#define STACK_SIZE 16384

  .section .text.init, "ax", @progbits
  .globl _start
_start:
  .option push
  .option norelax
  la    gp, __global_pointer$
  .option pop
  csrr  a0, mhartid
  li    t0, MAX_HARTS
  bgeu  a0, t0, __park
  la    sp, __stack_top
  li    t0, STACK_SIZE
  mul   t1, a0, t0
  sub   sp, sp, t1
  la    t0, __default_trap_entry
  csrw  mtvec, t0
  bnez  a0, 3f

  /* hart 0: clear .bss, release the other harts, run main */
  la    t0, __bss_start
  la    t1, __bss_end
1:bgeu  t0, t1, 2f
  sd    zero, 0(t0)
  addi  t0, t0, 8
  j     1b
2:fence rw, rw
  la    t0, __boot_done
  li    t1, 1
  sw    t1, 0(t0)
#ifdef KV_REPORT_INSTRET
  csrr  t0, minstret
  la    t1, kv_instret0
  sd    t0, 0(t1)
#endif
  call  main
  call  exit
  j     __park

  /* other harts: wait for hart 0, then hart_main(hartid) */
3:la    t0, __boot_done
4:lw    t1, 0(t0)
  beqz  t1, 4b
  fence rw, rw
  call  hart_main
  .globl __park
__park:
  wfi
  j     __park

/* Default M-mode trap handler: report and exit(255). */
  .align 2
  .globl __default_trap_entry
__default_trap_entry:
  csrr  a0, mcause
  csrr  a1, mepc
  csrr  a2, mtval
  call  __default_trap
  j     __park

  .section .data
  .align 2
  .globl __boot_done
__boot_done:
  .word 0
