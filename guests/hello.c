/* hello: the smallest guest.  Prints a fixed greeting, then one computed
 * line, checks the computation and exits 0 (1 on mismatch). */
#include "kv.h"

int main(void)
{
  uart_puts("Hello from kmemvisor!\n");
  volatile unsigned n = 100;      /* volatile: make the loop really run */
  unsigned long sum = 0;
  for (unsigned i = 1; i <= n; i++)
    sum += i;
  unsigned long expect = (unsigned long)n * (n + 1) / 2;
  printf("sum of 1..%u = %lu\n", n, sum);
  if (sum != expect || sum != 5050) {
    printf("hello: FAIL: expected %lu\n", expect);
    return 1;
  }
  return 0;
}
