/* litmus: two classic memory-model litmus tests, ITERS times, between pairs
 * of harts.  Harts 2k and 2k+1 form a pair (role A and role B) and run their
 * own instance on their own cache lines; a hart without a partner (one hart,
 * or the last of an odd number) runs both roles itself, one after the other.
 * The hart count comes from the device tree (see smp.h).
 *
 * Each iteration, the two harts of a pair meet at a two-party barrier (an
 * amoadd.w.aqrl counter) right before each test, so that the accesses really
 * race; a small pseudo-random delay on each side (0..7 loop turns) spreads
 * the interleavings.  Every iteration uses fresh locations (4 slots in
 * rotation, each location in its own cache line, reset by role A before the
 * barrier).
 *
 *  MP  (message passing)  A: data = 1; fence w,w; flag = 1
 *                         B: r1 = flag; fence r,r; r2 = data
 *      forbidden: r1 == 1 && r2 == 0
 *  SB  (store buffering)  A: x = 1; fence rw,rw; r0 = y
 *                         B: y = 1; fence rw,rw; r1 = x
 *      forbidden: r0 == 0 && r1 == 0
 *  SB without the fences is run as well: there r0 == r1 == 0 is allowed
 *  (RVWMO, and x86-TSO hosts show it).  It is counted but not judged.
 *
 * Only the forbidden counts are printed (they must be 0), so the output does
 * not depend on timing or on the number of harts:
 *   "litmus: MP forbidden 0, SB forbidden 0", exit 0; any forbidden outcome:
 *   the same line with the counts, then "litmus: FAIL", exit 1.
 * The outcome histograms (how often each allowed interleaving was seen) are
 * kept and printed only by a build with -DLITMUS_VERBOSE. */
#include "smp.h"

#ifndef ITERS
#define ITERS 20000
#endif
#define SLOTS 4

typedef struct { volatile uint64_t v; } SMP_ALIGNED line_t;

static struct pair {
  volatile uint32_t sync SMP_ALIGNED;
  struct {
    line_t mp_data, mp_flag;
    line_t sb_x, sb_y, sb_r1;
    line_t nf_x, nf_y, nf_r1;
  } slot[SLOTS];
} pairs[SMP_MAX_HARTS / 2 + 1];

/* outcome histograms, indexed [hart][first result * 2 + second result] */
static volatile uint64_t hist_mp[SMP_MAX_HARTS][8] SMP_ALIGNED, hist_sb[SMP_MAX_HARTS][8] SMP_ALIGNED,
    hist_nf[SMP_MAX_HARTS][8] SMP_ALIGNED;   /* 4 used, padded to a cache line per hart */
static volatile uint64_t mp_forbidden SMP_ALIGNED, sb_forbidden SMP_ALIGNED;

static unsigned n;

/* two-party barrier: the counter reaches 2*k at the k-th meeting */
static inline void pair_sync(struct pair *p, uint32_t target, unsigned partner)
{
  if (amoadd_w_aqrl(&p->sync, 1) + 1 < target)
    WAIT_UNTIL(LOAD32(&p->sync) >= target, "the pair barrier");
  else
    smp_wake_after_amo(partner);   /* only when the partner fell asleep (more harts than host CPUs) */
  fence_r_rw();
}

static inline void delay(uint64_t *seed)
{
  unsigned d = kv_rand64(seed) >> 61;
  for (unsigned i = 0; i < d; i++)
    compiler_barrier();
}

static void reset(struct pair *p, unsigned s)
{
  p->slot[s].mp_data.v = 0; p->slot[s].mp_flag.v = 0;
  p->slot[s].sb_x.v = 0; p->slot[s].sb_y.v = 0; p->slot[s].sb_r1.v = 2;
  p->slot[s].nf_x.v = 0; p->slot[s].nf_y.v = 0; p->slot[s].nf_r1.v = 2;
}

/* the accesses under test, one function per role and test */
static inline void mp_a(struct pair *p, unsigned s)
{
  p->slot[s].mp_data.v = 1;
  fence_w_w();
  p->slot[s].mp_flag.v = 1;
}
static inline unsigned mp_b(struct pair *p, unsigned s)
{
  uint64_t r1 = p->slot[s].mp_flag.v;
  fence_r_r();
  uint64_t r2 = p->slot[s].mp_data.v;
  return (unsigned)(r1 * 2 + r2);
}
static inline uint64_t sb_a(struct pair *p, unsigned s)
{
  p->slot[s].sb_x.v = 1;
  fence_rw_rw();
  return p->slot[s].sb_y.v;
}
static inline void sb_b(struct pair *p, unsigned s)
{
  p->slot[s].sb_y.v = 1;
  fence_rw_rw();
  p->slot[s].sb_r1.v = p->slot[s].sb_x.v;
}
static inline uint64_t nf_a(struct pair *p, unsigned s)
{
  p->slot[s].nf_x.v = 1;
  return p->slot[s].nf_y.v;
}
static inline void nf_b(struct pair *p, unsigned s)
{
  p->slot[s].nf_y.v = 1;
  p->slot[s].nf_r1.v = p->slot[s].nf_x.v;
}

static void record_mp(unsigned h, unsigned outcome, uint64_t *forbidden)
{
  hist_mp[h][outcome]++;
  if (outcome == 2)   /* flag 1, data 0 */
    ++*forbidden;
}

static void record_nf(unsigned h, unsigned partner, unsigned i, uint64_t r0, uint64_t r1)
{
  if (r1 > 1)
    smp_fail(1, "litmus: FAIL: no-fence SB result of hart %u missing in iteration %u\n", partner, i);
  hist_nf[h][r0 * 2 + r1]++;
}

static void run(unsigned h)
{
  uint64_t seed = 0x243f6a8885a308d3ULL ^ ((uint64_t)h << 32), mp_bad = 0, sb_bad = 0;
  unsigned partner = h ^ 1;
  struct pair *p = &pairs[h / 2];
  smp_sync();
  if (partner >= n) {
    /* alone: both roles in turn (the outcomes are then fixed, but the code path is the same) */
    for (unsigned i = 0; i < ITERS; i++) {
      unsigned s = i % SLOTS;
      reset(p, s);
      mp_a(p, s);
      record_mp(h, mp_b(p, s), &mp_bad);
      uint64_t r0 = sb_a(p, s);
      sb_b(p, s);
      uint64_t r1 = p->slot[s].sb_r1.v;
      hist_sb[h][r0 * 2 + r1]++;
      sb_bad += r0 == 0 && r1 == 0;
      r0 = nf_a(p, s);
      nf_b(p, s);
      hist_nf[h][r0 * 2 + p->slot[s].nf_r1.v]++;
    }
  } else {
    int a = (h & 1) == 0;
    uint32_t meet = 0;
    uint64_t nf_r0 = 0;
    if (a)
      reset(p, 0);
    for (unsigned i = 0; i < ITERS; i++) {
      unsigned s = i % SLOTS;
      pair_sync(p, meet += 2, partner);
      if (a && i > 0)   /* B has finished iteration i-1: its no-fence SB result is in */
        record_nf(h, partner, i - 1, nf_r0, p->slot[(i - 1) % SLOTS].nf_r1.v);
      delay(&seed);
      if (a)
        mp_a(p, s);
      else
        record_mp(h, mp_b(p, s), &mp_bad);

      pair_sync(p, meet += 2, partner);
      delay(&seed);
      uint64_t r0 = 0;
      if (a)
        r0 = sb_a(p, s);
      else
        sb_b(p, s);

      pair_sync(p, meet += 2, partner);
      if (a) {
        uint64_t r1 = p->slot[s].sb_r1.v;
        if (r1 > 1)
          smp_fail(1, "litmus: FAIL: SB result of hart %u missing in iteration %u\n", partner, i);
        hist_sb[h][r0 * 2 + r1]++;
        sb_bad += r0 == 0 && r1 == 0;
        reset(p, (i + 1) % SLOTS);   /* B is at most in iteration i (slot i % SLOTS) */
      }
      delay(&seed);
      if (a)
        nf_r0 = nf_a(p, s);
      else
        nf_b(p, s);
    }
    pair_sync(p, meet += 2, partner);
    if (a)
      record_nf(h, partner, ITERS - 1, nf_r0, p->slot[(ITERS - 1) % SLOTS].nf_r1.v);
  }
  amoadd_d_aqrl(&mp_forbidden, mp_bad);
  amoadd_d_aqrl(&sb_forbidden, sb_bad);
  smp_sync();
}

int main(int argc, char **argv)
{
  (void)argc;
  n = smp_start(0, argv);   /* argv = a1 = the device tree (see smp.h) */
  run(0);
#ifdef LITMUS_VERBOSE
  printf("litmus: %u harts, %u iterations per pair\n", n, ITERS);
  for (unsigned h = 0; h < n; h++)
    printf("  hart %u: MP(flag,data) 00:%lu 01:%lu 10:%lu 11:%lu  SB(r0,r1) 00:%lu 01:%lu 10:%lu 11:%lu"
           "  SB-nofence 00:%lu 01:%lu 10:%lu 11:%lu\n", h,
           (unsigned long)hist_mp[h][0], (unsigned long)hist_mp[h][1], (unsigned long)hist_mp[h][2],
           (unsigned long)hist_mp[h][3], (unsigned long)hist_sb[h][0], (unsigned long)hist_sb[h][1],
           (unsigned long)hist_sb[h][2], (unsigned long)hist_sb[h][3], (unsigned long)hist_nf[h][0],
           (unsigned long)hist_nf[h][1], (unsigned long)hist_nf[h][2], (unsigned long)hist_nf[h][3]);
#endif
  /* every iteration must have been recorded exactly once per test */
  uint64_t mp = 0, sb = 0, nf = 0;
  for (unsigned h = 0; h < n; h++)
    for (unsigned k = 0; k < 4; k++)
      mp += hist_mp[h][k], sb += hist_sb[h][k], nf += hist_nf[h][k];
  uint64_t instances = (n + 1) / 2;
  printf("litmus: MP forbidden %lu, SB forbidden %lu\n", (unsigned long)mp_forbidden, (unsigned long)sb_forbidden);
  if (mp != instances * ITERS || sb != instances * ITERS || nf != instances * ITERS) {
    printf("litmus: FAIL: %lu/%lu/%lu outcomes recorded, expected %lu each\n", (unsigned long)mp,
           (unsigned long)sb, (unsigned long)nf, (unsigned long)(instances * ITERS));
    return 1;
  }
  if (mp_forbidden || sb_forbidden) {
    printf("litmus: FAIL\n");
    return 1;
  }
  return 0;
}

void hart_main(unsigned long id)
{
  n = smp_start(id, 0);
  run((unsigned)id);
}
