/* hostile: a guest that reaches for memory it does not have, and checks it is refused.
 *
 * Run with the default 128 MiB of RAM. Every probe must trap with the right cause and mtval, seen
 * by this guest's own M-mode trap handler, which records them and skips the instruction:
 *  - M-mode loads (lb/lh/lw/ld), stores (sb/sh/sw/sd), AMOs, LR and instruction fetches at the
 *    end of RAM, where kmemvisor keeps its spare frames and mirror copies in host memory (if guest
 *    addresses were host offsets: RAM_BASE + k * (RAM + 64 spare frames)), and at 4 GiB;
 *  - the same from S-mode through Sv39: an identity gigapage that runs past RAM, 4 KiB pages
 *    mapping those physical addresses, and a page table that itself lies outside RAM;
 *  - with a virtio-blk disk: a request whose descriptors point outside RAM and into MMIO must put
 *    the device into DEVICE_NEEDS_RESET (0x40) with a configuration-change interrupt, and leave
 *    guest RAM alone.
 * A control probe (a mapped page inside RAM) must not trap and must read what was written.
 * Each probe runs ROUNDS times (translated after the first, with a low --jit-threshold); the
 * report is printed once. Exit status: 0 when every probe behaved, 1 otherwise.
 * The output matches QEMU's (guests/expected/hostile.out, recorded without a disk).
 */
#include "kv.h"

#define RAM_BASE 0x80000000UL
#define RAM_SIZE (KV_RAM_END - RAM_BASE)
#define SPARE_BYTES (64UL * 4096)
#define STRIDE (RAM_SIZE + SPARE_BYTES) /* host distance between copies, spares included */
#define ROUNDS 3

#define CAUSE_FETCH_ACCESS 1
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_STORE_ACCESS 7

/* Written by the trap handler (trap_entry below). */
volatile unsigned long trap_cause, trap_tval, trap_count, trap_resume;
static unsigned long failures, checksum;

__asm__(
  "  .section .text\n"
  "  .align 4\n"
  "  .globl trap_entry\n"
  "trap_entry:\n"
  "  csrw mscratch, t0\n"
  "  la t0, trap_save\n"
  "  sd t1, 0(t0)\n"
  "  sd t2, 8(t0)\n"
  "  csrr t1, mcause\n"
  "  la t2, trap_cause\n"
  "  sd t1, 0(t2)\n"
  "  csrr t1, mtval\n"
  "  la t2, trap_tval\n"
  "  sd t1, 0(t2)\n"
  "  la t2, trap_count\n"
  "  ld t1, 0(t2)\n"
  "  addi t1, t1, 1\n"
  "  sd t1, 0(t2)\n"
  "  csrr t1, mcause\n"
  "  li t2, 1\n"              /* instruction access fault: resume at the probe's caller */
  "  beq t1, t2, 2f\n"
  "  li t2, 12\n"             /* instruction page fault: likewise */
  "  beq t1, t2, 2f\n"
  "  csrr t1, mepc\n"         /* skip the faulting instruction, 2 or 4 bytes (code is identity-mapped) */
  "  lhu t2, 0(t1)\n"
  "  andi t2, t2, 3\n"
  "  addi t1, t1, 2\n"
  "  li t0, 3\n"
  "  bne t2, t0, 1f\n"
  "  addi t1, t1, 2\n"
  "1:csrw mepc, t1\n"
  "  j 3f\n"
  "2:la t2, trap_resume\n"
  "  ld t1, 0(t2)\n"
  "  csrw mepc, t1\n"
  "3:la t0, trap_save\n"
  "  ld t1, 0(t0)\n"
  "  ld t2, 8(t0)\n"
  "  csrr t0, mscratch\n"
  "  mret\n"
  /* probe_jump(target): jump there; the fetch fault resumes at our caller. */
  "  .globl probe_jump\n"
  "probe_jump:\n"
  "  la t0, trap_resume\n"
  "  sd ra, 0(t0)\n"
  "  jr a0\n"
  "  .section .bss\n"
  "  .align 3\n"
  "trap_save: .space 16\n"
  "  .section .text\n");
extern char trap_entry[];
void probe_jump(unsigned long target);

enum access { LB, LH, LW, LD, SB, SH, SW, SD, AMOADD, LR, FETCH, ACCESSES };
static const char *const names[ACCESSES] = { "lb", "lh", "lw", "ld", "sb", "sh", "sw", "sd", "amoadd.d", "lr.d", "fetch" };
static const int causes[ACCESSES] = { 5, 5, 5, 5, 7, 7, 7, 7, 7, 5, 1 };

/* One access of `kind` at `a`; returns the value a load read (meaningless after a trap). */
static unsigned long access(enum access kind, unsigned long a)
{
  unsigned long v = 0, one = 1;
  switch (kind) {
  case LB: __asm__ volatile("lb %0, 0(%1)" : "=r"(v) : "r"(a) : "memory"); break;
  case LH: __asm__ volatile("lh %0, 0(%1)" : "=r"(v) : "r"(a) : "memory"); break;
  case LW: __asm__ volatile("lw %0, 0(%1)" : "=r"(v) : "r"(a) : "memory"); break;
  case LD: __asm__ volatile("ld %0, 0(%1)" : "=r"(v) : "r"(a) : "memory"); break;
  case SB: __asm__ volatile("sb %0, 0(%1)" :: "r"(one), "r"(a) : "memory"); break;
  case SH: __asm__ volatile("sh %0, 0(%1)" :: "r"(one), "r"(a) : "memory"); break;
  case SW: __asm__ volatile("sw %0, 0(%1)" :: "r"(one), "r"(a) : "memory"); break;
  case SD: __asm__ volatile("sd %0, 0(%1)" :: "r"(one), "r"(a) : "memory"); break;
  case AMOADD: __asm__ volatile("amoadd.d %0, %1, (%2)" : "=r"(v) : "r"(one), "r"(a) : "memory"); break;
  case LR: __asm__ volatile("lr.d %0, (%1)" : "=r"(v) : "r"(a) : "memory"); break;
  case FETCH: probe_jump(a); break;
  default: break;
  }
  return v;
}

/* Every access kind at `a` must trap with its access-fault cause and mtval = a (the virtual address). */
static void expect_faults(const char *where, unsigned long a, int fetch)
{
  printf("%s 0x%lx:", where, a);
  for (int kind = 0; kind < ACCESSES; kind++) {
    if (kind == FETCH && !fetch) continue;
    int ok = 1;
    for (int round = 0; round < ROUNDS; round++) {
      unsigned long before = trap_count;
      access(kind, a);
      if (trap_count != before + 1 || trap_cause != (unsigned long)causes[kind] || trap_tval != a) ok = 0;
    }
    checksum = checksum * 31 + trap_cause * 7 + (trap_tval & 0xffff);
    if (ok) printf(" %s=%lu", names[kind], trap_cause);
    else {
      printf(" %s=WRONG(traps %lu cause %lu tval 0x%lx)", names[kind], trap_count, trap_cause, trap_tval);
      failures++;
    }
  }
  printf("\n");
}

static void machine_mode_probes(void)
{
  expect_faults("M: end of RAM", KV_RAM_END, 1);
  expect_faults("M: spare frames (host view)", KV_RAM_END + 0x1000, 1);
  expect_faults("M: mirror copy 1 (host view)", RAM_BASE + STRIDE, 1);
  expect_faults("M: mirror copy 2 (host view)", RAM_BASE + 2 * STRIDE, 1);
  expect_faults("M: 4 GiB", 0x100000000UL, 1);
}

/* ---- Sv39 ---- */
#define PTE_V 1UL
#define PTE_R 2UL
#define PTE_W 4UL
#define PTE_X 8UL
#define PTE_A 64UL
#define PTE_D 128UL
#define LEAF (PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)
#define PTE(pa, flags) ((((unsigned long)(pa)) >> 12 << 10) | (flags))

static unsigned long root[512] __attribute__((aligned(4096)));
static unsigned long l1[512] __attribute__((aligned(4096)));
static unsigned long l0[512] __attribute__((aligned(4096)));
static volatile unsigned long control_page[512] __attribute__((aligned(4096)));

#define VA_PAGES 0xC0000000UL   /* root[3] -> l1[0] -> l0: 4 KiB pages */
#define VA_BAD_TABLE 0x100000000UL /* root[4]: a next-level table outside RAM */
/* Physical targets of the 4 KiB pages l0[1..]; l0[0] maps control_page (inside RAM). */
static const unsigned long targets[] = { KV_RAM_END, RAM_BASE + STRIDE, RAM_BASE + 2 * STRIDE, 0x100000000UL, 0xfffffff000UL };

static void supervisor_main(void)
{
  /* The control: a mapped page inside RAM reads what M-mode wrote through its physical address. */
  unsigned long seen = 0;
  for (int round = 0; round < ROUNDS; round++) seen += access(LD, VA_PAGES + 8);
  unsigned long before = trap_count;
  int control_ok = seen == ROUNDS * 0x5eed5eedUL && trap_count == before;
  printf("S: mapped page in RAM: %s\n", control_ok ? "read back" : "WRONG");
  if (!control_ok) failures++;
  expect_faults("S: identity gigapage past RAM", KV_RAM_END, 1);
  for (unsigned i = 0; i < ARRAY_SIZE(targets); i++) {
    printf("S: page -> 0x%lx, ", targets[i]);
    expect_faults("va", VA_PAGES + 0x1000 * (i + 1), 1);
  }
  expect_faults("S: page table outside RAM, va", VA_BAD_TABLE + 0x2000, 1);
  printf("hostile: %lu failures, checksum 0x%lx\n", failures, checksum);
  exit(failures ? 1 : 0);
}

static void supervisor_mode_probes(void)
{
  root[0] = PTE(0, LEAF);                /* devices (UART, finisher, virtio), identity */
  root[2] = PTE(RAM_BASE, LEAF);         /* RAM and what follows it up to 3 GiB, identity */
  root[3] = PTE(l1, PTE_V);
  root[4] = PTE(KV_RAM_END + 0x10000, PTE_V); /* the next level "lies" past RAM */
  l1[0] = PTE(l0, PTE_V);
  l0[0] = PTE(control_page, LEAF);
  for (unsigned i = 0; i < ARRAY_SIZE(targets); i++) l0[i + 1] = PTE(targets[i], LEAF);
  control_page[1] = 0x5eed5eedUL;
  /* S-mode may reach all of the physical address space (PMP entry 0: NAPOT, RWX), as OpenSBI sets
   * it; with no PMP entry QEMU denies S-mode every access. */
  csr_write(pmpaddr0, -1UL);
  csr_write(pmpcfg0, 0x1f);
  csr_write(satp, (8UL << 60) | ((unsigned long)root >> 12));
  __asm__ volatile("sfence.vma" ::: "memory");
  unsigned long mstatus = csr_read(mstatus);
  mstatus = (mstatus & ~(3UL << 11)) | (1UL << 11); /* MPP = S */
  csr_write(mstatus, mstatus);
  csr_write(mepc, (unsigned long)supervisor_main);
  __asm__ volatile("mret");
}

/* ---- virtio-blk DMA outside RAM (only with a disk) ---- */
#define VIRTIO 0x10001000UL
#define VREG(off) (*(volatile unsigned int *)(VIRTIO + (off)))

struct desc { unsigned long addr; unsigned int len; unsigned short flags, next; };
static struct desc vq_desc[8] __attribute__((aligned(4096)));
static volatile unsigned short vq_avail[16] __attribute__((aligned(4096)));
static volatile unsigned short vq_used[64] __attribute__((aligned(4096)));
static volatile unsigned char vq_header[16], vq_status;

static int virtio_present(void)
{
  unsigned long before = trap_count;
  unsigned long magic = access(LW, VIRTIO);
  if (trap_count != before) return 0; /* no device window at all */
  unsigned long id = access(LW, VIRTIO + 8);
  return (magic & 0xffffffffUL) == 0x74726976UL && (id & 0xffffffffUL) == 2;
}

/* One request whose header descriptor points at `bad`: the device must refuse it. */
static void virtio_bad_descriptor(unsigned long bad)
{
  VREG(0x70) = 0;                        /* reset */
  VREG(0x70) = 1 | 2;                    /* ACKNOWLEDGE | DRIVER */
  VREG(0x24) = 1; VREG(0x20) = 1;        /* VERSION_1 */
  VREG(0x24) = 0; VREG(0x20) = 0;
  VREG(0x70) = 1 | 2 | 8;                /* FEATURES_OK */
  VREG(0x30) = 0;
  VREG(0x38) = 8;
  VREG(0x80) = (unsigned long)vq_desc; VREG(0x84) = 0;
  VREG(0x90) = (unsigned long)vq_avail; VREG(0x94) = 0;
  VREG(0xa0) = (unsigned long)vq_used; VREG(0xa4) = 0;
  VREG(0x44) = 1;
  VREG(0x70) = 1 | 2 | 8 | 4;            /* DRIVER_OK */
  vq_desc[0] = (struct desc){ bad, 16, 1, 1 };
  vq_desc[1] = (struct desc){ (unsigned long)&vq_status, 1, 2, 0 };
  vq_status = 0xee;
  vq_avail[2] = 0;                       /* ring[0] = head 0 */
  vq_avail[1] = (unsigned short)(vq_avail[1] + 1);
  __asm__ volatile("fence rw, rw" ::: "memory");
  VREG(0x50) = 0;                        /* QueueNotify */
  unsigned status = VREG(0x70), interrupt = VREG(0x60);
  int ok = (status & 0x40) && (interrupt & 2) && vq_status == 0xee && vq_used[1] == 0;
  printf("virtio: descriptor at 0x%lx: %s (status 0x%x, interrupt 0x%x)\n", bad, ok ? "device needs reset" : "WRONG", status, interrupt);
  checksum = checksum * 31 + status + interrupt;
  if (!ok) failures++;
  VREG(0x64) = interrupt;
  VREG(0x70) = 0;
}

int main(void)
{
  csr_write(mtvec, (unsigned long)trap_entry);
  machine_mode_probes();
  if (virtio_present()) {
    virtio_bad_descriptor(KV_RAM_END);
    virtio_bad_descriptor(RAM_BASE + STRIDE);
    virtio_bad_descriptor(VIRTIO);
  } else {
    printf("virtio: no block device, DMA probes skipped\n");
  }
  supervisor_mode_probes();
  return 1; /* not reached */
}
