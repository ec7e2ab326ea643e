/* syscalls: a minikernel-style S-mode kernel running user processes the
 * way xv6 does, to reproduce what system calls cost a kernel on an emulator:
 *  - a separate kernel page table: the kernel's identity map does not map
 *    user memory, and each process has its own page table that maps only
 *    the process (and the trampoline and its trap frame);
 *  - a satp switch and a full TLB flush (sfence.vma) on every trap entry and
 *    return (trampoline.S);
 *  - system calls: getpid, count, sbrk (allocates, zeroes and maps pages, or
 *    unmaps and frees them), fork (a new page table and a copy of every page
 *    of the process), wait, exit, write (copied in from user memory through
 *    a software walk of the process's page table, as xv6's copyin).
 * Scheduling is the simplest that is still fork: a fork runs the child at
 * once, to its exit; then the parent resumes from its fork (vfork order,
 * but the child works on its own copy of every page).
 *
 * The user program (sys-user.c; -DMICRO: micro-syscall's) checks what every
 * call returned, and the contents of its memory after sbrk and fork, and
 * exits with the number of failed checks.  The kernel checks that every
 * page it allocated was freed again when the processes exited (no leak:
 * the free-page count comes back), and that the process tree came back to
 * the first process; it prints its counts (system calls, forks, pages
 * copied, pages allocated by sbrk) and exits with the user's status plus
 * its own failures. */
#include "kb.h"
#include "sys.h"

extern char trampoline[], uservec[], userret[], trampoline_end[];
extern char userimg_start[], userimg_end[];

/* ------------------------------------------------------ physical pages */
/* pages from the end of the image up to the end of RAM, in a free list */
struct run { struct run *next; };
static struct run *free_list;
static unsigned long n_free;

static void kfree(void *pa)
{
  struct run *r = pa;
  r->next = free_list;
  free_list = r;
  n_free++;
}

static void *kalloc(void)
{
  struct run *r = free_list;
  if (!r) {
    printf("syscalls: FAIL out of memory\n");
    exit(254);
  }
  free_list = r->next;
  n_free--;
  return r;
}

static void *kalloc_zeroed(void)
{
  uint64_t *p = kalloc();
  for (unsigned i = 0; i < PAGE / 8; i++)
    p[i] = 0;
  return p;
}

/* ------------------------------------------------------------ page tables */
static uint64_t *walk(uint64_t *root, uintptr_t va, int alloc)
{
  uint64_t *pt = root;
  for (int level = 2; level > 0; level--) {
    uint64_t *pte = &pt[(va >> (12 + 9 * level)) & 511];
    if (*pte & PTE_V) {
      pt = (uint64_t *)pte_pa(*pte);
    } else {
      if (!alloc)
        return 0;
      pt = kalloc_zeroed();
      *pte = pte_of((uintptr_t)pt, PTE_V);
    }
  }
  return &pt[(va >> 12) & 511];
}

static void map_page(uint64_t *root, uintptr_t va, uintptr_t pa, uint64_t flags)
{
  uint64_t *pte = walk(root, va, 1);
  if (*pte & PTE_V) {
    printf("syscalls: FAIL remap of 0x%lx\n", (unsigned long)va);
    exit(254);
  }
  *pte = pte_of(pa, flags | PTE_V | PTE_A | PTE_D);
}

/* unmap a user page and free its frame */
static void unmap_free(uint64_t *root, uintptr_t va)
{
  uint64_t *pte = walk(root, va, 0);
  if (!pte || !(*pte & PTE_V)) {
    printf("syscalls: FAIL unmap of unmapped 0x%lx\n", (unsigned long)va);
    exit(254);
  }
  kfree((void *)pte_pa(*pte));
  *pte = 0;
}

static void free_tables(uint64_t *pt, int level)
{
  for (int i = 0; i < 512; i++) {
    if ((pt[i] & PTE_V) && !(pt[i] & (PTE_R | PTE_W | PTE_X)) && level > 0)
      free_tables((uint64_t *)pte_pa(pt[i]), level - 1);
  }
  kfree(pt);
}

/* ------------------------------------------------------------ processes */
enum { UNUSED, RUNNABLE, WAITING_CHILD, ZOMBIE };
struct proc {
  int state, pid;
  struct proc *parent;
  uint64_t *pagetable;
  uint8_t *trapframe;          /* physical page */
  unsigned long sz;            /* user memory is [USER_BASE, sz) */
  unsigned long heap_base;
  unsigned long syscalls;
  long xstatus;
};
#define NPROC 8
static struct proc procs[NPROC];
static struct proc *current;
static int next_pid = 1;

static uint64_t *k_pagetable;
static unsigned long kernel_satp;
static uint8_t kstack[16384] __attribute__((aligned(16)));

static unsigned long n_syscalls, n_forks, n_pages_copied, n_sbrk_pages, n_write_bytes;
static int n_checks, n_failures;

static void check_eq(const char *name, unsigned long got, unsigned long want)
{
  n_checks++;
  if (got != want) {
    n_failures++;
    printf("syscalls: FAIL %s: got 0x%lx expected 0x%lx\n", name, got, want);
  }
}

#define TF(p, off) (*(uint64_t *)((p)->trapframe + (off)))
#define TF_A(p, n) TF(p, TF_X(10 + (n)))

static struct proc *proc_alloc(void)
{
  for (int i = 0; i < NPROC; i++) {
    struct proc *p = &procs[i];
    if (p->state == UNUSED) {
      p->pid = next_pid++;
      p->pagetable = kalloc_zeroed();
      p->trapframe = kalloc_zeroed();
      p->syscalls = 0;
      p->parent = 0;
      map_page(p->pagetable, TRAMPOLINE, (uintptr_t)trampoline, PTE_R | PTE_X);
      map_page(p->pagetable, TRAPFRAME, (uintptr_t)p->trapframe, PTE_R | PTE_W);
      return p;
    }
  }
  return 0;
}

static void proc_free(struct proc *p)
{
  for (unsigned long va = USER_BASE; va < p->sz; va += PAGE)
    unmap_free(p->pagetable, va);
  /* the trampoline page is the kernel's: unmap it before freeing the tables */
  *walk(p->pagetable, TRAMPOLINE, 0) = 0;
  unmap_free(p->pagetable, TRAPFRAME);
  free_tables(p->pagetable, 2);
  p->state = UNUSED;
}

/* The first process gets this in a0: micro-syscall's loop count (the others
 * ignore it).  A kernel variable, so that the benchmark runner can patch it
 * in the ELF (the user program is only an image inside the kernel's). */
volatile unsigned long iterations = 5000;

/* the first process: the image, its stack, an empty heap */
static struct proc *proc_first(void)
{
  struct proc *p = proc_alloc();
  unsigned long size = (unsigned long)(userimg_end - userimg_start);
  unsigned long va = USER_BASE;
  for (unsigned long off = 0; off < size + PAGE; off += PAGE, va += PAGE) {
    /* one page more than the image: the program's .bss follows it (sys-user.ld) */
    uint8_t *page = kalloc_zeroed();
    for (unsigned long i = 0; i < PAGE && off + i < size; i++)
      page[i] = (uint8_t)userimg_start[off + i];
    map_page(p->pagetable, va, (uintptr_t)page, PTE_R | PTE_W | PTE_X | PTE_U);
  }
  for (int i = 0; i < USER_STACK_PAGES; i++, va += PAGE)
    map_page(p->pagetable, va, (uintptr_t)kalloc_zeroed(), PTE_R | PTE_W | PTE_U);
  p->sz = va;
  p->heap_base = va;
  TF(p, TF_EPC) = USER_BASE;
  TF(p, TF_X(2)) = va;          /* sp: the top of the stack */
  TF_A(p, 0) = iterations;
  p->state = RUNNABLE;
  return p;
}

static void usertrap(void) __attribute__((noreturn));

/* return to the current process (never returns here) */
static void usertrapret(void) __attribute__((noreturn));
static void usertrapret(void)
{
  struct proc *p = current;
  csr_write(stvec, TRAMPOLINE + (uservec - trampoline));
  TF(p, TF_KERNEL_SATP) = kernel_satp;
  TF(p, TF_KERNEL_SP) = (uint64_t)(uintptr_t)(kstack + sizeof kstack);
  TF(p, TF_KERNEL_TRAP) = (uint64_t)(uintptr_t)usertrap;
  uint64_t gp;
  __asm__ volatile("mv %0, gp" : "=r"(gp));
  TF(p, TF_KERNEL_GP) = gp;
  csr_clear(sstatus, SSTATUS_SPP);   /* sret to U */
  csr_set(sstatus, SSTATUS_SPIE);
  unsigned long satp = SATP_SV39 | ((uintptr_t)p->pagetable >> 12);
  void (*ret)(unsigned long) = (void (*)(unsigned long))(TRAMPOLINE + (userret - trampoline));
  ret(satp);
  __builtin_unreachable();
}

/* copy n bytes from user VA src of process p (software walk of its page table) */
static int copyin(struct proc *p, char *dst, unsigned long src, unsigned long n)
{
  while (n) {
    if (src < USER_BASE || src >= p->sz)
      return -1;
    uint64_t *pte = walk(p->pagetable, src, 0);
    if (!pte || (*pte & (PTE_V | PTE_U)) != (PTE_V | PTE_U))
      return -1;
    unsigned long off = src & (PAGE - 1), chunk = PAGE - off;
    if (chunk > n)
      chunk = n;
    memcpy(dst, (char *)pte_pa(*pte) + off, chunk);
    dst += chunk;
    src += chunk;
    n -= chunk;
  }
  return 0;
}

static int copyout(struct proc *p, unsigned long dst, const void *src, unsigned long n)
{
  if (dst < USER_BASE || dst + n > p->sz || ((dst ^ (dst + n - 1)) >> 12))
    return -1;                 /* one page at most: all this kernel needs */
  uint64_t *pte = walk(p->pagetable, dst, 0);
  if (!pte || (*pte & (PTE_V | PTE_U | PTE_W)) != (PTE_V | PTE_U | PTE_W))
    return -1;
  memcpy((char *)pte_pa(*pte) + (dst & (PAGE - 1)), src, n);
  return 0;
}

static long sys_sbrk(struct proc *p, long n)
{
  unsigned long old = p->sz;
  if (n > 0) {
    unsigned long top = (old + (unsigned long)n + PAGE - 1) & ~(PAGE - 1);
    for (unsigned long va = old; va < top; va += PAGE) {
      map_page(p->pagetable, va, (uintptr_t)kalloc_zeroed(), PTE_R | PTE_W | PTE_U);
      n_sbrk_pages++;
    }
    p->sz = top;
  } else if (n < 0) {
    unsigned long top = old - (unsigned long)(-n);
    if (top < p->heap_base || (top & (PAGE - 1)))
      return -1;
    for (unsigned long va = top; va < old; va += PAGE)
      unmap_free(p->pagetable, va);
    p->sz = top;
    /* the pages are gone: no stale translation may survive the return */
    sfence_vma();
  }
  return (long)old;
}

static long sys_fork(struct proc *p)
{
  struct proc *c = proc_alloc();
  if (!c)
    return -1;
  for (unsigned long va = USER_BASE; va < p->sz; va += PAGE) {
    uint64_t *pte = walk(p->pagetable, va, 0);
    uint64_t *page = kalloc();
    memcpy(page, (void *)pte_pa(*pte), PAGE);
    map_page(c->pagetable, va, (uintptr_t)page, *pte & (PTE_R | PTE_W | PTE_X | PTE_U));
    n_pages_copied++;
  }
  memcpy(c->trapframe, p->trapframe, TF_SIZE);
  c->sz = p->sz;
  c->heap_base = p->heap_base;
  c->parent = p;
  TF_A(c, 0) = 0;               /* fork returns 0 in the child */
  TF(c, TF_EPC) += 4;
  c->state = RUNNABLE;
  n_forks++;
  /* the child runs first, to its exit; the parent sees its pid then */
  p->state = WAITING_CHILD;
  TF_A(p, 0) = (uint64_t)c->pid;
  TF(p, TF_EPC) += 4;
  current = c;
  return 0;
}

static void sys_exit(struct proc *p, long code) __attribute__((noreturn));
static void sys_exit(struct proc *p, long code)
{
  p->xstatus = code;
  if (!p->parent) {
    /* the first process: the run is over */
    unsigned long user_syscalls = p->syscalls;
    proc_free(p);
    extern unsigned long free_at_start;
    check_eq("every page freed again", n_free, free_at_start);
    printf("syscalls: kernel: %lu system calls (%lu by the first process), %lu forks, %lu pages copied, %lu pages from sbrk, %lu bytes written\n",
           n_syscalls, user_syscalls, n_forks, n_pages_copied, n_sbrk_pages, n_write_bytes);
    if (code != 0)
      printf("syscalls: FAIL the user program exited with %ld\n", code);
    printf("syscalls: %s, %d kernel checks\n", code == 0 && n_failures == 0 ? "OK" : "FAILED", n_checks);
    exit((int)code + n_failures);
  }
  p->state = ZOMBIE;
  current = p->parent;
  current->state = RUNNABLE;
  usertrapret();
}

static long sys_wait(struct proc *p, unsigned long status_va)
{
  for (int i = 0; i < NPROC; i++) {
    struct proc *c = &procs[i];
    if (c->state == ZOMBIE && c->parent == p) {
      long st = c->xstatus;
      int pid = c->pid;
      if (status_va && copyout(p, status_va, &st, sizeof st) < 0)
        return -1;
      proc_free(c);
      return pid;
    }
  }
  return -1;
}

static void usertrap(void)
{
  csr_write(stvec, s_trap_entry);     /* a trap in the kernel is a bug */
  struct proc *p = current;
  unsigned long cause = csr_read(scause);
  if (cause != EXC_ECALL_U) {
    printf("syscalls: FAIL user trap scause=0x%lx sepc=0x%lx stval=0x%lx pid %d\n",
           cause, (unsigned long)TF(p, TF_EPC), csr_read(stval), p->pid);
    exit(253);
  }
  n_syscalls++;
  p->syscalls++;
  long a0 = (long)TF_A(p, 0), ret;
  switch (TF_A(p, 7)) {
  case SYS_getpid:
    ret = p->pid;
    break;
  case SYS_count:
    ret = (long)p->syscalls;
    break;
  case SYS_sbrk:
    ret = sys_sbrk(p, a0);
    break;
  case SYS_fork:
    if (sys_fork(p) == 0)
      usertrapret();            /* into the child */
    ret = -1;
    break;
  case SYS_wait:
    ret = sys_wait(p, (unsigned long)a0);
    break;
  case SYS_exit:
    sys_exit(p, a0);
  case SYS_write: {
    char buf[256];
    unsigned long n = TF_A(p, 1);
    if (n > sizeof buf || copyin(p, buf, (unsigned long)a0, n) < 0) {
      ret = -1;
      break;
    }
    for (unsigned long i = 0; i < n; i++)
      uart_putc(buf[i]);
    n_write_bytes += n;
    ret = (long)n;
    break;
  }
  default:
    ret = -38;
  }
  TF_A(p, 0) = (uint64_t)ret;
  TF(p, TF_EPC) += 4;
  usertrapret();
}

void s_trap(void)
{
  printf("syscalls: FAIL kernel trap scause=0x%lx sepc=0x%lx stval=0x%lx\n",
         csr_read(scause), csr_read(sepc), csr_read(stval));
  exit(252);
}

unsigned long free_at_start;

static void s_main(void) __attribute__((noreturn));
static void s_main(void)
{
  csr_write(stvec, s_trap_entry);
  for (uintptr_t pa = (uintptr_t)__heap_start; pa + PAGE <= KV_RAM_END; pa += PAGE)
    kfree((void *)pa);
  /* the kernel page table: the identity map, plus the trampoline at the top */
  k_pagetable = kernel_identity_map();
  map_page(k_pagetable, TRAMPOLINE, (uintptr_t)trampoline, PTE_R | PTE_X);
  kernel_satp = SATP_SV39 | ((uintptr_t)k_pagetable >> 12);
  csr_write(satp, kernel_satp);
  sfence_vma();
  free_at_start = n_free;
  check_eq("trampoline is one page", (unsigned long)(trampoline_end - trampoline), PAGE);

  current = proc_first();
  usertrapret();
}

int main(void)
{
  m_enter_s(s_main);
}
