/* race: the subject of `kmemvisor stress` — every hart hammers the same few
 * words at once, so that a hypervisor whose mirror writes can interleave with
 * another hart's store leaves its memory copies different.
 *
 * The harts work in epochs: in epoch e all of them hit the same 64-byte line
 * (line e mod RACE_LINES of a 64 KiB area, plus the first bytes of the next
 * line), OPS_PER_EPOCH operations each, then meet at a barrier and move on.
 * A divergence a racing pair of stores leaves in a line survives until the
 * harts come back to that line, so a pause of the whole machine can see it
 * (a single hot word would be rewritten, and healed, within microseconds).
 *
 * Two builds of this file:
 *
 *  race.elf (racy): each operation is, from the hart's own xorshift64* stream
 *    (seeded from race_seed and the hart id), one of sb, sh, sw, sd at any
 *    byte offset (misaligned ones included, sd across the line boundary), or
 *    amoadd/amoswap/amoor/amoxor/amomaxu/amomin (.w or .d, aligned), or an
 *    lr.d/sc.d store: plain stores race with each other and with atomics on
 *    overlapping bytes.  Now and then a hart first stores to the page 1 MiB
 *    further on, which shares the line's slot in a 256-entry direct-mapped
 *    TLB, so that its next store takes a hypervisor's slow path.
 *
 *  race-drf.elf (-DDATA_RACE_FREE): the same epochs, harts and widths, but no
 *    data race: the shared line is touched only by AMOs and LR/SC (amoswap,
 *    amoadd, amoor, amomaxu, lr/sc on its 8-byte words, amoadd.w and amoswap.w
 *    on 4-byte halves); plain stores of every width go to a hart's private
 *    line, or to a shared buffer under a spinlock (amoswap.w.aq, released with
 *    fence rw,w; sw).  An amoadd.d counter is also incremented by lr.d/sc.d
 *    (as Linux mixes atomic_add and cmpxchg on one atomic_t).
 *
 * Both builds keep counters whose final values are known (an amoadd.d
 * counter; in race-drf also the lr/sc increments and the lock-protected plain
 * counter), checked against the operations each hart counted itself.
 *
 * The host sets race_seed and race_iterations (ELF symbols) after loading:
 * race_iterations = 0 runs epochs until the host stops the machine (kmemvisor
 * stress pauses it now and then to compare the copies); N > 0 runs N epochs,
 * then hart 0 checks the counters, prints "race: counters agree" (or
 * race-drf: ...) and exits 0, or 1 on a wrong count. */
#include "smp.h"

volatile uint64_t race_seed = 1;
volatile uint64_t race_iterations = 2000;

#ifdef DATA_RACE_FREE
#define NAME "race-drf"
#else
#define NAME "race"
#endif

#define RACE_LINES 1024
#define OPS_PER_EPOCH 8
#define TLB_ALIAS (1UL << 20)   /* 256 pages: the same slot of a 256-entry direct-mapped TLB */

typedef struct { volatile uint8_t bytes[64]; } SMP_ALIGNED line_t;

static struct {
  line_t lines[RACE_LINES + 1];   /* + 1: stores may run into the next line */
  uint8_t gap[TLB_ALIAS - (RACE_LINES + 1) * 64];
  line_t alias[RACE_LINES + 1];
} area __attribute__((aligned(4096)));

static barrier_t epoch_barrier;
static volatile uint64_t amo_counter SMP_ALIGNED;
static volatile uint64_t amo_ops[SMP_MAX_HARTS] SMP_ALIGNED;
#ifdef DATA_RACE_FREE
static volatile uint64_t sc_ops[SMP_MAX_HARTS] SMP_ALIGNED;
static volatile uint64_t lock_ops[SMP_MAX_HARTS] SMP_ALIGNED;
static spinlock_t lock;
static struct { volatile uint64_t counter; volatile uint8_t bytes[56]; } locked SMP_ALIGNED;
static line_t private_line[SMP_MAX_HARTS];
#endif

static unsigned n;

static inline void store_sized(volatile void *p, uint64_t v, unsigned width)
{
  switch (width) {
  case 1: __asm__ volatile("sb %0, 0(%1)" ::"r"(v), "r"(p) : "memory"); break;
  case 2: __asm__ volatile("sh %0, 0(%1)" ::"r"(v), "r"(p) : "memory"); break;
  case 4: __asm__ volatile("sw %0, 0(%1)" ::"r"(v), "r"(p) : "memory"); break;
  default: __asm__ volatile("sd %0, 0(%1)" ::"r"(v), "r"(p) : "memory"); break;
  }
}

#define AMO(op, p, v)                                                          \
  ({ uint64_t __old;                                                           \
     __asm__ volatile(op " %0, %2, (%1)" : "=r"(__old) : "r"(p), "r"(v) : "memory"); \
     __old; })

/* lr.d/sc.d: store v, retrying until the sc succeeds */
static inline void lrsc_store_d(volatile uint64_t *p, uint64_t v)
{
  uint64_t old, fail;
  __asm__ volatile(
      "1: lr.d %0, (%2)\n"
      "   sc.d %1, %3, (%2)\n"
      "   bnez %1, 1b\n"
      : "=&r"(old), "=&r"(fail)
      : "r"(p), "r"(v)
      : "memory");
}

#ifndef DATA_RACE_FREE
static void operation(unsigned h, volatile uint8_t *line, unsigned index, uint64_t *rng)
{
  uint64_t r = kv_rand64(rng), v = kv_rand64(rng);
  unsigned off = (unsigned)((r >> 8) % 64);
  volatile uint8_t *p = line + off;
  volatile uint8_t *aligned8 = line + (off & ~7u), *aligned4 = line + (off & ~3u);
  if ((r >> 48) % 16 == 0)   /* evict the line's TLB entry: the next store is a slow-path one */
    store_sized(line + TLB_ALIAS, v, 8);
  switch (r & 15) {
  case 0: case 1: store_sized(p, v, 1); break;
  case 2: case 3: store_sized(p, v, 2); break;
  case 4: case 5: store_sized(p, v, 4); break;
  case 6: store_sized(p, v, 8); break;
  case 7: store_sized(line + 60 + (r >> 40) % 4, v, 8); break;   /* across the line boundary */
  case 8: AMO("amoadd.d", aligned8, v); break;
  case 9: AMO("amoadd.w", aligned4, v); break;
  case 10: AMO("amoswap.d", aligned8, v); break;
  case 11: AMO("amoswap.w", aligned4, v); break;
  case 12: AMO("amoor.d", aligned8, v); break;
  case 13: AMO("amoxor.w", aligned4, v); break;
  case 14:
    if ((r >> 20) & 1)
      AMO("amomaxu.d", aligned8, v);
    else
      AMO("amomin.w", aligned4, v);
    break;
  default: lrsc_store_d((volatile uint64_t *)aligned8, v); break;
  }
  if (index == 0) {
    AMO("amoadd.d", &amo_counter, 1);
    amo_ops[h]++;
  }
}
#else
static void operation(unsigned h, volatile uint8_t *line, unsigned index, uint64_t *rng)
{
  (void)index;
  uint64_t r = kv_rand64(rng), v = kv_rand64(rng);
  volatile uint8_t *word = line + 8 * ((r >> 8) & 7), *half = line + 4 * ((r >> 8) & 15);
  switch (r & 15) {
  case 0: AMO("amoadd.d", &amo_counter, 1); amo_ops[h]++; break;
  case 1: { uint64_t f = 0; lrsc_add_d(&amo_counter, 1, &f); sc_ops[h]++; break; }
  case 2: case 3: AMO("amoswap.d", word, v); break;
  case 4: AMO("amoadd.d", word, v); break;
  case 5: AMO("amoor.d", word, v); break;
  case 6: AMO("amomaxu.d", word, v); break;
  case 7: lrsc_store_d((volatile uint64_t *)word, v); break;
  case 8: AMO("amoadd.w", half, v); break;
  case 9: AMO("amoswap.w", half, v); break;
  case 10: case 11: case 12: { /* plain stores of every width, into this hart's own line */
    unsigned width = 1u << ((r >> 16) & 3);
    store_sized(private_line[h].bytes + (r >> 24) % (65 - width), v, width);
    break;
  }
  default: { /* plain stores to shared bytes, under the lock */
    unsigned width = 1u << ((r >> 16) & 3);
    spin_lock(&lock);
    locked.counter = locked.counter + 1;
    store_sized(locked.bytes + (r >> 24) % (57 - width), v, width);
    spin_unlock(&lock);
    lock_ops[h]++;
    break;
  }
  }
}
#endif

static void epoch(unsigned h, uint64_t e, uint64_t *rng)
{
  volatile uint8_t *line = area.lines[e % RACE_LINES].bytes;
  for (unsigned i = 0; i < OPS_PER_EPOCH; i++)
    operation(h, line, i, rng);
  barrier_wait(&epoch_barrier);
}

static void run(unsigned h)
{
  uint64_t rng = race_seed * 0x9e3779b97f4a7c15ULL + (h + 1) * 0xbf58476d1ce4e5b9ULL;
  if (rng == 0)
    rng = 1;
  uint64_t epochs = race_iterations;
  smp_sync();
  if (epochs == 0)
    for (uint64_t e = 0;; e++)
      epoch(h, e, &rng);
  for (uint64_t e = 0; e < epochs; e++)
    epoch(h, e, &rng);
  smp_sync();
}

void hart_main(unsigned long hartid)
{
  n = smp_start(hartid, 0);
  run((unsigned)hartid);
}

int main(int argc, char **argv)
{
  (void)argc;
  n = smp_start(0, argv);
  run(0);
  uint64_t expected_counter = 0;
  for (unsigned h = 0; h < n; h++)
    expected_counter += amo_ops[h];
#ifdef DATA_RACE_FREE
  uint64_t locks = 0;
  for (unsigned h = 0; h < n; h++) {
    expected_counter += sc_ops[h];
    locks += lock_ops[h];
  }
  if (locked.counter != locks) {
    printf(NAME ": FAIL: lock-protected counter %lu, expected %lu\n", (unsigned long)locked.counter, (unsigned long)locks);
    return 1;
  }
#endif
  if (amo_counter != expected_counter) {
    printf(NAME ": FAIL: atomic counter %lu, expected %lu\n", (unsigned long)amo_counter, (unsigned long)expected_counter);
    return 1;
  }
  printf(NAME ": counters agree\n");
  return 0;
}
