/* micro-tlb: the cost of a TLB miss (an Sv39 page walk).  S-mode maps
 * PAGES 4 KiB pages at VA 0x40000000 (three-level walks, A and D preset)
 * and makes `iterations` passes over them; each pass starts with a full
 * sfence.vma and loads one word from every page, so every load misses the
 * TLB.  The words hold known values; their sum is checked.  The benchmark
 * runner patches `iterations` in the ELF and takes the cost per miss from
 * the difference of whole-process wall times, divided by iterations x PAGES. */
#include "kb.h"

#define PAGES 512
#define TEST_VA 0x40000000UL

volatile unsigned long iterations = 40;

static uint64_t l1_test[512] PAGE_ALIGNED;
static uint64_t l0_test[512] PAGE_ALIGNED;

static void s_main(void) __attribute__((noreturn));
static void s_main(void)
{
  csr_write(stvec, s_trap_entry);
  uint64_t *root = kernel_identity_map();
  root[TEST_VA >> 30] = pte_of((uintptr_t)l1_test, PTE_V);
  l1_test[0] = pte_of((uintptr_t)l0_test, PTE_V);
  uintptr_t frames = ((uintptr_t)__heap_start + PAGE - 1) & ~(PAGE - 1);
  for (unsigned long p = 0; p < PAGES; p++) {
    l0_test[p] = pte_of(frames + p * PAGE, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
    *(volatile uint64_t *)(frames + p * PAGE + (p % 64) * 64) = p + 1;
  }
  csr_write(satp, SATP_SV39 | ((uintptr_t)root >> 12));
  sfence_vma();

  unsigned long n = iterations, sum = 0;
  for (unsigned long i = 0; i < n; i++) {
    sfence_vma();
    for (unsigned long p = 0; p < PAGES; p++)
      sum += *(volatile uint64_t *)(TEST_VA + p * PAGE + (p % 64) * 64);
  }
  const unsigned long want = n * (PAGES * (PAGES + 1UL) / 2);
  if (sum != want) {
    printf("micro-tlb: FAIL sum of the words loaded 0x%lx, expected 0x%lx\n", sum, want);
    exit(1);
  }
  printf("micro-tlb: passes over %u pages done, a full sfence.vma before each\n", PAGES);
  exit(0);
}

int main(void)
{
  m_enter_s(s_main);
}
