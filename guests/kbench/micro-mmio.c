/* micro-mmio: the cost of one MMIO register read from a hart.  Reads the
 * PLIC's priority register of source 1 `iterations` times in a loop (M-mode,
 * no paging: nothing but the device access itself), and checks every value
 * read is the one written.  The benchmark runner patches `iterations` in the
 * ELF and takes the cost per read from the difference of whole-process wall
 * times (the guest reports nothing timed itself). */
#include "kb.h"

volatile unsigned long iterations = 5000;

int main(void)
{
  unsigned long n = iterations, sum = 0;
  PLIC_PRIORITY(1) = 5;
  for (unsigned long i = 0; i < n; i++)
    sum += PLIC_PRIORITY(1);
  PLIC_PRIORITY(1) = 0;
  if (sum != 5 * n) {
    printf("micro-mmio: FAIL sum of the values read 0x%lx, expected 0x%lx\n", sum, 5 * n);
    return 1;
  }
  printf("micro-mmio: PLIC priority register reads done\n");
  return 0;
}
