/* SMP helpers for the multi-hart guests (smp-sync, litmus, parallel-sum).
 *
 * Hart discovery: the number of harts is read from the flattened device tree
 * whose address arrives in a1 (QEMU's reset vector passes it with -bios none,
 * and so does kmemvisor).  crt0 leaves a1 alone, so hart 0's main(argc, argv)
 * sees it as argv.  smp_start() counts the /cpus/cpu@N nodes (device_type
 * "cpu", status not "disabled"), requires their reg values to be 0..N-1, and
 * caps N at 8 (crt0 parks harts 8 and up).  Then every hart checks in on an
 * "arrived" counter and hart 0 waits (bounded) until all N are there: a
 * missing hart is reported as a failure, not silently ignored.  If a1 holds
 * no valid FDT, the harts are counted by arrival instead (until the count
 * has not changed for 200 ms of mtime), and a line saying so is printed, so
 * that the deterministic expected output no longer matches.
 *
 * Every spin-wait is bounded (SMP_SPIN_SECONDS of mtime): a lost wake-up or a
 * broken atomic gives "smp: FAIL: hart H timed out waiting in WHAT" and exit
 * status 2 instead of a hang.
 *
 * Atomics are written as inline assembly so that the exact instructions under
 * test are visible: amoadd/amoswap/amoor with .aq/.rl bits, lr/sc loops, and
 * explicit fences. */
#ifndef SMP_H
#define SMP_H
#include "kv.h"

#define SMP_MAX_HARTS 8
#define SMP_SPIN_SECONDS 60
#define SMP_CACHE_LINE 64
#define SMP_ALIGNED __attribute__((aligned(SMP_CACHE_LINE)))

/* ---- the machine ---- */
extern unsigned smp_nharts;          /* set by smp_start before any hart returns from it */
extern unsigned long smp_timebase;   /* mtime ticks per second (FDT, default 10 MHz) */

/* Hart 0: smp_start(0, fdt) (fdt = main's a1).  Other harts: smp_start(id, 0).
 * Returns the number of harts, after all of them have arrived. Harts whose id
 * is not below that number never return (they park). */
unsigned smp_start(unsigned long hart, const void *fdt);

/* Report a failure on any hart: prints (under a print lock) and exits with
 * `code`; the first failing hart wins, the others park. */
void smp_fail(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Print under the print lock (several harts may report at once). */
void smp_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- fences ---- */
#define fence_rw_rw() __asm__ volatile("fence rw, rw" ::: "memory")
#define fence_w_w()   __asm__ volatile("fence w, w" ::: "memory")
#define fence_r_r()   __asm__ volatile("fence r, r" ::: "memory")
#define fence_r_rw()  __asm__ volatile("fence r, rw" ::: "memory")   /* acquire */
#define fence_rw_w()  __asm__ volatile("fence rw, w" ::: "memory")   /* release */
#define compiler_barrier() __asm__ volatile("" ::: "memory")

/* ---- plain (volatile) accesses ---- */
#define LOAD32(p)     (*(volatile uint32_t *)(p))
#define LOAD64(p)     (*(volatile uint64_t *)(p))
#define STORE32(p, v) (*(volatile uint32_t *)(p) = (uint32_t)(v))
#define STORE64(p, v) (*(volatile uint64_t *)(p) = (uint64_t)(v))

static inline uint32_t load_acquire32(volatile uint32_t *p) { uint32_t v = *p; fence_r_rw(); return v; }
static inline uint64_t load_acquire64(volatile uint64_t *p) { uint64_t v = *p; fence_r_rw(); return v; }
static inline void store_release32(volatile uint32_t *p, uint32_t v) { fence_rw_w(); *p = v; }
static inline void store_release64(volatile uint64_t *p, uint64_t v) { fence_rw_w(); *p = v; }

/* ---- AMOs ---- */
static inline uint64_t amoadd_d(volatile uint64_t *p, uint64_t v)
{
  uint64_t old;
  __asm__ volatile("amoadd.d %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}
static inline uint64_t amoadd_d_aqrl(volatile uint64_t *p, uint64_t v)
{
  uint64_t old;
  __asm__ volatile("amoadd.d.aqrl %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}
static inline uint32_t amoadd_w_aqrl(volatile uint32_t *p, uint32_t v)
{
  uint32_t old;
  __asm__ volatile("amoadd.w.aqrl %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}
static inline uint32_t amoswap_w_aq(volatile uint32_t *p, uint32_t v)
{
  uint32_t old;
  __asm__ volatile("amoswap.w.aq %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}
static inline uint32_t amoor_w_aqrl(volatile uint32_t *p, uint32_t v)
{
  uint32_t old;
  __asm__ volatile("amoor.w.aqrl %0, %2, (%1)" : "=r"(old) : "r"(p), "r"(v) : "memory");
  return old;
}

/* lr.d/sc.d increment by v; returns the old value; *failures counts failed sc.d. */
static inline uint64_t lrsc_add_d(volatile uint64_t *p, uint64_t v, uint64_t *failures)
{
  uint64_t old, tmp, f = 0;
  __asm__ volatile(
      "1: lr.d %0, (%3)\n"
      "   add  %1, %0, %4\n"
      "   sc.d %1, %1, (%3)\n"
      "   beqz %1, 2f\n"
      "   addi %2, %2, 1\n"
      "   j    1b\n"
      "2:\n"
      : "=&r"(old), "=&r"(tmp), "+r"(f)
      : "r"(p), "r"(v)
      : "memory");
  *failures += f;
  return old;
}

/* ---- bounded spinning ---- */
/* Pure spinning, for waits whose waker does not know who waits (locks, start-up).
 * Checks the deadline every 256 polls; `what` names the wait in the failure. */
#define SPIN_UNTIL(cond, what)                                        \
  do {                                                                \
    unsigned __n = 0;                                                 \
    unsigned long __deadline = 0;                                     \
    while (!(cond)) {                                                 \
      if ((++__n & 255) == 0) {                                       \
        unsigned long __t = rdtime();                                 \
        if (__deadline == 0)                                          \
          __deadline = __t + SMP_SPIN_SECONDS * smp_timebase;         \
        else if (__t > __deadline)                                    \
          smp_fail(2, "smp: FAIL: hart %lu timed out waiting in %s\n",\
                   hartid(), (what));                                 \
      }                                                               \
    }                                                                 \
  } while (0)

/* ---- spin, then sleep in wfi until another hart sends an IPI ----
 * With more harts than host CPUs, a spinning hart keeps the host CPU from the
 * hart it waits for until the host scheduler preempts it (milliseconds).  So
 * WAIT_UNTIL spins SMP_SPINS_BEFORE_SLEEP polls (enough when the harts really
 * run in parallel) and then sleeps: it sets smp_sleeping[me], clears its own
 * CLINT msip, fences, re-tests the condition, and runs wfi (mie.MSIE = 1,
 * mstatus.MIE = 0: wfi wakes on the pending software interrupt, no trap is
 * taken).  The waker makes the condition true, fences (or used an .aqrl AMO),
 * and writes msip of every hart whose smp_sleeping flag it sees (smp_wake).
 * The fence on both sides makes this a store-buffering pattern: the waiter
 * sees the condition or the waker sees the flag, so no wake-up is lost; and
 * msip stays pending until the waiter clears it, so an IPI that arrives
 * before the wfi makes the wfi return at once.  A lost IPI would hang the
 * hart (on QEMU too); the host's timeout then reports it. */
#define SMP_SPINS_BEFORE_SLEEP 2000
#define CLINT_MSIP(h) ((volatile uint32_t *)(CLINT_BASE + 4UL * (h)))
#define fence_io_all() __asm__ volatile("fence iorw, iorw" ::: "memory")
extern struct smp_sleep { volatile uint32_t v; } SMP_ALIGNED smp_sleeping[SMP_MAX_HARTS];
extern volatile uint64_t smp_sleeps[SMP_MAX_HARTS];       /* statistics: wfi executed per hart */
extern volatile uint64_t smp_sleep_ticks[SMP_MAX_HARTS];  /* and the mtime ticks spent in them */

#define WAIT_UNTIL(cond, what)                                        \
  do {                                                                \
    unsigned __n = 0, __slept = 0;                                    \
    unsigned long __deadline = 0, __me = 0;                           \
    while (!(cond)) {                                                 \
      if (++__n <= SMP_SPINS_BEFORE_SLEEP)                            \
        continue;                                                     \
      unsigned long __t = rdtime();                                   \
      if (__deadline == 0) {                                          \
        __deadline = __t + SMP_SPIN_SECONDS * smp_timebase;           \
        __me = hartid();                                              \
      } else if (__t > __deadline)                                    \
        smp_fail(2, "smp: FAIL: hart %lu timed out waiting in %s\n",  \
                 __me, (what));                                       \
      smp_sleeping[__me].v = 1;                                       \
      __slept = 1;                                                    \
      *CLINT_MSIP(__me) = 0;                                          \
      fence_io_all();                                                 \
      if (cond)                                                       \
        break;                                                        \
      smp_sleeps[__me]++;                                             \
      __asm__ volatile("wfi" ::: "memory");                           \
      smp_sleep_ticks[__me] += rdtime() - __t;                        \
    }                                                                 \
    if (__slept)                                                      \
      smp_sleeping[__me].v = 0;                                       \
  } while (0)

/* Wake hart h if it sleeps in WAIT_UNTIL. Call after making its condition true. */
static inline void smp_wake(unsigned long h)
{
  fence_io_all();
  if (smp_sleeping[h].v)
    *CLINT_MSIP(h) = 1;
}
/* The same, when an .aqrl AMO has already ordered the condition's update before this load. */
static inline void smp_wake_after_amo(unsigned long h)
{
  if (smp_sleeping[h].v) {
    fence_io_all();
    *CLINT_MSIP(h) = 1;
  }
}

/* ---- spinlock: test-and-test-and-set with amoswap.w.aq, released by fence rw,w + sw ---- */
typedef struct { volatile uint32_t word; } SMP_ALIGNED spinlock_t;

static inline void spin_lock(spinlock_t *l)
{
  for (;;) {
    if (amoswap_w_aq(&l->word, 1) == 0)
      return;
    SPIN_UNTIL(LOAD32(&l->word) == 0, "spin_lock");
  }
}
static inline void spin_unlock(spinlock_t *l) { store_release32(&l->word, 0); }

/* ---- sense-reversing barrier over all smp_nharts harts ---- */
typedef struct {
  volatile uint32_t count SMP_ALIGNED;
  volatile uint32_t sense SMP_ALIGNED;
  struct { uint32_t sense; } SMP_ALIGNED local[SMP_MAX_HARTS];   /* each hart's own sense */
} barrier_t;

/* All smp_nharts harts; zero-initialised barrier_t (in .bss) is ready to use. */
void barrier_wait(barrier_t *b);
/* The barrier every phase uses. */
extern barrier_t smp_barrier;
static inline void smp_sync(void) { barrier_wait(&smp_barrier); }

#endif
