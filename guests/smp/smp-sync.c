/* smp-sync: synchronisation primitives with every hart taking part.
 * The hart count comes from the device tree (see smp.h); the printed lines do
 * not depend on it, so one expected output serves -smp 1, 2, 4, ...
 * The phases run in order, separated by the sense-reversing barrier:
 *  (a) spinlock (amoswap.w.aq, released by fence rw,w + sw) around a plain
 *      load/add/store counter, K_LOCK times per hart; an owner word checks
 *      mutual exclusion inside the critical section;
 *  (b) amoadd.d counter, K_AMO times per hart; the old values returned must be
 *      exactly 0..total-1 (their sum is checked), so no increment was lost or
 *      duplicated;
 *  (c) the same with an lr.d/sc.d retry loop (sc.d failures counted);
 *  (d) the barrier itself: R_BARRIER rounds, each hart writes its slot, and
 *      after the barrier every hart checks every slot;
 *  (e) single-producer/single-consumer ring (hart 0 -> hart 1; one hart alone
 *      fills and drains it in turn): N_RING entries {seq, hash(seq)},
 *      published with fence w,w, consumed after fence r,r; order, payload and
 *      sum are checked;
 *  (f) parallel array sum: every hart initialises interleaved cache lines,
 *      then sums a contiguous slice (so it reads lines other harts wrote);
 *      partial sums combined with amoadd.d and compared with the closed form;
 *  (g) message passing around a ring of harts: data (4 words), fence w,w,
 *      flag; the reader waits for the flag, fence r,r, and must see the data;
 *      it acknowledges, and the writer reuses a slot (of MP_DEPTH) only
 *      after its acknowledgement.
 * The numbers of rounds that make harts wait for each other (barrier rounds,
 * ring size, MP_DEPTH) are chosen so that -smp 4 on a 2-CPU host, where a
 * waiting hart often waits for a host time slice, still ends in seconds.
 * Exit 0 with "smp-sync: all 7 phases OK"; any failure prints
 * "smp-sync: FAIL ..." and exits 1 (2 for a timed-out wait). */
#include "smp.h"

#define K_LOCK    3000
#define K_AMO     20000
#define K_LRSC    20000
#define R_BARRIER 500
#define N_RING    30000
#define RING      256
#define M_ARRAY   (128UL << 10)    /* 64-bit words: 1 MiB at __heap_start */
#define R_MP      4000
#define MP_DEPTH  64
#define GOLDEN    0x9e3779b97f4a7c15ULL

static unsigned n;   /* harts */

#define FAIL(...) smp_fail(1, "smp-sync: FAIL " __VA_ARGS__)

/* -DSMP_TIMING (a debugging build only): hart 0 prefixes each phase's line with mtime in ms */
#ifdef SMP_TIMING
#define STAMP() printf("[%lu ms] ", rdtime() / (smp_timebase / 1000))
#else
#define STAMP() ((void)0)
#endif

/* ---- (a) spinlock ---- */
static spinlock_t lock;
static volatile uint64_t plain_counter SMP_ALIGNED;
static volatile uint64_t weighted SMP_ALIGNED;
static volatile uint64_t owner SMP_ALIGNED;

static void phase_lock(unsigned h)
{
  for (unsigned k = 0; k < K_LOCK; k++) {
    spin_lock(&lock);
    uint64_t held = owner;
    if (held != 0)
      FAIL("(a) hart %u entered the critical section held by hart %lu\n", h, (unsigned long)held - 1);
    owner = h + 1;
    plain_counter = plain_counter + 1;
    weighted = weighted + h + 1;
    held = owner;
    if (held != h + 1)
      FAIL("(a) hart %u: owner changed to %lu inside the critical section\n", h, (unsigned long)held);
    owner = 0;
    spin_unlock(&lock);
  }
}

/* ---- (b) AMO and (c) LR/SC counters ---- */
static volatile uint64_t amo_counter SMP_ALIGNED, amo_tickets SMP_ALIGNED;
static volatile uint64_t lrsc_counter SMP_ALIGNED, lrsc_tickets SMP_ALIGNED, sc_failures SMP_ALIGNED;

static void phase_amo(void)
{
  uint64_t tickets = 0;
  for (unsigned k = 0; k < K_AMO; k++)
    tickets += amoadd_d(&amo_counter, 1);
  amoadd_d_aqrl(&amo_tickets, tickets);
}

static void phase_lrsc(void)
{
  uint64_t tickets = 0, failures = 0;
  for (unsigned k = 0; k < K_LRSC; k++)
    tickets += lrsc_add_d(&lrsc_counter, 1, &failures);
  amoadd_d_aqrl(&lrsc_tickets, tickets);
  amoadd_d_aqrl(&sc_failures, failures);
}

/* ---- (d) barrier ---- */
static volatile uint64_t slots[2][SMP_MAX_HARTS];

static void phase_barrier(unsigned h)
{
  for (unsigned r = 1; r <= R_BARRIER; r++) {
    volatile uint64_t *s = slots[r & 1];
    s[h] = (uint64_t)r * 16 + h;
    smp_sync();
    for (unsigned j = 0; j < n; j++)
      if (s[j] != (uint64_t)r * 16 + j)
        FAIL("(d) round %u: hart %u sees slot %u = 0x%lx after the barrier, expected 0x%lx\n",
             r, h, j, (unsigned long)s[j], (unsigned long)r * 16 + j);
  }
}

/* ---- (e) SPSC ring ---- */
static struct {
  volatile uint64_t head SMP_ALIGNED;   /* written by the producer */
  volatile uint64_t tail SMP_ALIGNED;   /* written by the consumer */
  volatile uint64_t buf[RING][2] SMP_ALIGNED;
} ring;
static uint64_t consumed_sum, consumed_next = 1;

static uint64_t mix(uint64_t x)
{
  x ^= x >> 31; x *= GOLDEN; x ^= x >> 29;
  return x;
}

/* produce seq next.. while there is room (up to `limit`); returns the next seq.
 * The consumer is hart `peer` (woken after each publication when it sleeps). */
static uint64_t produce(uint64_t next, uint64_t limit, int wait, unsigned peer)
{
  uint64_t head = ring.head, tail = load_acquire64(&ring.tail);
  while (next <= limit) {
    if (head - tail >= RING) {
      if (!wait)
        break;
      WAIT_UNTIL(head - (tail = load_acquire64(&ring.tail)) < RING, "(e) producer");
    }
    volatile uint64_t *e = ring.buf[head % RING];
    e[0] = next;
    e[1] = mix(next);
    fence_w_w();
    ring.head = ++head;
    smp_wake(peer);
    next++;
  }
  return next;
}

/* consume until seq `limit` was seen (wait) or the ring is empty (!wait) */
static void consume(uint64_t limit, int wait, unsigned peer)
{
  uint64_t tail = ring.tail, head = ring.head;
  while (consumed_next <= limit) {
    if (head == tail) {
      if (!wait)
        break;
      WAIT_UNTIL((head = LOAD64(&ring.head)) != tail, "(e) consumer");
    }
    fence_r_r();
    volatile uint64_t *e = ring.buf[tail % RING];
    uint64_t seq = e[0], payload = e[1];
    if (seq != consumed_next || payload != mix(seq))
      FAIL("(e) consumer got {%lu, 0x%lx}, expected {%lu, 0x%lx}\n", (unsigned long)seq,
           (unsigned long)payload, (unsigned long)consumed_next, (unsigned long)mix(consumed_next));
    consumed_sum += seq;
    consumed_next++;
    store_release64(&ring.tail, ++tail);   /* fence rw,w: the slot was read before it is freed */
    smp_wake(peer);
  }
}

static void phase_ring(unsigned h)
{
  if (n == 1) {
    uint64_t next = 1;
    while (consumed_next <= N_RING) {
      next = produce(next, N_RING, 0, 0);
      consume(N_RING, 0, 0);
    }
  } else if (h == 0) {
    produce(1, N_RING, 1, 1);
  } else if (h == 1) {
    consume(N_RING, 1, 0);
  }
}

/* ---- (f) parallel array sum ---- */
static volatile uint64_t array_total SMP_ALIGNED;

static void phase_array(unsigned h)
{
  uint64_t *a = (uint64_t *)__heap_start;
  /* initialise cache lines (8 words) round-robin over the harts */
  for (uint64_t line = h; line < M_ARRAY / 8; line += n)
    for (uint64_t i = line * 8; i < line * 8 + 8; i++)
      a[i] = GOLDEN * i * i + 7;
  smp_sync();
  uint64_t lo = M_ARRAY * h / n, hi = M_ARRAY * (h + 1) / n, s = 0;
  for (uint64_t i = lo; i < hi; i++)
    s += a[i];
  amoadd_d_aqrl(&array_total, s);
}

/* ---- (g) message passing ---- */
/* hart h writes mailbox h and reads mailbox h-1; MP_DEPTH rounds may be in
 * flight, so that a hart descheduled by the host (more harts than host CPUs)
 * costs one wait per MP_DEPTH rounds, not one per round */
static struct mbox {
  struct {
    volatile uint64_t data[4] SMP_ALIGNED;
    volatile uint64_t flag SMP_ALIGNED;   /* its own cache line, apart from the data */
  } slot[MP_DEPTH];
  volatile uint64_t ack SMP_ALIGNED;      /* the last round the reader consumed */
} mbox[SMP_MAX_HARTS];

static uint64_t mp_value(unsigned from, unsigned r, unsigned k)
{
  return mix(((uint64_t)from << 40) ^ ((uint64_t)r << 8) ^ k);
}

/* Writing and reading are decoupled: a hart publishes every round it may
 * (up to MP_DEPTH unacknowledged), then reads every round that has arrived,
 * and waits only when it can do neither. */
static void phase_mp(unsigned h)
{
  unsigned from = (h + n - 1) % n, to = (h + 1) % n;
  struct mbox *out = &mbox[h], *in = &mbox[from];
  unsigned w = 1, r = 1;   /* next round to write, to read */
#define CAN_WRITE() (w <= R_MP && (w <= MP_DEPTH || load_acquire64(&out->ack) >= w - MP_DEPTH))
#define CAN_READ()  (r <= R_MP && LOAD64(&in->slot[r % MP_DEPTH].flag) == r)
  while (w <= R_MP || r <= R_MP) {
    WAIT_UNTIL(CAN_WRITE() || CAN_READ(), "(g) message passing");
    while (CAN_WRITE()) {
      unsigned s = w % MP_DEPTH;
      for (unsigned k = 0; k < 4; k++)
        out->slot[s].data[k] = mp_value(h, w, k);
      fence_w_w();
      out->slot[s].flag = w;
      smp_wake(to);
      w++;
    }
    while (CAN_READ()) {
      unsigned s = r % MP_DEPTH;
      fence_r_r();
      for (unsigned k = 0; k < 4; k++) {
        uint64_t v = in->slot[s].data[k];
        if (v != mp_value(from, r, k))
          FAIL("(g) round %u: hart %u saw flag %u from hart %u but data[%u] = 0x%lx, expected 0x%lx\n",
               r, h, r, from, k, (unsigned long)v, (unsigned long)mp_value(from, r, k));
      }
      store_release64(&in->ack, r);   /* fence rw,w: the data was read before the slot is freed */
      smp_wake(from);
      r++;
    }
  }
#undef CAN_WRITE
#undef CAN_READ
}

/* ---- driver ---- */
static void run(unsigned h)
{
  smp_sync();
  if (h == 0)
    STAMP();
  phase_lock(h);
  smp_sync();
  if (h == 0) {
    if (plain_counter != (uint64_t)K_LOCK * n || weighted != (uint64_t)K_LOCK * n * (n + 1) / 2)
      FAIL("(a) counter %lu (expected %lu), weighted %lu (expected %lu)\n", (unsigned long)plain_counter,
           (unsigned long)K_LOCK * n, (unsigned long)weighted, (unsigned long)K_LOCK * n * (n + 1) / 2);
    STAMP();
    smp_printf("smp-sync: (a) spinlock: %u increments per hart, counter OK\n", K_LOCK);
  }

  phase_amo();
  smp_sync();
  if (h == 0) {
    uint64_t total = (uint64_t)K_AMO * n;
    if (amo_counter != total || amo_tickets != total * (total - 1) / 2)
      FAIL("(b) amoadd.d counter %lu (expected %lu), sum of old values %lu (expected %lu)\n",
           (unsigned long)amo_counter, (unsigned long)total, (unsigned long)amo_tickets,
           (unsigned long)(total * (total - 1) / 2));
    STAMP();
    smp_printf("smp-sync: (b) amoadd.d: %u increments per hart, counter and old values OK\n", K_AMO);
  }

  phase_lrsc();
  smp_sync();
  if (h == 0) {
    uint64_t total = (uint64_t)K_LRSC * n;
    if (lrsc_counter != total || lrsc_tickets != total * (total - 1) / 2)
      FAIL("(c) lr.d/sc.d counter %lu (expected %lu), sum of old values %lu (expected %lu)\n",
           (unsigned long)lrsc_counter, (unsigned long)total, (unsigned long)lrsc_tickets,
           (unsigned long)(total * (total - 1) / 2));
    STAMP();
    smp_printf("smp-sync: (c) lr.d/sc.d: %u increments per hart, counter and old values OK\n", K_LRSC);
  }

  phase_barrier(h);
  smp_sync();
  if (h == 0) {
    STAMP();
    smp_printf("smp-sync: (d) barrier: %u rounds, every slot seen by every hart\n", R_BARRIER);
  }

  phase_ring(h);
  smp_sync();
  if (h == 0) {
    /* the consumer's results, published by the barrier */
    uint64_t expect = (uint64_t)N_RING * (N_RING + 1) / 2;
    if (consumed_next != N_RING + 1 || consumed_sum != expect)
      FAIL("(e) consumed %lu entries with sum %lu, expected %u with sum %lu\n", (unsigned long)consumed_next - 1,
           (unsigned long)consumed_sum, N_RING, (unsigned long)expect);
    STAMP();
    smp_printf("smp-sync: (e) spsc ring: %u entries through %u slots, order and sum OK\n", N_RING, RING);
  }

  phase_array(h);
  smp_sync();
  if (h == 0) {
    uint64_t m = M_ARRAY, expect = GOLDEN * ((m - 1) * m * (2 * m - 1) / 6) + 7 * m;
    if (array_total != expect)
      FAIL("(f) array sum 0x%lx, expected 0x%lx\n", (unsigned long)array_total, (unsigned long)expect);
    STAMP();
    smp_printf("smp-sync: (f) array sum: %lu words, sum 0x%016lx OK\n", (unsigned long)m, (unsigned long)expect);
  }

  phase_mp(h);
  smp_sync();
  if (h == 0) {
    STAMP();
    smp_printf("smp-sync: (g) message passing: %u rounds, every reader saw the data\n", R_MP);
    smp_printf("smp-sync: all 7 phases OK\n");
  }
}

int main(int argc, char **argv)
{
  (void)argc;
  n = smp_start(0, argv);   /* argv = a1 = the device tree (see smp.h) */
  run(0);
  return 0;
}

void hart_main(unsigned long id)
{
  n = smp_start(id, 0);
  run((unsigned)id);
}
