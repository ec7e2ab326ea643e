/* disk-small: a kernel doing many small virtio-blk requests, as a kernel's
 * buffer cache does (one 512-byte sector per request, an interrupt per
 * request: PLIC claim, virtio InterruptStatus/ACK, complete).  The driver is
 * minikernel's (modern virtio-mmio, one 3-descriptor chain per request,
 * completion by interrupt, no polling).
 *
 * It writes DISK_N sectors in a scattered order (a stride coprime with the
 * disk size), each filled with data computed from its sector number, then
 * reads them all back in another order and checks every byte; then it
 * rewrites each sector once more (second generation of the data) and reads
 * it back at once.  Checks: each request's status, used.len and used.idx,
 * one interrupt per request, the data read back byte for byte, and an
 * FNV-1a checksum of everything read, which is printed (the same on every
 * emulator: it depends only on the data).  Exit status = failed checks.
 * Needs a raw disk image of at least DISK_SECTORS sectors (its content does
 * not matter: everything is written before it is read).
 *   full  (disk-small.elf):       1024 sectors: 1024 + 1024 + 2 x 512 = 3072 requests
 *   small (disk-small-small.elf): 128 sectors:  128 + 128 + 2 x 64 = 384 requests */
#include "kb.h"

#ifdef SMALL
#define DISK_N 128
#else
#define DISK_N 1024
#endif
#define DISK_SECTORS 2048     /* the image the tests and the benchmark make: 1 MiB */
#define STRIDE 769            /* odd, so coprime with the power-of-two DISK_N */

#define VIRTIO0 0x10001000UL
#define VR(off) (*(volatile uint32_t *)(VIRTIO0 + (off)))
#define VIRTIO_MAGIC        0x000
#define VIRTIO_VERSION      0x004
#define VIRTIO_DEVICE_ID    0x008
#define VIRTIO_DEV_FEAT     0x010
#define VIRTIO_DEV_FEAT_SEL 0x014
#define VIRTIO_DRV_FEAT     0x020
#define VIRTIO_DRV_FEAT_SEL 0x024
#define VIRTIO_QUEUE_SEL    0x030
#define VIRTIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_QUEUE_NUM    0x038
#define VIRTIO_QUEUE_READY  0x044
#define VIRTIO_QUEUE_NOTIFY 0x050
#define VIRTIO_INT_STATUS   0x060
#define VIRTIO_INT_ACK      0x064
#define VIRTIO_STATUS       0x070
#define VIRTIO_QUEUE_DESC_LO   0x080
#define VIRTIO_QUEUE_DESC_HI   0x084
#define VIRTIO_QUEUE_DRIVER_LO 0x090
#define VIRTIO_QUEUE_DRIVER_HI 0x094
#define VIRTIO_QUEUE_DEVICE_LO 0x0a0
#define VIRTIO_QUEUE_DEVICE_HI 0x0a4
#define VIRTIO_CONFIG_GEN   0x0fc
#define VIRTIO_CONFIG       0x100
#define ST_ACKNOWLEDGE 1
#define ST_DRIVER      2
#define ST_DRIVER_OK   4
#define ST_FEATURES_OK 8
#define VRING_DESC_F_NEXT  1
#define VRING_DESC_F_WRITE 2
#define VIRTIO_BLK_T_IN  0
#define VIRTIO_BLK_T_OUT 1
#define QSIZE 8
#define SECTOR 512

struct virtq_desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct virtq_avail { uint16_t flags, idx, ring[QSIZE], used_event; };
struct virtq_used_elem { uint32_t id, len; };
struct virtq_used { uint16_t flags, idx; struct virtq_used_elem ring[QSIZE]; uint16_t avail_event; };
struct blk_req { uint32_t type, reserved; uint64_t sector; };

static struct virtq_desc vq_desc[QSIZE] __attribute__((aligned(64)));
static struct virtq_avail vq_avail __attribute__((aligned(64)));
static volatile struct virtq_used vq_used __attribute__((aligned(64)));
static struct blk_req blk_hdr __attribute__((aligned(16)));
static volatile uint8_t blk_status;
static uint8_t buf[SECTOR] __attribute__((aligned(64)));
static uint16_t used_seen;
static volatile unsigned long blk_done, n_irq, n_other, n_spurious;
static unsigned long n_requests;
static int n_checks, n_failures;

static void check_eq(const char *name, unsigned long got, unsigned long want)
{
  n_checks++;
  if (got != want) {
    n_failures++;
    if (n_failures <= 20)
      printf("disk-small: FAIL %s: got 0x%lx expected 0x%lx\n", name, got, want);
  }
}

void s_trap(void)
{
  unsigned long cause = csr_read(scause);
  if (cause == (SCAUSE_INTR | IRQ_S_EXT)) {
    uint32_t irq = PLIC_SCLAIM0;
    if (irq == VIRTIO_IRQ) {
      n_irq++;
      uint32_t st = VR(VIRTIO_INT_STATUS);
      VR(VIRTIO_INT_ACK) = st & 3;
      fence();
      if (vq_used.idx != used_seen)
        blk_done = 1;
    } else if (irq == 0) {
      n_spurious++;
    } else {
      n_other++;
    }
    if (irq)
      PLIC_SCLAIM0 = irq;
    return;
  }
  printf("disk-small: unexpected S trap: scause=0x%lx sepc=0x%lx stval=0x%lx\n",
         cause, csr_read(sepc), csr_read(stval));
  exit(255);
}

static int blk_init(void)
{
  if (VR(VIRTIO_MAGIC) != 0x74726976 || VR(VIRTIO_VERSION) != 2 || VR(VIRTIO_DEVICE_ID) != 2) {
    printf("disk-small: FAIL no modern virtio-blk device at 0x%lx (QEMU: -global virtio-mmio.force-legacy=false and a -drive)\n", VIRTIO0);
    return 0;
  }
  VR(VIRTIO_STATUS) = 0;
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE;
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE | ST_DRIVER;
  VR(VIRTIO_DRV_FEAT_SEL) = 1;
  VR(VIRTIO_DRV_FEAT) = 1;            /* VIRTIO_F_VERSION_1 only */
  VR(VIRTIO_DRV_FEAT_SEL) = 0;
  VR(VIRTIO_DRV_FEAT) = 0;
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK;
  if (!(VR(VIRTIO_STATUS) & ST_FEATURES_OK)) {
    printf("disk-small: FAIL FEATURES_OK not accepted\n");
    return 0;
  }
  VR(VIRTIO_QUEUE_SEL) = 0;
  if (VR(VIRTIO_QUEUE_NUM_MAX) < QSIZE) {
    printf("disk-small: FAIL queue too small\n");
    return 0;
  }
  VR(VIRTIO_QUEUE_NUM) = QSIZE;
  VR(VIRTIO_QUEUE_DESC_LO) = (uint32_t)(uintptr_t)vq_desc;
  VR(VIRTIO_QUEUE_DESC_HI) = (uint32_t)((uintptr_t)vq_desc >> 32);
  VR(VIRTIO_QUEUE_DRIVER_LO) = (uint32_t)(uintptr_t)&vq_avail;
  VR(VIRTIO_QUEUE_DRIVER_HI) = (uint32_t)((uintptr_t)&vq_avail >> 32);
  VR(VIRTIO_QUEUE_DEVICE_LO) = (uint32_t)(uintptr_t)&vq_used;
  VR(VIRTIO_QUEUE_DEVICE_HI) = (uint32_t)((uintptr_t)&vq_used >> 32);
  VR(VIRTIO_QUEUE_READY) = 1;
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK;
  uint32_t gen, lo, hi;
  do {
    gen = VR(VIRTIO_CONFIG_GEN);
    lo = VR(VIRTIO_CONFIG);
    hi = VR(VIRTIO_CONFIG + 4);
  } while (gen != VR(VIRTIO_CONFIG_GEN));
  uint64_t capacity = ((uint64_t)hi << 32) | lo;
  if (capacity < DISK_N) {
    printf("disk-small: FAIL the disk has %lu sectors, %u needed\n", (unsigned long)capacity, DISK_N);
    return 0;
  }
  PLIC_PRIORITY(VIRTIO_IRQ) = 1;
  PLIC_SENABLE0 = 1u << VIRTIO_IRQ;
  PLIC_STHRESH0 = 0;
  csr_set(sie, 1UL << IRQ_S_EXT);
  return 1;
}

/* One request, completed by interrupt; returns the status byte (0xff on time-out). */
static int blk_rw(uint32_t type, uint64_t sector)
{
  blk_hdr.type = type;
  blk_hdr.reserved = 0;
  blk_hdr.sector = sector;
  blk_status = 0xff;
  vq_desc[0] = (struct virtq_desc){ (uintptr_t)&blk_hdr, sizeof blk_hdr, VRING_DESC_F_NEXT, 1 };
  vq_desc[1] = (struct virtq_desc){ (uintptr_t)buf, SECTOR,
    (uint16_t)(VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_OUT ? 0 : VRING_DESC_F_WRITE)), 2 };
  vq_desc[2] = (struct virtq_desc){ (uintptr_t)&blk_status, 1, VRING_DESC_F_WRITE, 0 };
  vq_avail.ring[vq_avail.idx % QSIZE] = 0;
  fence();
  vq_avail.idx++;
  fence();
  blk_done = 0;
  n_requests++;
  VR(VIRTIO_QUEUE_NOTIFY) = 0;
  unsigned long waits = 0;
  while (!blk_done && waits < 100000000UL) {
    wait_for_interrupt();
    waits++;
  }
  fence();
  if (!blk_done)
    return 0xff;
  check_eq("used.idx advanced by one", (uint16_t)(vq_used.idx - used_seen), 1);
  uint32_t len = vq_used.ring[used_seen % QSIZE].len;
  check_eq("used.len", len, type == VIRTIO_BLK_T_IN ? SECTOR + 1 : 1);
  used_seen = vq_used.idx;
  return blk_status;
}

/* The content of a sector, generation g: 64 words of a hash of (g, sector, word). */
static uint64_t word_of(unsigned g, unsigned long sector, unsigned i)
{
  uint64_t x = (sector * 64 + i) * 0x9e3779b97f4a7c15ULL + g * 0xd1b54a32d192ed03ULL;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return x;
}

static void fill(unsigned g, unsigned long sector)
{
  uint64_t *w = (uint64_t *)buf;
  for (unsigned i = 0; i < SECTOR / 8; i++)
    w[i] = word_of(g, sector, i);
}

static uint64_t fnv = 0xcbf29ce484222325ULL;

/* check buf against generation g of `sector`, and fold it into the checksum */
static void verify(unsigned g, unsigned long sector)
{
  const uint64_t *w = (const uint64_t *)buf;
  unsigned bad = 0;
  for (unsigned i = 0; i < SECTOR / 8; i++)
    bad += w[i] != word_of(g, sector, i);
  for (unsigned i = 0; i < SECTOR; i++)
    fnv = (fnv ^ buf[i]) * 0x100000001b3ULL;
  check_eq(g ? "second-generation sector read back" : "sector read back", bad, 0);
}

static void s_main(void) __attribute__((noreturn));
static void s_main(void)
{
  csr_write(stvec, s_trap_entry);
  csr_write(satp, SATP_SV39 | ((uintptr_t)kernel_identity_map() >> 12));
  sfence_vma();
  printf("disk-small: %u sectors of 512 bytes, one request each, completion by interrupt\n", DISK_N);
  if (!blk_init())
    exit(1);

  /* 1. write every sector (scattered order), 2. read every one back (another order) */
  for (unsigned long i = 0; i < DISK_N; i++) {
    unsigned long s = (i * STRIDE) % DISK_N;
    fill(0, s);
    check_eq("write status", blk_rw(VIRTIO_BLK_T_OUT, s), 0);
  }
  for (unsigned long i = 0; i < DISK_N; i++) {
    unsigned long s = (DISK_N - 1) - (i * (STRIDE + 2)) % DISK_N;
    for (unsigned k = 0; k < SECTOR; k++)
      buf[k] = 0x5a;                  /* a stale buffer must not pass for the data */
    check_eq("read status", blk_rw(VIRTIO_BLK_T_IN, s), 0);
    verify(0, s);
  }
  /* 3. every other sector rewritten and read back at once */
  for (unsigned long s = 0; s < DISK_N; s += 2) {
    fill(1, s);
    check_eq("rewrite status", blk_rw(VIRTIO_BLK_T_OUT, s), 0);
    for (unsigned k = 0; k < SECTOR; k++)
      buf[k] = 0xa5;
    check_eq("reread status", blk_rw(VIRTIO_BLK_T_IN, s), 0);
    verify(1, s);
  }
  check_eq("interrupts (one per request)", n_irq, n_requests);
  check_eq("other PLIC sources claimed", n_other, 0);
  check_eq("spurious claims", n_spurious, 0);
  printf("disk-small: %lu requests, checksum of the data read 0x%016lx\n", n_requests, (unsigned long)fnv);
  if (n_failures)
    printf("disk-small: FAILED %d of %d checks\n", n_failures, n_checks);
  else
    printf("disk-small: OK, %d checks\n", n_checks);
  exit(n_failures);
}

int main(void)
{
  m_enter_s(s_main);
}
