/* kbench: M-mode hand-over to the S-mode kernel, and the kernel identity map. */
#include "kb.h"

/* Exceptions a kernel handles itself: misaligned/access faults, illegal
 * instruction, breakpoint, ecall from U, page faults. */
#define MEDELEG_BITS ((1UL << 0) | (1UL << 1) | (1UL << 2) | (1UL << 3) | (1UL << 4) | \
  (1UL << 5) | (1UL << 6) | (1UL << 7) | (1UL << 8) | (1UL << 12) | (1UL << 13) | (1UL << 15))
#define MIDELEG_BITS ((1UL << 1) | (1UL << 5) | (1UL << 9))   /* SSIP, STIP, SEIP */

void m_enter_s(void (*s_entry)(void))
{
  csr_write(pmpaddr0, ~0UL);           /* PMP entry 0: NAPOT, all memory, RWX */
  csr_write(pmpcfg0, 0x1f);
  csr_write(medeleg, MEDELEG_BITS);
  csr_write(mideleg, MIDELEG_BITS);
  csr_write(mcounteren, 7);
  csr_write(mie, 0);
  csr_write(satp, 0);
  unsigned long ms = csr_read(mstatus);
  ms = (ms & ~(3UL << 11)) | (1UL << 11);   /* MPP = S */
  csr_write(mstatus, ms);
  csr_write(mepc, s_entry);
  __asm__ volatile("mret");
  __builtin_unreachable();
}

static uint64_t k_root[512] PAGE_ALIGNED;
static uint64_t k_l1_low[512] PAGE_ALIGNED;   /* VA 0 .. 1 GiB: MMIO */
static uint64_t k_l1_ram[512] PAGE_ALIGNED;   /* VA 2 .. 3 GiB: RAM  */

uint64_t *kernel_identity_map(void)
{
  const uint64_t KRWX = PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D | PTE_G;
  const uint64_t KRW = PTE_V | PTE_R | PTE_W | PTE_A | PTE_D | PTE_G;
  k_root[0] = pte_of((uintptr_t)k_l1_low, PTE_V);
  k_root[2] = pte_of((uintptr_t)k_l1_ram, PTE_V);
  for (int i = 0; i < 64; i++)           /* 128 MiB of RAM */
    k_l1_ram[i] = pte_of(0x80000000UL + i * MEGA, KRWX);
  /* finisher (0x100000), CLINT, PLIC (4 MiB), UART + virtio (0x10000000) */
  k_l1_low[0x00000000 >> 21] = pte_of(0x00000000, KRW);
  k_l1_low[0x02000000 >> 21] = pte_of(0x02000000, KRW);
  k_l1_low[0x0c000000 >> 21] = pte_of(0x0c000000, KRW);
  k_l1_low[0x0c200000 >> 21] = pte_of(0x0c200000, KRW);
  k_l1_low[0x10000000 >> 21] = pte_of(0x10000000, KRW);
  return k_root;
}

/* A kernel that takes no S-mode trap on purpose gets this one: report, exit 255. */
__attribute__((weak)) void s_trap(void)
{
  printf("unexpected S trap: scause=0x%lx sepc=0x%lx stval=0x%lx\n",
         csr_read(scause), csr_read(sepc), csr_read(stval));
  exit(255);
}
