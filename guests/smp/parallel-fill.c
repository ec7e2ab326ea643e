/* parallel-fill: a store-heavy SMP benchmark (the cost of the mirror sync
 * strategies on harts that all write memory, each its own part).  A buffer of
 * BUF_BYTES is split evenly over the harts (the count comes from the device
 * tree, see smp.h); PASSES times, every hart writes its slice with 64-bit
 * stores of an arithmetic sequence base_p + i*step_p (i = the word's index in
 * the whole buffer; a new base and step every pass), then the harts meet at a
 * barrier.  Finally each hart sums its slice and adds the sum into a shared
 * total with amoadd.d; hart 0 checks the total against the closed form
 * N*base + step*N*(N-1)/2 (mod 2^64).  The output does not depend on the hart
 * count.
 *   full  (parallel-fill.elf):       16 MiB, 48 passes (~300 M instructions)
 *   small (parallel-fill-small.elf):  1 MiB,  4 passes (~1.5 M instructions) */
#include "smp.h"

#ifdef SMALL
#define BUF_BYTES (1UL << 20)
#define PASSES 4
#else
#define BUF_BYTES (16UL << 20)
#define PASSES 48
#endif
#define NWORDS (BUF_BYTES / 8)

static unsigned n;
static volatile uint64_t total SMP_ALIGNED;
static uint64_t last_base, last_step;

static void run(unsigned h)
{
  uint64_t *buf = (uint64_t *)__heap_start;
  uint64_t first = NWORDS / n * h, end = h == n - 1 ? NWORDS : NWORDS / n * (h + 1);
  uint64_t base = 0, step = 0;
  smp_sync();
  for (int p = 0; p < PASSES; p++) {
    base = 0x0123456789abcdefULL * (p + 1);
    step = 0x9e3779b97f4a7c15ULL + 2 * p;
    uint64_t v = base + first * step;
    uint64_t i = first;
    for (; i + 4 <= end; i += 4) {
      buf[i] = v;
      buf[i + 1] = v + step;
      buf[i + 2] = v + 2 * step;
      buf[i + 3] = v + 3 * step;
      v += 4 * step;
    }
    for (; i < end; i++, v += step)
      buf[i] = v;
    smp_sync();
  }
  uint64_t sum = 0;
  for (uint64_t i = first; i < end; i++)
    sum += buf[i];
  amoadd_d_aqrl(&total, sum);
  if (h == 0) {
    last_base = base;
    last_step = step;
  }
  smp_sync();
}

void hart_main(unsigned long id)
{
  n = smp_start(id, 0);
  run((unsigned)id);
}

int main(int argc, char **argv)
{
  (void)argc;
  n = smp_start(0, argv);
  run(0);
  uint64_t N = NWORDS;
  /* N(N-1)/2 without overflow trouble: one of N, N-1 is even */
  uint64_t tri = (N % 2 == 0) ? (N / 2) * (N - 1) : N * ((N - 1) / 2);
  uint64_t expected = N * last_base + last_step * tri;
  printf("parallel-fill: %lu words x %d passes, total 0x%016lx\n", (unsigned long)N, PASSES, (unsigned long)total);
  if (total != expected) {
    printf("parallel-fill: FAIL: expected 0x%016lx\n", (unsigned long)expected);
    return 1;
  }
  printf("parallel-fill: OK\n");
  return 0;
}
