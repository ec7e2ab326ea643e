/* minikernel: a tiny teaching-style kernel for QEMU virt / kmemvisor that
 * exercises the privileged architecture and the devices, and checks its own
 * results.  Each failed check prints a FAIL line; the exit code (sifive_test
 * finisher) is the number of failures.
 *
 *   M-mode (m_init): PMP allow-all, trap delegation, counter enables, an M
 *     trap handler (start.S) that forwards the machine timer to S as STIP and
 *     serves an SBI-like set_timer ecall; mret into S (s_main).
 *   S-mode: Sv39 page tables, page-fault / SUM / MXR / A-D checks, timer
 *     interrupts, a user program with system calls, virtio-blk through the
 *     PLIC with supervisor external interrupts. */
#include "kv.h"
#include "kernel.h"

#define csr_set(csr, val) ({ unsigned long __v = (unsigned long)(val); \
  __asm__ volatile("csrs " #csr ", %0" :: "rK"(__v) : "memory"); })
#define csr_clear(csr, val) ({ unsigned long __v = (unsigned long)(val); \
  __asm__ volatile("csrc " #csr ", %0" :: "rK"(__v) : "memory"); })

static inline void sfence_vma(void) { __asm__ volatile("sfence.vma zero, zero" ::: "memory"); }
static inline void fence_i(void) { __asm__ volatile("fence.i" ::: "memory"); }
static inline void fence(void) { __asm__ volatile("fence rw, rw" ::: "memory"); }

/* Race-free wait, called with sstatus.SIE = 0 after the caller has checked
 * its condition: wfi wakes on an interrupt that is pending and enabled in
 * sie even while sstatus.SIE = 0, then opening SIE for a moment takes it.
 * (Checking the condition with SIE = 1 and then executing wfi loses a
 * wake-up when the interrupt lands between the check and the wfi: QEMU
 * really hangs that way, since the handler has already cleared the cause.) */
static inline void wait_for_interrupt(void)
{
  __asm__ volatile("wfi\n\tcsrsi sstatus, 2\n\tcsrci sstatus, 2" ::: "memory");
}

struct frame { unsigned long x[32]; unsigned long sepc, pad; };

extern char m_trap_entry[], s_trap_entry[], m_stack_top[];
extern char user_blob_start[], user_blob_end[], user_ret_insn[];
extern char user_illegal[], user_kload[], user_rdcycle[], user_codewrite[];
long enter_user(unsigned long entry, unsigned long usp, unsigned long *ctx);
void leave_user(unsigned long *ctx, long code) __attribute__((noreturn));
void s_main(void) __attribute__((noreturn));

/* ---------------------------------------------------------------- checks */
static int n_checks, n_failures;

static void check_eq(const char *name, unsigned long got, unsigned long want)
{
  n_checks++;
  if (got != want) {
    n_failures++;
    printf("FAIL %s: got 0x%lx expected 0x%lx\n", name, got, want);
  }
}

static void check(const char *name, int ok)
{
  n_checks++;
  if (!ok) {
    n_failures++;
    printf("FAIL %s\n", name);
  }
}

/* ------------------------------------------------------------------ M-mode */
#define MEDELEG_BITS ((1UL << EXC_INST_MISALIGNED) | (1UL << EXC_INST_ACCESS) | \
  (1UL << EXC_ILLEGAL) | (1UL << EXC_BREAKPOINT) | (1UL << EXC_LOAD_MISALIGNED) | \
  (1UL << EXC_LOAD_ACCESS) | (1UL << EXC_STORE_MISALIGNED) | (1UL << EXC_STORE_ACCESS) | \
  (1UL << EXC_ECALL_U) | (1UL << EXC_INST_PAGE) | (1UL << EXC_LOAD_PAGE) | \
  (1UL << EXC_STORE_PAGE))
#define MIDELEG_BITS ((1UL << IRQ_S_SOFT) | (1UL << IRQ_S_TIMER) | (1UL << IRQ_S_EXT))

void m_init(void) __attribute__((noreturn));
void m_init(void)
{
  printf("minikernel: M-mode start on hart %lu\n", csr_read(mhartid));

  /* PMP entry 0: NAPOT over the whole address space, R W X */
  csr_write(pmpaddr0, ~0UL);
  csr_write(pmpcfg0, 0x1f);
  check_eq("pmpcfg0 readback", csr_read(pmpcfg0) & 0xff, 0x1f);

  csr_write(medeleg, MEDELEG_BITS);
  csr_write(mideleg, MIDELEG_BITS);
  check_eq("medeleg readback", csr_read(medeleg), MEDELEG_BITS);
  /* with the H extension (QEMU 7.2) the VS-level and SGEI bits of mideleg
   * are read-only ones: compare only the S-level bits */
  check_eq("mideleg readback", csr_read(mideleg) & 0x222, MIDELEG_BITS);
  csr_write(mcounteren, 7);           /* S may read cycle, time, instret */
  unsigned long misa = csr_read(misa);
  check("misa has S and U", (misa >> ('S' - 'A') & 1) && (misa >> ('U' - 'A') & 1));

  csr_write(mscratch, m_stack_top);
  csr_write(mtvec, m_trap_entry);
  csr_write(mie, 0);                  /* MTIE is set by the first set_timer */
  csr_write(satp, 0);

  unsigned long ms = csr_read(mstatus);
  ms = (ms & ~MSTATUS_MPP_MASK) | MSTATUS_MPP_S;
  csr_write(mstatus, ms);
  csr_write(mepc, s_main);
  __asm__ volatile("mret");
  __builtin_unreachable();
}

/* ----------------------------------------------------------- SBI-like calls */
static long sbi_call(long ext, unsigned long arg0)
{
  register long a0 __asm__("a0") = (long)arg0;
  register long a7 __asm__("a7") = ext;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a7) : "memory");
  return a0;
}
static void sbi_set_timer(unsigned long when) { sbi_call(SBI_SET_TIMER, when); }

/* ------------------------------------------------------------- page tables */
#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_U (1UL << 4)
#define PTE_G (1UL << 5)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define PAGE 4096UL
#define MEGA (2UL << 20)
#define SATP_SV39 (8UL << 60)

#define PAGE_ALIGNED __attribute__((aligned(4096)))
static uint64_t pt_root[512] PAGE_ALIGNED;
static uint64_t pt_l1_low[512] PAGE_ALIGNED;   /* VA 0 .. 1 GiB: MMIO + user */
static uint64_t pt_l1_test[512] PAGE_ALIGNED;  /* VA 1 .. 2 GiB: test pages  */
static uint64_t pt_l1_ram[512] PAGE_ALIGNED;   /* VA 2 .. 3 GiB: RAM         */
static uint64_t pt_l0_user[512] PAGE_ALIGNED;  /* VA 0x400000 .. 0x5fffff    */
static uint64_t pt_l0_test[512] PAGE_ALIGNED;  /* VA 0x40000000 ..           */
static uint8_t user_code[PAGE] PAGE_ALIGNED;
static uint8_t user_data[PAGE] PAGE_ALIGNED;
static uint8_t user_stack[PAGE] PAGE_ALIGNED;
static uint8_t test_rw[PAGE] PAGE_ALIGNED;
static uint8_t test_ro[PAGE] PAGE_ALIGNED;
static uint8_t test_u[PAGE] PAGE_ALIGNED;
static uint8_t test_x[PAGE] PAGE_ALIGNED;
static uint8_t test_nonleaf[PAGE] PAGE_ALIGNED;

/* test virtual addresses (VPN[2] = 1) */
#define TEST_RW        0x40000000UL  /* R W, A = D = 0 (hardware sets them) */
#define TEST_RO        0x40001000UL  /* R, A = 0                             */
#define TEST_UNMAPPED  0x40002000UL  /* invalid leaf PTE                     */
#define TEST_U         0x40003000UL  /* R W U                                */
#define TEST_X         0x40004000UL  /* X only                               */
#define TEST_WONLY     0x40005000UL  /* W without R: reserved encoding       */
#define TEST_NONLEAF   0x40006000UL  /* a pointer PTE at level 0             */
#define TEST_L1_HOLE   0x40200000UL  /* invalid level-1 PTE                  */
#define TEST_MISALIGN  0x40400000UL  /* 2 MiB leaf with PPN[0] != 0          */
#define TEST_L2_HOLE   0xc0000000UL  /* invalid root PTE                     */
#define TEST_NONCANON  0x0000004000000000UL /* bit 38 set, bits 63..39 clear */

static uint64_t pte_of(const void *pa, uint64_t flags)
{
  return (((uintptr_t)pa >> 12) << 10) | flags;
}

static void build_page_tables(void)
{
  const uint64_t KRWX = PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D | PTE_G;
  const uint64_t KRW = PTE_V | PTE_R | PTE_W | PTE_A | PTE_D | PTE_G;

  pt_root[0] = pte_of(pt_l1_low, PTE_V);
  pt_root[1] = pte_of(pt_l1_test, PTE_V);
  pt_root[2] = pte_of(pt_l1_ram, PTE_V);

  /* the kernel: identity map of the 128 MiB of RAM with 2 MiB pages */
  for (int i = 0; i < 64; i++)
    pt_l1_ram[i] = pte_of((void *)(0x80000000UL + i * MEGA), KRWX);

  /* MMIO, identity, 2 MiB pages: test finisher (0x100000), CLINT,
   * PLIC (0x0c000000, 4 MiB), UART + virtio (0x10000000) */
  pt_l1_low[0x00000000 >> 21] = pte_of((void *)0x00000000, KRW);
  pt_l1_low[0x02000000 >> 21] = pte_of((void *)0x02000000, KRW);
  pt_l1_low[0x0c000000 >> 21] = pte_of((void *)0x0c000000, KRW);
  pt_l1_low[0x0c200000 >> 21] = pte_of((void *)0x0c200000, KRW);
  pt_l1_low[0x10000000 >> 21] = pte_of((void *)0x10000000, KRW);

  /* the user program: 4 KiB pages (three-level walks) */
  pt_l1_low[USER_VA >> 21] = pte_of(pt_l0_user, PTE_V);
  pt_l0_user[(USER_VA >> 12) & 511] = pte_of(user_code, PTE_V | PTE_R | PTE_X | PTE_U | PTE_A);
  pt_l0_user[(USER_DATA_VA >> 12) & 511] =
    pte_of(user_data, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
  pt_l0_user[(USER_STACK_VA >> 12) & 511] =
    pte_of(user_stack, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);

  /* test pages */
  pt_l1_test[0] = pte_of(pt_l0_test, PTE_V);
  pt_l0_test[0] = pte_of(test_rw, PTE_V | PTE_R | PTE_W);
  pt_l0_test[1] = pte_of(test_ro, PTE_V | PTE_R);
  pt_l0_test[2] = 0;
  pt_l0_test[3] = pte_of(test_u, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
  pt_l0_test[4] = pte_of(test_x, PTE_V | PTE_X | PTE_A);
  pt_l0_test[5] = pte_of(test_rw, PTE_V | PTE_W | PTE_A | PTE_D);
  pt_l0_test[6] = pte_of(test_nonleaf, PTE_V);
  pt_l1_test[2] = pte_of((void *)(0x80000000UL + PAGE), KRW);  /* misaligned megapage */
}

/* ------------------------------------------------------ trap bookkeeping */
/* expect_fault: 0 = any exception is a bug; 1 = record it and skip the
 * instruction; 2 = record it and resume at ra (instruction fetch faults). */
static volatile int expect_fault;
#define MAX_LOG 8
static volatile int n_faults;
static volatile unsigned long fault_cause[MAX_LOG], fault_tval[MAX_LOG], fault_epc[MAX_LOG];
static volatile int in_user;
static unsigned long kctx[KCTX_SIZE / 8];

static volatile unsigned long ticks, tick_target, timer_cause_ok;
#define TICK 50000UL          /* 5 ms at 10 MHz */

static volatile unsigned long ext_irqs, ext_other, ext_spurious, blk_done;

static void timer_irq(void)
{
  ticks++;
  if (ticks < tick_target)
    sbi_set_timer(rdtime() + TICK);
  else
    sbi_set_timer(~0UL);      /* clears STIP, never fires */
}

static void blk_irq(void);

static void external_irq(void)
{
  volatile uint32_t *claim = (volatile uint32_t *)0x0c201004;  /* context 1 */
  uint32_t irq = *claim;
  if (irq == 1) {
    ext_irqs++;
    blk_irq();
  } else if (irq == 0) {
    ext_spurious++;
  } else {
    ext_other++;
  }
  if (irq)
    *claim = irq;             /* complete */
}

static unsigned insn_len(unsigned long epc)
{
  unsigned long s = csr_read(sstatus);
  csr_set(sstatus, SSTATUS_SUM);      /* the instruction may be on a U page */
  uint16_t lo = *(volatile uint16_t *)epc;
  if (!(s & SSTATUS_SUM))
    csr_clear(sstatus, SSTATUS_SUM);
  return (lo & 3) == 3 ? 4 : 2;
}

static void syscall(struct frame *f)
{
  long ret;
  switch (f->x[17]) {
  case 64: {                          /* write(fd, buf, len) */
    unsigned long buf = f->x[11], len = f->x[12];
    if (f->x[10] != 1) {
      ret = -9;                       /* EBADF */
    } else if (buf < USER_VA || buf >= USER_STACK_TOP || len > USER_STACK_TOP - buf) {
      ret = -14;                      /* EFAULT */
    } else {
      csr_set(sstatus, SSTATUS_SUM);
      for (unsigned long i = 0; i < len; i++)
        uart_putc(((volatile char *)buf)[i]);
      csr_clear(sstatus, SSTATUS_SUM);
      ret = (long)len;
    }
    break;
  }
  case 93:                            /* exit(code) */
    in_user = 0;
    leave_user(kctx, (long)f->x[10]);
  default:
    ret = -38;                        /* ENOSYS */
  }
  f->x[10] = (unsigned long)ret;
  f->sepc += 4;
}

void s_trap(struct frame *f)
{
  unsigned long cause = csr_read(scause), tval = csr_read(stval);
  if ((long)cause < 0) {
    switch (cause & 0xff) {
    case IRQ_S_TIMER:
      timer_cause_ok += cause == (1UL << 63 | IRQ_S_TIMER);
      timer_irq();
      return;
    case IRQ_S_EXT:
      external_irq();
      return;
    }
  } else if (cause == EXC_ECALL_U && in_user) {
    syscall(f);
    return;
  } else if (expect_fault) {
    int n = n_faults;
    if (n < MAX_LOG) {
      fault_cause[n] = cause;
      fault_tval[n] = tval;
      fault_epc[n] = f->sepc;
    }
    n_faults = n + 1;
    if (expect_fault == 2)
      f->sepc = f->x[1];
    else
      f->sepc += insn_len(f->sepc);
    return;
  }
  printf("unexpected S trap: scause=0x%lx sepc=0x%lx stval=0x%lx\n", cause, f->sepc, tval);
  exit(255);
}

/* Probes: return the number of traps taken (0 or 1); fault_* hold details. */
static int try_load(unsigned long va, unsigned long *val)
{
  unsigned long v = 0x5a5a5a5a5a5a5a5aUL;
  n_faults = 0;
  expect_fault = 1;
  __asm__ volatile("ld %0, 0(%1)" : "+r"(v) : "r"(va) : "memory");
  expect_fault = 0;
  if (val)
    *val = v;
  return n_faults;
}

static int try_store(unsigned long va, unsigned long v)
{
  n_faults = 0;
  expect_fault = 1;
  __asm__ volatile("sd %0, 0(%1)" :: "r"(v), "r"(va) : "memory");
  expect_fault = 0;
  return n_faults;
}

static int try_exec(unsigned long va)   /* the target must hold a ret */
{
  n_faults = 0;
  expect_fault = 2;
  __asm__ volatile("jalr ra, 0(%0)" :: "r"(va) : "ra", "memory");
  expect_fault = 0;
  return n_faults;
}

static void check_fault(const char *what, int n, unsigned long cause, unsigned long va)
{
  char name[80];
  int k = 0;
  for (const char *p = what; *p && k < 60; p++)
    name[k++] = *p;
  name[k] = 0;
  check_eq(name, n, 1);
  if (n == 1) {
    memcpy(name + k, " scause", 8);
    check_eq(name, fault_cause[0], cause);
    memcpy(name + k, " stval", 7);
    check_eq(name, fault_tval[0], va);
  }
}

/* ------------------------------------------------------------- paging tests */
static void test_paging(void)
{
  unsigned long v;
  const uint32_t RET = 0x00008067;    /* jalr x0, 0(ra) */

  printf("minikernel: [paging] Sv39 on, kernel in 2 MiB pages, user/test in 4 KiB pages\n");
  check_eq("satp mode", csr_read(satp) >> 60, 8);

  /* the kernel runs through the identity map; RAM aliases agree */
  test_ro[8] = 0x42;
  *(volatile uint32_t *)test_x = RET;
  *(volatile uint32_t *)test_rw = RET;
  *(volatile uint64_t *)test_u = 0x1122334455667788UL;
  fence_i();
  sfence_vma();

  /* page faults: scause, stval = the address */
  check_fault("load unmapped L0", try_load(TEST_UNMAPPED + 8, &v), EXC_LOAD_PAGE, TEST_UNMAPPED + 8);
  check_eq("faulting load leaves rd", v, 0x5a5a5a5a5a5a5a5aUL);
  check_fault("load unmapped L1", try_load(TEST_L1_HOLE, 0), EXC_LOAD_PAGE, TEST_L1_HOLE);
  check_fault("load unmapped L2", try_load(TEST_L2_HOLE + 0x10, 0), EXC_LOAD_PAGE, TEST_L2_HOLE + 0x10);
  check_fault("store unmapped", try_store(TEST_UNMAPPED, 1), EXC_STORE_PAGE, TEST_UNMAPPED);
  check_fault("load non-canonical", try_load(TEST_NONCANON, 0), EXC_LOAD_PAGE, TEST_NONCANON);
  check_fault("load W-only PTE", try_load(TEST_WONLY, 0), EXC_LOAD_PAGE, TEST_WONLY);
  check_fault("load non-leaf L0 PTE", try_load(TEST_NONLEAF, 0), EXC_LOAD_PAGE, TEST_NONLEAF);
  check_fault("load misaligned superpage", try_load(TEST_MISALIGN, 0), EXC_LOAD_PAGE, TEST_MISALIGN);

  /* read-only page */
  check_eq("RO page A clear before", pt_l0_test[1] & (PTE_A | PTE_D), 0);
  check_eq("load RO page", try_load(TEST_RO + 8, &v), 0);
  check_eq("load RO page value", v & 0xff, 0x42);
  check("RO page A set by hardware", pt_l0_test[1] & PTE_A);
  check_fault("store RO page", try_store(TEST_RO + 16, 1), EXC_STORE_PAGE, TEST_RO + 16);
  check_eq("RO page D still clear", pt_l0_test[1] & PTE_D, 0);
  check_eq("RO page unchanged", ((volatile uint64_t *)test_ro)[2], 0);

  /* accessed / dirty bits set by hardware on the R W page */
  check_eq("RW page A/D clear before", pt_l0_test[0] & (PTE_A | PTE_D), 0);
  check_eq("load RW page", try_load(TEST_RW, &v), 0);
  check_eq("load RW page value", v & 0xffffffff, RET);
  check("A set after read", pt_l0_test[0] & PTE_A);
  check("D clear after read", !(pt_l0_test[0] & PTE_D));
  check_eq("store RW page", try_store(TEST_RW + 64, 0xfeedface), 0);
  check("D set after write", pt_l0_test[0] & PTE_D);
  check_eq("store reaches the frame", ((volatile uint64_t *)test_rw)[8], 0xfeedface);

  /* U pages from S: need SUM for loads/stores, never executable */
  csr_clear(sstatus, SSTATUS_SUM);
  check_fault("S load U page without SUM", try_load(TEST_U, 0), EXC_LOAD_PAGE, TEST_U);
  check_fault("S store U page without SUM", try_store(TEST_U + 8, 7), EXC_STORE_PAGE, TEST_U + 8);
  csr_set(sstatus, SSTATUS_SUM);
  check_eq("S load U page with SUM", try_load(TEST_U, &v), 0);
  check_eq("S load U page with SUM value", v, 0x1122334455667788UL);
  check_eq("S store U page with SUM", try_store(TEST_U + 8, 7), 0);
  check_fault("S exec U page with SUM", try_exec(USER_VA + (user_ret_insn - user_blob_start)),
              EXC_INST_PAGE, USER_VA + (user_ret_insn - user_blob_start));
  check_eq("S exec U page sepc", fault_epc[0], USER_VA + (user_ret_insn - user_blob_start));
  csr_clear(sstatus, SSTATUS_SUM);
  check_eq("store with SUM reached frame", ((volatile uint64_t *)test_u)[1], 7);

  /* execute-only page: fetch works, load needs MXR */
  check_eq("exec X-only page", try_exec(TEST_X), 0);
  check_fault("load X-only page without MXR", try_load(TEST_X, 0), EXC_LOAD_PAGE, TEST_X);
  csr_set(sstatus, SSTATUS_MXR);
  check_eq("load X-only page with MXR", try_load(TEST_X, &v), 0);
  check_eq("load X-only page with MXR value", v & 0xffffffff, RET);
  csr_clear(sstatus, SSTATUS_MXR);
  check_fault("exec RW page (no X)", try_exec(TEST_RW), EXC_INST_PAGE, TEST_RW);

  /* S-mode may not touch M-mode CSRs */
  n_faults = 0;
  expect_fault = 1;
  v = 0;
  __asm__ volatile(".option push; .option norvc; csrr %0, mstatus; .option pop" : "+r"(v) :: "memory");
  expect_fault = 0;
  check_fault("S csrr mstatus", n_faults, EXC_ILLEGAL, n_faults == 1 ? *(volatile uint32_t *)fault_epc[0] : 0);
}

/* ------------------------------------------------------------- timer tests */
static void test_timer(void)
{
  printf("minikernel: [timer] supervisor timer interrupts via the M-mode forwarder\n");
  check_eq("sbi unknown call", (unsigned long)sbi_call(0x777, 0), (unsigned long)SBI_ERR_NOT_SUPPORTED);

  ticks = 0;
  tick_target = 3;
  csr_set(sie, MIP_STIP);
  /* a deadline in the past: STIP becomes pending, masked while SIE = 0 */
  sbi_set_timer(0);
  int spins = 0;
  while (!(csr_read(sip) & MIP_STIP) && spins < 1000000)
    spins++;
  check("STIP pending after expired deadline", csr_read(sip) & MIP_STIP);
  check_eq("no interrupt while sstatus.SIE = 0", ticks, 0);

  unsigned long t0 = rdtime();
  unsigned long waits = 0;
  while (ticks < tick_target && waits < 100000000UL) {
    wait_for_interrupt();
    waits++;
  }
  unsigned long t1 = rdtime();
  check_eq("timer interrupts taken", ticks, 3);
  check_eq("timer scause = 0x8000000000000005", timer_cause_ok, 3);
  check("time advanced by >= 2 ticks", t1 - t0 >= 2 * TICK);
  check("STIP clear after final set_timer", !(csr_read(sip) & MIP_STIP));
  csr_clear(sie, MIP_STIP);
}

/* -------------------------------------------------------------- user mode */
static void test_user(void)
{
  printf("minikernel: [user] running a U-mode program at 0x%lx\n", USER_VA);
  unsigned long size = user_blob_end - user_blob_start;
  memset(user_code, 0, PAGE);
  memset(user_data, 0, PAGE);
  memset(user_stack, 0, PAGE);
  memcpy(user_code, user_blob_start, size);
  fence_i();
  sfence_vma();
  csr_write(scounteren, 2);           /* U may read time, not cycle */

  n_faults = 0;
  expect_fault = 1;
  in_user = 1;
  long code = enter_user(USER_VA, USER_STACK_TOP, kctx);
  expect_fault = 0;

  check_eq("user exit code (sum of squares 1..1000)", (unsigned long)code, 333833500UL);
  volatile uint64_t *d = (volatile uint64_t *)user_data;
  check_eq("user data sum", d[0], 333833500UL);
  check_eq("user write() return", d[1], 30);
  check_eq("user rdtime monotonic", d[2], 1);
  check_eq("user unknown syscall", d[3], (unsigned long)-38L);
  check_eq("user traps", n_faults, 4);
#define UOFF(sym) (USER_VA + (unsigned long)(sym - user_blob_start))
  static const char *const names[4] = {
    "U csrr mstatus", "U load kernel page", "U rdcycle (scounteren.CY=0)", "U store code page" };
  const unsigned long causes[4] = { EXC_ILLEGAL, EXC_LOAD_PAGE, EXC_ILLEGAL, EXC_STORE_PAGE };
  char *const where[4] = { user_illegal, user_kload, user_rdcycle, user_codewrite };
  const unsigned long tvals[4] = {
    *(uint32_t *)user_illegal, 0x80000000UL, *(uint32_t *)user_rdcycle, USER_VA };
  for (int i = 0; i < 4 && i < n_faults; i++) {
    char name[64];
    int k = 0;
    for (const char *p = names[i]; *p; p++)
      name[k++] = *p;
    memcpy(name + k, " scause", 8);
    check_eq(name, fault_cause[i], causes[i]);
    memcpy(name + k, " stval", 7);
    check_eq(name, fault_tval[i], tvals[i]);
    memcpy(name + k, " sepc", 6);
    check_eq(name, fault_epc[i], UOFF(where[i]));
  }
  check_eq("user code page unchanged", *(volatile uint32_t *)user_code, *(uint32_t *)user_blob_start);
}

/* ------------------------------------------------------------ virtio-blk */
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
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define QSIZE 8
#define SECTOR 512
#define DISK_SECTORS 128

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
static uint8_t blk_buf[4 * SECTOR] __attribute__((aligned(64)));
static uint16_t used_seen;
static unsigned n_requests;

static const char disk_magic[] = "KMEMVISOR MINIKERNEL DISK v1\n";  /* + NUL */

static uint8_t disk_byte(unsigned long i)   /* pristine content (make-disk.py) */
{
  if (i < sizeof disk_magic)
    return (uint8_t)disk_magic[i];
  return (uint8_t)((i * 31 + 7) ^ (i >> 8));
}

static uint8_t pattern_byte(unsigned long i)
{
  return (uint8_t)((i * 13) ^ (i >> 3) ^ 0xa5);
}

static uint64_t fnv1a(const uint8_t *p, unsigned long n)
{
  uint64_t h = 0xcbf29ce484222325UL;
  for (unsigned long i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3UL;
  return h;
}

static void blk_irq(void)
{
  uint32_t st = VR(VIRTIO_INT_STATUS);
  VR(VIRTIO_INT_ACK) = st & 3;
  fence();
  if (vq_used.idx != used_seen)
    blk_done = 1;
}

static int blk_init(void)
{
  printf("minikernel: [virtio] virtio-blk at 0x%lx, PLIC source 1, S-mode context 1\n", VIRTIO0);
  check_eq("virtio magic", VR(VIRTIO_MAGIC), 0x74726976);
  check_eq("virtio version (modern)", VR(VIRTIO_VERSION), 2);
  check_eq("virtio device id (blk)", VR(VIRTIO_DEVICE_ID), 2);
  if (VR(VIRTIO_MAGIC) != 0x74726976 || VR(VIRTIO_VERSION) != 2 || VR(VIRTIO_DEVICE_ID) != 2)
    return 0;

  VR(VIRTIO_STATUS) = 0;              /* reset */
  check_eq("virtio status after reset", VR(VIRTIO_STATUS), 0);
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE;
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE | ST_DRIVER;

  VR(VIRTIO_DEV_FEAT_SEL) = 1;
  uint32_t hi = VR(VIRTIO_DEV_FEAT);
  check("device offers VIRTIO_F_VERSION_1", hi & 1);
  VR(VIRTIO_DRV_FEAT_SEL) = 1;
  VR(VIRTIO_DRV_FEAT) = 1;            /* VERSION_1 (bit 32) and nothing else */
  VR(VIRTIO_DRV_FEAT_SEL) = 0;
  VR(VIRTIO_DRV_FEAT) = 0;
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK;
  check_eq("virtio FEATURES_OK accepted", VR(VIRTIO_STATUS) & ST_FEATURES_OK, ST_FEATURES_OK);

  VR(VIRTIO_QUEUE_SEL) = 0;
  check_eq("queue 0 not ready", VR(VIRTIO_QUEUE_READY), 0);
  uint32_t max = VR(VIRTIO_QUEUE_NUM_MAX);
  check("queue 0 size max >= 8", max >= QSIZE);
  VR(VIRTIO_QUEUE_NUM) = QSIZE;
  VR(VIRTIO_QUEUE_DESC_LO) = (uint32_t)(uintptr_t)vq_desc;
  VR(VIRTIO_QUEUE_DESC_HI) = (uint32_t)((uintptr_t)vq_desc >> 32);
  VR(VIRTIO_QUEUE_DRIVER_LO) = (uint32_t)(uintptr_t)&vq_avail;
  VR(VIRTIO_QUEUE_DRIVER_HI) = (uint32_t)((uintptr_t)&vq_avail >> 32);
  VR(VIRTIO_QUEUE_DEVICE_LO) = (uint32_t)(uintptr_t)&vq_used;
  VR(VIRTIO_QUEUE_DEVICE_HI) = (uint32_t)((uintptr_t)&vq_used >> 32);
  VR(VIRTIO_QUEUE_READY) = 1;
  check_eq("queue 0 ready", VR(VIRTIO_QUEUE_READY), 1);
  VR(VIRTIO_STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK;

  uint32_t gen, lo, hi2;
  do {
    gen = VR(VIRTIO_CONFIG_GEN);
    lo = VR(VIRTIO_CONFIG);
    hi2 = VR(VIRTIO_CONFIG + 4);
  } while (gen != VR(VIRTIO_CONFIG_GEN));
  check_eq("disk capacity (sectors)", ((uint64_t)hi2 << 32) | lo, DISK_SECTORS);

  /* PLIC: source 1 priority 1, enabled for hart 0 S-mode (context 1), threshold 0 */
  *(volatile uint32_t *)(0x0c000000 + 4 * 1) = 1;
  *(volatile uint32_t *)(0x0c002000 + 0x80 * 1) = 1u << 1;
  *(volatile uint32_t *)(0x0c200000 + 0x1000 * 1) = 0;
  check_eq("PLIC priority readback", *(volatile uint32_t *)(0x0c000000 + 4), 1);
  check_eq("PLIC enable readback", *(volatile uint32_t *)(0x0c002080), 2);
  check_eq("PLIC claim with nothing pending", *(volatile uint32_t *)0x0c201004, 0);
  csr_set(sie, 1UL << IRQ_S_EXT);
  return 1;
}

/* One request (header, data, status descriptors), completed by interrupt.
 * Returns the status byte (0xff on time-out); *used_len = used.len. */
static int blk_rw(uint32_t type, uint64_t sector, void *data, uint32_t len, uint32_t *used_len)
{
  blk_hdr.type = type;
  blk_hdr.reserved = 0;
  blk_hdr.sector = sector;
  blk_status = 0xff;
  vq_desc[0] = (struct virtq_desc){ (uintptr_t)&blk_hdr, sizeof blk_hdr, VRING_DESC_F_NEXT, 1 };
  vq_desc[1] = (struct virtq_desc){ (uintptr_t)data, len,
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
  struct virtq_used_elem e = { vq_used.ring[used_seen % QSIZE].id, vq_used.ring[used_seen % QSIZE].len };
  used_seen = vq_used.idx;
  check_eq("used.id = head descriptor", e.id, 0);
  *used_len = e.len;
  return blk_status;
}

static void check_sectors(const char *name, const uint8_t *buf, uint64_t first, unsigned n,
                          uint8_t (*gen)(unsigned long), uint64_t gen_base)
{
  uint8_t want[SECTOR];
  for (unsigned s = 0; s < n; s++) {
    unsigned bad = 0;
    for (unsigned i = 0; i < SECTOR; i++) {
      want[i] = gen(gen_base + (first + s) * SECTOR + i);
      bad += buf[s * SECTOR + i] != want[i];
    }
    char nm[80];
    int k = 0;
    for (const char *p = name; *p && k < 50; p++)
      nm[k++] = *p;
    nm[k++] = ' ';
    nm[k++] = 's';
    nm[k++] = (char)('0' + (first + s) / 100 % 10);
    nm[k++] = (char)('0' + (first + s) / 10 % 10);
    nm[k++] = (char)('0' + (first + s) % 10);
    memcpy(nm + k, " checksum", 10);
    check_eq(nm, fnv1a(buf + s * SECTOR, SECTOR), fnv1a(want, SECTOR));
    memcpy(nm + k, " bad bytes", 11);
    check_eq(nm, bad, 0);
  }
}

static uint8_t pattern_in_sector7(unsigned long i)   /* i = disk offset */
{
  return pattern_byte(i - 7 * SECTOR);
}

static void test_virtio(void)
{
  if (!blk_init())
    return;
  uint32_t ulen = 0;
  int st;

  memset(blk_buf, 0, sizeof blk_buf);
  st = blk_rw(VIRTIO_BLK_T_IN, 0, blk_buf, SECTOR, &ulen);
  check_eq("read s0 status", st, VIRTIO_BLK_S_OK);
  check_eq("read s0 used.len", ulen, SECTOR + 1);
  check("read s0 magic", memcmp(blk_buf, disk_magic, sizeof disk_magic) == 0);
  check_sectors("read", blk_buf, 0, 1, disk_byte, 0);

  memset(blk_buf, 0, sizeof blk_buf);
  st = blk_rw(VIRTIO_BLK_T_IN, 5, blk_buf, SECTOR, &ulen);
  check_eq("read s5 status", st, VIRTIO_BLK_S_OK);
  check_sectors("read", blk_buf, 5, 1, disk_byte, 0);

  memset(blk_buf, 0, sizeof blk_buf);
  st = blk_rw(VIRTIO_BLK_T_IN, 6, blk_buf, 3 * SECTOR, &ulen);
  check_eq("read s6-8 status", st, VIRTIO_BLK_S_OK);
  check_eq("read s6-8 used.len", ulen, 3 * SECTOR + 1);
  check_sectors("pristine", blk_buf, 6, 3, disk_byte, 0);

  /* write a pattern to sector 7, read 6..8 back */
  for (unsigned i = 0; i < SECTOR; i++)
    blk_buf[i] = pattern_byte(i);
  st = blk_rw(VIRTIO_BLK_T_OUT, 7, blk_buf, SECTOR, &ulen);
  check_eq("write s7 status", st, VIRTIO_BLK_S_OK);
  check_eq("write s7 used.len", ulen, 1);
  memset(blk_buf, 0, sizeof blk_buf);
  st = blk_rw(VIRTIO_BLK_T_IN, 6, blk_buf, 3 * SECTOR, &ulen);
  check_eq("reread s6-8 status", st, VIRTIO_BLK_S_OK);
  check_sectors("after write", blk_buf, 6, 1, disk_byte, 0);
  check_sectors("after write", blk_buf + SECTOR, 7, 1, pattern_in_sector7, 0);
  check_sectors("after write", blk_buf + 2 * SECTOR, 8, 1, disk_byte, 0);

  /* restore sector 7, so that a successful run leaves the image pristine */
  for (unsigned i = 0; i < SECTOR; i++)
    blk_buf[i] = disk_byte(7 * SECTOR + i);
  st = blk_rw(VIRTIO_BLK_T_OUT, 7, blk_buf, SECTOR, &ulen);
  check_eq("restore s7 status", st, VIRTIO_BLK_S_OK);
  memset(blk_buf, 0, sizeof blk_buf);
  st = blk_rw(VIRTIO_BLK_T_IN, 7, blk_buf, SECTOR, &ulen);
  check_eq("reread s7 status", st, VIRTIO_BLK_S_OK);
  check_sectors("restored", blk_buf, 7, 1, disk_byte, 0);

  /* errors: past the end of the disk, unknown request type */
  st = blk_rw(VIRTIO_BLK_T_IN, DISK_SECTORS, blk_buf, SECTOR, &ulen);
  check_eq("read past end status IOERR", st, VIRTIO_BLK_S_IOERR);
  st = blk_rw(0x7f, 0, blk_buf, SECTOR, &ulen);
  check_eq("unknown request type status UNSUPP", st, VIRTIO_BLK_S_UNSUPP);

  check_eq("virtio interrupts (one per request)", ext_irqs, n_requests);
  check_eq("other PLIC sources", ext_other, 0);
  check_eq("spurious claims", ext_spurious, 0);
  csr_clear(sie, 1UL << IRQ_S_EXT);
}

/* ----------------------------------------------------------------- S-mode */
void s_main(void)
{
  printf("minikernel: S-mode entered\n");
  csr_write(sscratch, 0);
  csr_write(stvec, s_trap_entry);

  build_page_tables();
  sfence_vma();
  csr_write(satp, SATP_SV39 | ((uintptr_t)pt_root >> 12));
  sfence_vma();

  test_paging();
  test_timer();
  test_user();
  test_virtio();

  printf("minikernel: %d checks, %d failures\n", n_checks, n_failures);
  exit(n_failures);
}
