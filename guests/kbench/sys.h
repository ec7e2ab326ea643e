/* syscalls / micro-syscall: constants shared by the kernel (sys-kernel.c,
 * trampoline.S) and the user program (sys-user.c). */
#ifndef SYS_H
#define SYS_H

/* Sv39: the trampoline page at the top of the virtual address space, mapped
 * (not U) in the kernel's and in every process's page table at the same VA,
 * so that the code switching satp keeps running; each process's trap frame
 * in the page below it, in its own page table only (as xv6). */
#define MAXVA      (1UL << 38)
#define TRAMPOLINE (MAXVA - 4096)
#define TRAPFRAME  (TRAMPOLINE - 4096)

/* trap frame layout (bytes) */
#define TF_KERNEL_SATP 0
#define TF_KERNEL_SP   8
#define TF_KERNEL_TRAP 16
#define TF_EPC         24
#define TF_KERNEL_GP   32
#define TF_X(n)        (40 + ((n) - 1) * 8)   /* x1..x31 */
#define TF_SIZE        288

/* user layout: image at USER_BASE, then USER_STACK_PAGES of stack, then the heap (sbrk) */
#define USER_BASE        0x1000UL
#define USER_STACK_PAGES 2

/* system calls (a7); arguments in a0..a2, result in a0 */
#define SYS_getpid 1
#define SYS_count  2   /* system calls this process has made, this one included */
#define SYS_sbrk   3   /* grow (or shrink) the heap by a0 bytes; returns the old break */
#define SYS_fork   4   /* copy the process; 0 in the child, the child's pid in the parent */
#define SYS_wait   5   /* a0 = pointer to the status: reaps an exited child, returns its pid (-1: none) */
#define SYS_exit   6
#define SYS_write  7   /* write(buf, len) to the console; the kernel copies it in through the page table */

#endif
