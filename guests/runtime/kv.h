/* kmemvisor guest runtime: freestanding helpers (no libc). */
#ifndef KV_H
#define KV_H
#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>

#define UART_BASE     0x10000000UL
#define FINISHER_BASE 0x00100000UL
#define CLINT_BASE    0x02000000UL

/* UART 16550 console */
void uart_putc(char c);
void uart_puts(const char *s);           /* no newline appended */
int  putchar(int c);
int  printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  vprintf(const char *fmt, va_list ap);

/* sifive_test finisher: exit(0) -> 0x5555, else (code<<16)|0x3333 */
void exit(int code) __attribute__((noreturn));

/* Called on every hart except hart 0 (weak; default parks in wfi). */
void hart_main(unsigned long hartid);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int   memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int   strcmp(const char *a, const char *b);

#define csr_read(csr) ({ unsigned long __v; \
  __asm__ volatile("csrr %0, " #csr : "=r"(__v) :: "memory"); __v; })
#define csr_write(csr, val) ({ unsigned long __v = (unsigned long)(val); \
  __asm__ volatile("csrw " #csr ", %0" :: "rK"(__v) : "memory"); })

static inline unsigned long hartid(void) { return csr_read(mhartid); }
static inline unsigned long rdcycle(void) { unsigned long v; __asm__ volatile("rdcycle %0" : "=r"(v)); return v; }
static inline unsigned long rdtime(void) { unsigned long v; __asm__ volatile("rdtime %0" : "=r"(v)); return v; }
static inline unsigned long rdinstret(void) { unsigned long v; __asm__ volatile("rdinstret %0" : "=r"(v)); return v; }

/* Deterministic pseudo-random generator (xorshift64*). */
static inline uint64_t kv_rand64(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Free RAM after the image (4 KiB aligned); not cleared by crt0. */
extern char __heap_start[];
#define KV_RAM_END 0x88000000UL   /* 128 MiB default */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
