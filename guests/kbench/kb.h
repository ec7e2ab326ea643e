/* kbench: shared definitions of the kernel-pattern guests (uart-storm,
 * syscalls, disk-small) and the kernel microbenchmarks (micro-*).  Each
 * guest is a small S-mode kernel entered from M-mode by shim.S/shim.c, the
 * way firmware hands a kernel over on QEMU's virt board. */
#ifndef KB_H
#define KB_H
#include "kv.h"

#define csr_set(csr, val) ({ unsigned long __v = (unsigned long)(val); \
  __asm__ volatile("csrs " #csr ", %0" :: "rK"(__v) : "memory"); })
#define csr_clear(csr, val) ({ unsigned long __v = (unsigned long)(val); \
  __asm__ volatile("csrc " #csr ", %0" :: "rK"(__v) : "memory"); })

static inline void sfence_vma(void) { __asm__ volatile("sfence.vma zero, zero" ::: "memory"); }
static inline void fence(void) { __asm__ volatile("fence rw, rw" ::: "memory"); }

#define SSTATUS_SIE  (1UL << 1)
#define SSTATUS_SPIE (1UL << 5)
#define SSTATUS_SPP  (1UL << 8)
#define SSTATUS_SUM  (1UL << 18)
#define IRQ_S_EXT 9
#define SCAUSE_INTR (1UL << 63)
#define EXC_ECALL_U 8

/* Race-free wait (see kernel/kernel.c): called with sstatus.SIE = 0 after
 * the caller tested its condition; wfi wakes on an interrupt pending and
 * enabled in sie even while SIE = 0, and opening SIE for a moment takes it. */
static inline void wait_for_interrupt(void)
{
  __asm__ volatile("wfi\n\tcsrsi sstatus, 2\n\tcsrci sstatus, 2" ::: "memory");
}

/* PLIC, hart 0's S-mode context (1) */
#define PLIC_BASE      0x0c000000UL
#define PLIC_PRIORITY(src) (*(volatile uint32_t *)(PLIC_BASE + 4 * (src)))
#define PLIC_SENABLE0  (*(volatile uint32_t *)(PLIC_BASE + 0x2000 + 0x80 * 1))
#define PLIC_STHRESH0  (*(volatile uint32_t *)(PLIC_BASE + 0x200000 + 0x1000 * 1))
#define PLIC_SCLAIM0   (*(volatile uint32_t *)(PLIC_BASE + 0x200004 + 0x1000 * 1))
#define UART_IRQ   10
#define VIRTIO_IRQ 1

/* Sv39 */
#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_U (1UL << 4)
#define PTE_G (1UL << 5)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define PAGE 4096UL
#define MEGA (2UL << 20)
#define SATP_SV39 (8UL << 60)
#define PAGE_ALIGNED __attribute__((aligned(4096)))

static inline uint64_t pte_of(uintptr_t pa, uint64_t flags) { return ((pa >> 12) << 10) | flags; }
static inline uintptr_t pte_pa(uint64_t pte) { return (uintptr_t)((pte >> 10) << 12); }

/* shim.c: M-mode set-up (PMP allow-all, delegation of S interrupts and of
 * the exceptions a kernel handles, counters), then mret into s_entry in
 * S-mode with satp = 0. */
void m_enter_s(void (*s_entry)(void)) __attribute__((noreturn));

/* shim.c: the kernel's identity map, the way minikernel does it: all RAM
 * and the MMIO windows (finisher, CLINT, PLIC, UART, virtio) in 2 MiB
 * pages, global, A and D preset.  Returns the root table. */
uint64_t *kernel_identity_map(void);

/* shim.S: S-mode trap entry for kernels without user mode; calls s_trap(). */
extern char s_trap_entry[];
void s_trap(void);

#endif
