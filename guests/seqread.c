/* seqread: sequential-read benchmark.  Fills a buffer with a pattern
 * f(i), then reads it sequentially PASSES times with 64-bit loads, summing
 * and xor-folding.  The sums are checked against values computed from f(i)
 * directly, without touching memory.
 *   full  (seqread.elf):       16 MiB, 50 passes (~300 M instructions)
 *   small (seqread-small.elf):  2 MiB,  2 passes (~4 M instructions) */
#include "kv.h"

#ifdef SMALL
#define BUF_BYTES (2UL << 20)
#define PASSES 2
#else
#define BUF_BYTES (16UL << 20)
#define PASSES 50
#endif
#define NWORDS (BUF_BYTES / 8)

static inline uint64_t f(uint64_t i) { return (i * 0x9e3779b97f4a7c15ULL) ^ (i >> 3); }

int main(void)
{
  uint64_t *buf = (uint64_t *)__heap_start;
  for (uint64_t i = 0; i < NWORDS; i++)
    buf[i] = f(i);

  uint64_t sum = 0, fold = 0;
  for (int p = 0; p < PASSES; p++) {
    __asm__ volatile("" ::: "memory");
    const uint64_t *q = buf;
    uint64_t s0 = 0, s1 = 0, x0 = 0, x1 = 0;
    for (uint64_t i = 0; i < NWORDS; i += 4) {
      s0 += q[i];
      x0 ^= q[i + 1];
      s1 += q[i + 2];
      x1 ^= q[i + 3];
    }
    sum += s0 + s1;
    fold = (fold ^ (x0 ^ x1)) * 0x100000001b3ULL + p;
  }

  /* independent: the same quantities from f(i), no memory reads */
  uint64_t esum1 = 0, ex = 0;
  for (uint64_t i = 0; i < NWORDS; i++) {
    if ((i & 3) == 0 || (i & 3) == 2) esum1 += f(i);
    else ex ^= f(i);
  }
  uint64_t esum = esum1 * PASSES, efold = 0;
  for (int p = 0; p < PASSES; p++)
    efold = (efold ^ ex) * 0x100000001b3ULL + p;

  printf("seqread: %lu KiB x %d passes, sum 0x%016lx fold 0x%016lx\n",
         BUF_BYTES >> 10, PASSES, sum, fold);
  if (sum != esum || fold != efold) {
    printf("seqread: FAIL: expected sum 0x%016lx fold 0x%016lx\n", esum, efold);
    return 1;
  }
  printf("seqread: OK\n");
  return 0;
}
