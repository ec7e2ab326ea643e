/* htif-hello: console output and exit through the Spike/riscv-tests HTIF
 * protocol (tohost/fromhost in section .tohost).  Prints "Hello over HTIF\n"
 * one character at a time with the console device (device 1, command 1),
 * then exits with code 3 (tohost = (3 << 1) | 1).  QEMU's virt board has no
 * HTIF, so this one runs only on kmemvisor (or Spike). */
#include <stdint.h>

volatile uint64_t tohost __attribute__((section(".tohost"), aligned(64)));
volatile uint64_t fromhost __attribute__((section(".tohost"), aligned(64)));

static void htif_putchar(char c)
{
  tohost = (1ULL << 56) | (1ULL << 48) | (uint8_t)c;
  while (fromhost == 0)
    ;
  fromhost = 0;
}

void __attribute__((noreturn)) htif_exit(int code)
{
  for (;;)
    tohost = ((uint64_t)code << 1) | 1;
}

int main(void)
{
  const char *s = "Hello over HTIF\n";
  while (*s)
    htif_putchar(*s++);
  return 3;
}
