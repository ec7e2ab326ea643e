/* kmemvisor guest runtime: UART console, printf, exit, string helpers. */
#include "kv.h"

#define UART_THR 0
#define UART_LSR 5
#define LSR_THRE 0x20

void uart_putc(char c)
{
  volatile uint8_t *u = (volatile uint8_t *)UART_BASE;
  while (!(u[UART_LSR] & LSR_THRE))
    ;
  u[UART_THR] = (uint8_t)c;
}

void uart_puts(const char *s)
{
  while (*s)
    uart_putc(*s++);
}

int putchar(int c)
{
  uart_putc((char)c);
  return (unsigned char)c;
}

#ifdef KV_REPORT_INSTRET
unsigned long kv_instret0;
#endif

void exit(int code)
{
  volatile uint32_t *f = (volatile uint32_t *)FINISHER_BASE;
  uint32_t c = (uint32_t)code & 0xffff;
#ifdef KV_REPORT_INSTRET
  /* debugging aid only (never in committed builds): with QEMU -icount shift=0
   * minstret counts retired instructions */
  extern unsigned long kv_instret0;
  printf("[instret %lu]\n", rdinstret() - kv_instret0);
#endif
  __asm__ volatile("fence rw, rw" ::: "memory");
  *f = c == 0 ? 0x5555 : (c << 16) | 0x3333;
  for (;;)
    __asm__ volatile("wfi");
}

__attribute__((weak)) void hart_main(unsigned long id)
{
  (void)id;
  for (;;)
    __asm__ volatile("wfi");
}

void __default_trap(unsigned long cause, unsigned long epc, unsigned long tval)
{
  printf("unexpected trap: mcause=0x%lx mepc=0x%lx mtval=0x%lx hart=%lu\n",
         cause, epc, tval, hartid());
  exit(255);
}

/* ---- printf: %d %i %u %x %X %p %s %c %%, flags '-' '0', width, l/ll/z/h ---- */
static int out_str(const char *s, int len, int width, int left, char pad)
{
  int n = 0;
  if (!left)
    for (; width > len; width--, n++)
      uart_putc(pad);
  for (int i = 0; i < len; i++, n++)
    uart_putc(s[i]);
  if (left)
    for (; width > len; width--, n++)
      uart_putc(' ');
  return n;
}

int vprintf(const char *fmt, va_list ap)
{
  int n = 0;
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      uart_putc(*fmt);
      n++;
      continue;
    }
    fmt++;
    int left = 0, width = 0, lng = 0;
    char pad = ' ';
    for (;; fmt++) {
      if (*fmt == '-') left = 1;
      else if (*fmt == '0') pad = '0';
      else break;
    }
    while (*fmt >= '0' && *fmt <= '9')
      width = width * 10 + (*fmt++ - '0');
    for (;; fmt++) {
      if (*fmt == 'l' || *fmt == 'z' || *fmt == 'j' || *fmt == 't') lng = 1;
      else if (*fmt != 'h') break;
    }
    char buf[24];
    int len = 0;
    char c = *fmt;
    if (c == 0)
      break;
    switch (c) {
    case 'd': case 'i': case 'u': case 'x': case 'X': case 'p': {
      uint64_t v;
      int neg = 0;
      unsigned base = (c == 'x' || c == 'X' || c == 'p') ? 16 : 10;
      if (c == 'p') {
        v = (uint64_t)(uintptr_t)va_arg(ap, void *);
      } else if (c == 'd' || c == 'i') {
        int64_t s = lng ? va_arg(ap, long) : va_arg(ap, int);
        if (s < 0) { neg = 1; v = -(uint64_t)s; } else v = (uint64_t)s;
      } else {
        v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
      }
      const char *digits = c == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
      char tmp[24];
      int t = 0;
      do { tmp[t++] = digits[v % base]; v /= base; } while (v);
      if (c == 'p') { tmp[t++] = 'x'; tmp[t++] = '0'; }
      if (neg && pad == '0' && !left) {
        uart_putc('-'); n++;
        if (width > 0) width--;
      } else if (neg) {
        tmp[t++] = '-';
      }
      while (t) buf[len++] = tmp[--t];
      n += out_str(buf, len, width, left, left ? ' ' : pad);
      break;
    }
    case 's': {
      const char *s = va_arg(ap, const char *);
      if (!s) s = "(null)";
      n += out_str(s, (int)strlen(s), width, left, ' ');
      break;
    }
    case 'c':
      buf[0] = (char)va_arg(ap, int);
      n += out_str(buf, 1, width, left, ' ');
      break;
    default:
      uart_putc(c);
      n++;
      break;
    }
  }
  return n;
}

int printf(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vprintf(fmt, ap);
  va_end(ap);
  return n;
}

/* ---- string helpers (GCC may emit calls to these even when freestanding) ---- */
void *memset(void *d, int c, size_t n)
{
  uint8_t *p = d;
  while (n--) *p++ = (uint8_t)c;
  return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
  uint8_t *p = d;
  const uint8_t *q = s;
  while (n--) *p++ = *q++;
  return d;
}

void *memmove(void *d, const void *s, size_t n)
{
  uint8_t *p = d;
  const uint8_t *q = s;
  if (p < q) {
    while (n--) *p++ = *q++;
  } else {
    p += n; q += n;
    while (n--) *--p = *--q;
  }
  return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
  const uint8_t *p = a, *q = b;
  for (; n; n--, p++, q++)
    if (*p != *q) return *p < *q ? -1 : 1;
  return 0;
}

size_t strlen(const char *s)
{
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int strcmp(const char *a, const char *b)
{
  while (*a && *a == *b) a++, b++;
  return (unsigned char)*a - (unsigned char)*b;
}
