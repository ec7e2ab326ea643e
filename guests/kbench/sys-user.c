/* syscalls: the user program (U-mode, its own address space from 0x1000).
 * Built three ways: full (syscalls.elf), -DSMALL (syscalls-small.elf), and
 * -DMICRO (micro-syscall.elf: only the getpid loop, `iterations` times).
 *   1. system calls in a loop: count() must return 1, 2, 3, ... (the kernel
 *      counts this process's calls), getpid() must return 1;
 *   2. sbrk: the heap grows a page at a time; every new page must read as
 *      zeros; each is filled with a pattern; then the heap shrinks by half
 *      and grows back (frames the kernel reuses must come back zeroed) and
 *      everything is checked;
 *   3. fork, repeatedly: the child checks that it sees the parent's heap,
 *      overwrites its copy, grows its own heap, and exits with a checksum of
 *      what it wrote; the parent reaps it with wait(), checks the pid and the
 *      status against the checksum it computes itself, and checks that its
 *      own heap is unchanged.
 * It exits with the number of failed checks and prints one line per phase
 * through write(). */
#include <stdint.h>
#include "sys.h"

#ifdef MICRO
/* micro-syscall's loop count arrives in a0 from the kernel's `iterations`
 * (which the benchmark runner patches in the ELF; its default keeps the
 * test short) */
#elif defined(SMALL)
#define CALLS 4000
#define HEAP_PAGES 16
#define FORKS 6
#else
#define CALLS 80000
#define HEAP_PAGES 64
#define FORKS 300
#endif

static long syscall3(long n, long a0, long a1, long a2)
{
  register long r0 __asm__("a0") = a0;
  register long r1 __asm__("a1") = a1;
  register long r2 __asm__("a2") = a2;
  register long r7 __asm__("a7") = n;
  __asm__ volatile("ecall" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r7) : "memory");
  return r0;
}
#define getpid() syscall3(SYS_getpid, 0, 0, 0)
#define count() syscall3(SYS_count, 0, 0, 0)
#define sbrk(n) syscall3(SYS_sbrk, (n), 0, 0)
#define fork() syscall3(SYS_fork, 0, 0, 0)
#define wait(st) syscall3(SYS_wait, (long)(st), 0, 0)
#define write(b, n) syscall3(SYS_write, (long)(b), (long)(n), 0)
static void uexit(long code) __attribute__((noreturn));
static void uexit(long code)
{
  syscall3(SYS_exit, code, 0, 0);
  for (;;)
    ;
}

/* output: a line built in a buffer, then one write() */
static char line[128];
static unsigned len;
static void put(const char *s) { while (*s && len < sizeof line) line[len++] = *s++; }
__attribute__((unused)) static void put_dec(unsigned long v)
{
  char b[24];
  int n = 0;
  do { b[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (n && len < sizeof line) line[len++] = b[--n];
}
static void put_hex(unsigned long v)
{
  put("0x");
  for (int i = 15; i >= 0 && len < sizeof line; i--)
    line[len++] = "0123456789abcdef"[(v >> (4 * i)) & 15];
}
static void flush(void) { write(line, len); len = 0; }

static int failures;
static void check(const char *what, unsigned long got, unsigned long want)
{
  if (got != want) {
    failures++;
    put("syscalls: FAIL ");
    put(what);
    put(": got ");
    put_hex(got);
    put(" expected ");
    put_hex(want);
    put("\n");
    flush();
  }
}

#ifndef MICRO
static uint64_t pattern(unsigned long gen, unsigned long page, unsigned long word)
{
  uint64_t x = (page * 512 + word + 1) * 0x9e3779b97f4a7c15ULL ^ (gen * 0xc2b2ae3d27d4eb4fULL);
  return x ^ (x >> 29);
}

static uint64_t *heap;

static void fill_pages(unsigned long gen, unsigned long first, unsigned long n)
{
  for (unsigned long p = first; p < first + n; p++)
    for (unsigned long w = 0; w < 512; w += 8)      /* every 8th word: the copy is what matters */
      heap[p * 512 + w] = pattern(gen, p, w);
}

static unsigned long bad_pages(unsigned long gen, unsigned long first, unsigned long n)
{
  unsigned long bad = 0;
  for (unsigned long p = first; p < first + n; p++)
    for (unsigned long w = 0; w < 512; w += 8)
      bad += heap[p * 512 + w] != pattern(gen, p, w);
  return bad;
}

static uint64_t sum_pages(unsigned long gen, unsigned long n)
{
  uint64_t s = 0;
  for (unsigned long p = 0; p < n; p++)
    for (unsigned long w = 0; w < 512; w += 8)
      s = s * 31 + pattern(gen, p, w);
  return s;
}
#endif

__attribute__((section(".text.start"))) void _start(unsigned long arg)
{
  (void)arg;
  check("getpid of the first process", (unsigned long)getpid(), 1);
#ifdef MICRO
  unsigned long n = arg, bad = 0;
  for (unsigned long i = 0; i < n; i++)
    bad += getpid() != 1;
  check("getpid in the loop", bad, 0);
  put("micro-syscall: getpid round trips done\n");
  flush();
  uexit(failures);
#else
  /* 1. system calls */
  unsigned long c0 = (unsigned long)count();     /* the calls so far, this one included */
  unsigned long sum = 0, pids = 0;
  for (unsigned long i = 0; i < CALLS / 2; i++) {
    sum += (unsigned long)count();
    pids += (unsigned long)getpid();
  }
  /* count() in round i returns c0 + 2i + 1 */
  const unsigned long n = CALLS / 2;
  check("sum of count()", sum, n * (c0 + 1) + n * (n - 1));
  check("sum of getpid()", pids, n);
  put("syscalls: ");
  put_dec(CALLS);
  put(" system calls, count() sum ");
  put_dec(sum);
  put("\n");
  flush();

  /* 2. sbrk */
  heap = (uint64_t *)sbrk(0);
  for (unsigned long p = 0; p < HEAP_PAGES; p++) {
    uint64_t *page = (uint64_t *)sbrk(4096);
    check("sbrk returns the old break", (unsigned long)page, (unsigned long)(heap + p * 512));
    unsigned long nonzero = 0;
    for (unsigned long w = 0; w < 512; w++)
      nonzero += page[w] != 0;
    check("new heap page is zero", nonzero, 0);
    fill_pages(0, p, 1);
  }
  check("heap after growing", bad_pages(0, 0, HEAP_PAGES), 0);
  check("sbrk(-half)", (unsigned long)sbrk(-(long)(HEAP_PAGES / 2 * 4096)), (unsigned long)(heap + HEAP_PAGES * 512));
  unsigned long zero_again = 0;
  for (unsigned long p = HEAP_PAGES / 2; p < HEAP_PAGES; p++) {
    uint64_t *page = (uint64_t *)sbrk(4096);
    for (unsigned long w = 0; w < 512; w++)
      zero_again += page[w] != 0;
  }
  check("regrown heap pages are zero", zero_again, 0);
  fill_pages(0, HEAP_PAGES / 2, HEAP_PAGES / 2);
  check("heap after shrinking and regrowing", bad_pages(0, 0, HEAP_PAGES), 0);
  put("syscalls: heap of ");
  put_dec(HEAP_PAGES);
  put(" pages grown, halved and regrown\n");
  flush();

  /* 3. fork */
  uint64_t total = 0;
  for (unsigned long f = 1; f <= FORKS; f++) {
    long pid = fork();
    if (pid == 0) {
      /* the child: the parent's heap, then its own */
      long bad = (long)bad_pages(0, 0, HEAP_PAGES);
      fill_pages(f, 0, HEAP_PAGES);
      uint64_t *more = (uint64_t *)sbrk(2 * 4096);
      more[0] = f;
      more[1023] = f;
      if (bad || getpid() != (long)(f + 1) || more[0] + more[1023] != 2 * f)
        uexit(-1);
      uexit((long)(sum_pages(f, HEAP_PAGES) >> 1));
    }
    check("fork returns the child's pid", (unsigned long)pid, f + 1);
    long status = 0;
    check("wait returns the child's pid", (unsigned long)wait(&status), f + 1);
    check("child's exit status (checksum of its heap)", (unsigned long)status, (unsigned long)(sum_pages(f, HEAP_PAGES) >> 1));
    total += (uint64_t)status;
    check("wait with no child left", (unsigned long)wait(0), (unsigned long)-1);
  }
  check("the parent's heap after the children wrote theirs", bad_pages(0, 0, HEAP_PAGES), 0);
  put("syscalls: ");
  put_dec(FORKS);
  put(" forks, children's checksum ");
  put_hex(total);
  put("\n");
  flush();
  check("getpid after the forks", (unsigned long)getpid(), 1);
  uexit(failures);
#endif
}
