/* SMP helpers: hart discovery from the device tree, start-up rendezvous,
 * failure reporting, and the sense-reversing barrier.  See smp.h. */
#include "smp.h"

unsigned smp_nharts;
unsigned long smp_timebase = 10000000;   /* QEMU virt and kmemvisor: 10 MHz */
barrier_t smp_barrier;
struct smp_sleep smp_sleeping[SMP_MAX_HARTS];
volatile uint64_t smp_sleeps[SMP_MAX_HARTS];
volatile uint64_t smp_sleep_ticks[SMP_MAX_HARTS];

static volatile uint32_t ready SMP_ALIGNED;     /* hart 0 has read the FDT */
static volatile uint32_t arrived SMP_ALIGNED;   /* harts other than 0 that checked in */
static volatile uint32_t go SMP_ALIGNED;        /* hart 0 saw everyone: start */
static volatile uint32_t failing SMP_ALIGNED;
static spinlock_t print_lock;

static void park(void)
{
  for (;;)
    __asm__ volatile("wfi");
}

/* ---- flattened device tree (big-endian) ---- */
#define FDT_MAGIC      0xd00dfeedu
#define FDT_BEGIN_NODE 1
#define FDT_END_NODE   2
#define FDT_PROP       3
#define FDT_NOP        4
#define FDT_END        9

static uint32_t be32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int prefix(const char *s, const char *p)
{
  while (*p)
    if (*s++ != *p++)
      return 0;
  return 1;
}

/* Number of enabled /cpus/cpu@N nodes with reg 0..N-1, or -1 when the blob is
 * not a usable FDT (or the CPU numbering is not contiguous). */
static int fdt_count_harts(const uint8_t *fdt, unsigned long *timebase)
{
  if ((uintptr_t)fdt < 0x80000000UL || ((uintptr_t)fdt & 3) || be32(fdt) != FDT_MAGIC)
    return -1;
  uint32_t total = be32(fdt + 4), off_struct = be32(fdt + 8), off_strings = be32(fdt + 12);
  if (total > (1u << 20) || off_struct >= total || off_strings >= total)
    return -1;
  const uint8_t *p = fdt + off_struct, *end = fdt + total;
  const char *strings = (const char *)fdt + off_strings;
  int depth = 0, in_cpus = 0, in_cpu = 0, is_cpu = 0, disabled = 0, count = 0;
  uint32_t reg = ~0u, seen = 0;
  while (p + 4 <= end) {
    uint32_t tok = be32(p);
    p += 4;
    if (tok == FDT_BEGIN_NODE) {
      const char *name = (const char *)p;
      size_t len = strlen(name);
      p += (len + 4) & ~3UL;
      depth++;
      if (depth == 2 && strcmp(name, "cpus") == 0)
        in_cpus = 1;
      else if (depth == 3 && in_cpus && prefix(name, "cpu@")) {
        in_cpu = 1; is_cpu = 0; disabled = 0; reg = ~0u;
      }
    } else if (tok == FDT_END_NODE) {
      if (depth == 3 && in_cpu) {
        in_cpu = 0;
        if (is_cpu && !disabled) {
          if (reg >= 32 || (seen & (1u << reg)))
            return -1;
          seen |= 1u << reg;
          count++;
        }
      } else if (depth == 2 && in_cpus) {
        in_cpus = 0;
      }
      depth--;
    } else if (tok == FDT_PROP) {
      uint32_t len = be32(p), nameoff = be32(p + 4);
      const uint8_t *val = p + 8;
      const char *name = strings + nameoff;
      p = val + ((len + 3) & ~3u);
      if (depth == 2 && in_cpus && len == 4 && strcmp(name, "timebase-frequency") == 0)
        *timebase = be32(val);
      if (depth == 3 && in_cpu) {
        if (strcmp(name, "device_type") == 0 && strcmp((const char *)val, "cpu") == 0) is_cpu = 1;
        if (strcmp(name, "status") == 0 && strcmp((const char *)val, "disabled") == 0) disabled = 1;
        if (strcmp(name, "reg") == 0 && len == 4) reg = be32(val);
      }
    } else if (tok == FDT_NOP) {
      continue;
    } else if (tok == FDT_END) {
      break;
    } else {
      return -1;
    }
  }
  if (count == 0 || seen != (count == 32 ? ~0u : (1u << count) - 1))
    return -1;
  return count;
}

unsigned smp_start(unsigned long hart, const void *fdt)
{
  __asm__ volatile("csrci mstatus, 8");   /* MIE = 0: interrupts wake wfi but are never taken */
  csr_write(mie, 1UL << 3);               /* MSIE only, for WAIT_UNTIL's wfi */
  if (hart == 0) {
    unsigned long tb = 0;
    int n = fdt_count_harts(fdt, &tb);
    if (tb)
      smp_timebase = tb;
    ready = 1;              /* the others may check in now */
    if (n > 0) {
      smp_nharts = n > SMP_MAX_HARTS ? SMP_MAX_HARTS : (unsigned)n;
      SPIN_UNTIL(LOAD32(&arrived) == smp_nharts - 1, "start-up (harts from the device tree)");
    } else {
      /* no device tree: count arrivals until quiet for 200 ms */
      unsigned long quiet = smp_timebase / 5, since = rdtime();
      uint32_t last = LOAD32(&arrived);
      for (;;) {
        uint32_t now = LOAD32(&arrived);
        if (now != last) { last = now; since = rdtime(); }
        else if (rdtime() - since > quiet) break;
      }
      smp_nharts = last + 1;
      printf("smp: no device tree in a1; counted %u harts by arrival\n", smp_nharts);
    }
    fence_rw_rw();
    store_release32(&go, 1);
  } else {
    SPIN_UNTIL(load_acquire32(&ready), "start-up (waiting for hart 0)");
    amoadd_w_aqrl(&arrived, 1);
    SPIN_UNTIL(load_acquire32(&go), "start-up (waiting for the go)");
    if (hart >= smp_nharts)
      park();
  }
  return smp_nharts;
}

void smp_printf(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  spin_lock(&print_lock);
  vprintf(fmt, ap);
  spin_unlock(&print_lock);
  va_end(ap);
}

void smp_fail(int code, const char *fmt, ...)
{
  if (amoswap_w_aq(&failing, 1) != 0)
    park();
  va_list ap;
  va_start(ap, fmt);
  spin_lock(&print_lock);
  vprintf(fmt, ap);
  va_end(ap);
  exit(code);
}

void barrier_wait(barrier_t *b)
{
  unsigned long h = hartid();
  uint32_t s = b->local[h].sense ^ 1;
  b->local[h].sense = s;
  if (amoadd_w_aqrl(&b->count, 1) == smp_nharts - 1) {
    STORE32(&b->count, 0);         /* nobody touches count until sense flips */
    store_release32(&b->sense, s);
    for (unsigned j = 0; j < smp_nharts; j++)
      if (j != h)
        smp_wake(j);
  } else {
    WAIT_UNTIL(LOAD32(&b->sense) == s, "barrier");
    fence_r_rw();
  }
}
