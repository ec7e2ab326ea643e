/* exit-code: computes a value and exits with it (42) through the sifive_test
 * finisher, to check that a guest's exit code reaches the host. */
#include "kv.h"

int main(void)
{
  /* 6 * 7 by repeated addition (volatile operands: really computed) */
  volatile int a = 6, b = 7;
  int v = 0;
  for (int i = 0; i < b; i++)
    v += a;
  printf("exit-code: computed %d, exiting with it\n", v);
  exit(v);
}
