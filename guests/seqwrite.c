/* seqwrite: sequential-write benchmark.  Writes the whole buffer PASSES
 * times with 64-bit stores of an arithmetic sequence base_p + i*step_p (a
 * new base and step every pass), spot-checks a few words after each pass,
 * then reads the final contents back once.  The final sum is checked against
 * the closed form N*base + step*N*(N-1)/2 (mod 2^64).
 *   full  (seqwrite.elf):       16 MiB, 48 passes (~300 M instructions)
 *   small (seqwrite-small.elf):  2 MiB,  4 passes (~4 M instructions) */
#include "kv.h"

#ifdef SMALL
#define BUF_BYTES (2UL << 20)
#define PASSES 4
#else
#define BUF_BYTES (16UL << 20)
#define PASSES 48
#endif
#define NWORDS (BUF_BYTES / 8)

int main(void)
{
  uint64_t *buf = (uint64_t *)__heap_start;
  uint64_t base = 0, step = 0, bad = 0;
  for (int p = 0; p < PASSES; p++) {
    base = 0x0123456789abcdefULL * (p + 1);
    step = 0x9e3779b97f4a7c15ULL + 2 * p;
    uint64_t v = base;
    uint64_t *q = buf;
    for (uint64_t i = 0; i < NWORDS; i += 4) {
      q[i] = v;
      q[i + 1] = v + step;
      q[i + 2] = v + 2 * step;
      q[i + 3] = v + 3 * step;
      v += 4 * step;
    }
    __asm__ volatile("" ::: "memory");
    for (uint64_t i = p; i < NWORDS; i += NWORDS / 7 + 1)
      if (buf[i] != base + i * step)
        bad++;
  }
  uint64_t sum = 0;
  for (uint64_t i = 0; i < NWORDS; i++)
    sum += buf[i];
  /* closed form; N*(N-1)/2 exactly since N is even */
  uint64_t n = NWORDS;
  uint64_t esum = n * base + step * ((n / 2) * (n - 1));

  printf("seqwrite: %lu KiB x %d passes, sum 0x%016lx\n", BUF_BYTES >> 10, PASSES, sum);
  if (sum != esum || bad) {
    printf("seqwrite: FAIL: expected sum 0x%016lx, %lu bad spot checks\n", esum, bad);
    return 1;
  }
  printf("seqwrite: OK\n");
  return 0;
}
