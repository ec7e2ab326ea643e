/* memstress: random-order, write-heavy, mixed-width memory stress.
 * In each round every 64-bit word of the buffer is rewritten with a new
 * value h(index, round), visiting the words in a pseudo-random order (an
 * odd-stride permutation of the indices), and writing each word with a
 * randomly chosen mix of sd / sw / sh / sb stores (sometimes writing a
 * stale value first and then overwriting it).  After the middle and the
 * last round every word is read back and compared with h(index, round),
 * and a checksum of the read values is compared with the checksum of the
 * values h() computes directly.
 *   full  (memstress.elf):       8 MiB,  8 rounds (~300 M instructions)
 *   small (memstress-small.elf): 512 KiB, 2 rounds (~4 M instructions) */
#include "kv.h"

#ifdef SMALL
#define BUF_BYTES (512UL << 10)
#define ROUNDS 2
#else
#define BUF_BYTES (8UL << 20)
#define ROUNDS 8
#endif
#define NWORDS (BUF_BYTES / 8)          /* a power of two */
#define STRIDE 0x9e3779b1UL             /* odd: i -> i*STRIDE mod N is a permutation */

static inline uint64_t h(uint64_t idx, uint64_t round)
{
  uint64_t x = (idx + 1) * 0xbf58476d1ce4e5b9ULL + round * 0x94d049bb133111ebULL;
  return x ^ (x >> 29);
}

static void write_word(uint8_t *a, uint64_t v, unsigned how)
{
  volatile uint64_t *d = (volatile uint64_t *)a;
  volatile uint32_t *w = (volatile uint32_t *)a;
  volatile uint16_t *s = (volatile uint16_t *)a;
  volatile uint8_t *b = a;
  switch (how & 7) {
  case 0:
    d[0] = v;
    break;
  case 1:
    w[1] = (uint32_t)(v >> 32); w[0] = (uint32_t)v;
    break;
  case 2:
    s[0] = (uint16_t)v; s[1] = (uint16_t)(v >> 16); s[2] = (uint16_t)(v >> 32); s[3] = (uint16_t)(v >> 48);
    break;
  case 3:
    for (int k = 7; k >= 0; k--) b[k] = (uint8_t)(v >> (8 * k));
    break;
  case 4:
    w[0] = (uint32_t)v; s[2] = (uint16_t)(v >> 32); s[3] = (uint16_t)(v >> 48);
    break;
  case 5:
    s[1] = (uint16_t)(v >> 16); s[0] = (uint16_t)v; b[7] = (uint8_t)(v >> 56);
    b[4] = (uint8_t)(v >> 32); b[6] = (uint8_t)(v >> 48); b[5] = (uint8_t)(v >> 40);
    break;
  case 6:
    b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); s[1] = (uint16_t)(v >> 16); w[1] = (uint32_t)(v >> 32);
    break;
  default:
    d[0] = ~v;                       /* stale value, then overwrite */
    w[0] = (uint32_t)v;
    d[0] = v;
    break;
  }
}

/* read back all words, count mismatches, return checksum */
static uint64_t verify(const uint64_t *buf, uint64_t round, uint64_t *bad, uint64_t *echk)
{
  uint64_t chk = 0, e = 0;
  for (uint64_t i = 0; i < NWORDS; i++) {
    uint64_t v = buf[i], x = h(i, round);
    if (v != x) {
      if (*bad < 5)
        printf("memstress: round %lu word %lu: got 0x%016lx expected 0x%016lx\n", round, i, v, x);
      (*bad)++;
    }
    chk = (chk ^ v) * 0x100000001b3ULL;
    e = (e ^ x) * 0x100000001b3ULL;
  }
  *echk = e;
  return chk;
}

int main(void)
{
  uint8_t *buf = (uint8_t *)__heap_start;
  uint64_t rng = 0x243f6a8885a308d3ULL, bad = 0, chk = 0, echk = 0;
  for (uint64_t r = 0; r < ROUNDS; r++) {
    uint64_t start = kv_rand64(&rng) & (NWORDS - 1);
    uint64_t bits = 0;
    for (uint64_t i = 0; i < NWORDS; i++) {
      uint64_t idx = (start + i * STRIDE) & (NWORDS - 1);
      if ((i & 15) == 0)
        bits = kv_rand64(&rng);
      write_word(buf + idx * 8, h(idx, r), (unsigned)bits);
      bits >>= 4;
    }
    if (r == ROUNDS / 2 || r == ROUNDS - 1) {
      uint64_t e;
      uint64_t c = verify((const uint64_t *)buf, r, &bad, &e);
      chk = c;
      echk = e;
      if (c != e)
        bad++;
    }
  }
  printf("memstress: %lu KiB x %d rounds, checksum 0x%016lx\n", BUF_BYTES >> 10, ROUNDS, chk);
  if (bad || chk != echk) {
    printf("memstress: FAIL: %lu mismatches, expected checksum 0x%016lx\n", bad, echk);
    return 1;
  }
  printf("memstress: OK\n");
  return 0;
}
