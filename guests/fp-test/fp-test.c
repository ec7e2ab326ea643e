/* F and D against QEMU: every computational F/D instruction of RV64 under every rounding mode
 * (the five static ones and the dynamic one, with frm drawn at random) on random and edge-case
 * operands — zeros, subnormals, infinities, NaNs with payloads (quiet and signaling), singles not
 * NaN-boxed, values at rounding boundaries (halfway integers), integer conversion limits — each
 * result's bits and fflags folded into a checksum per instruction and mode. The output (one line
 * per instruction and mode, then the operation count) must be byte-identical on QEMU and kmemvisor.
 *
 * Built with -march=rv64imafdc -mabi=lp64d; ITERATIONS rounds over the whole table. */
#include "kv.h"

#ifndef ITERATIONS
#define ITERATIONS 100
#endif

typedef uint64_t (*op_fn)(uint64_t a, uint64_t b, uint64_t c);

/* Operand kinds: how many operands, of which format (d, s NaN-boxed mostly, or an integer). */
enum kind { D1, D2, D3, S1, S2, S3, I64 };

#define FP_CLOBBERS "ft0", "ft1", "ft2", "ft3"
/* Two FP operands to an FP result, and the one- and three-operand forms. */
#define F2(fn, insn, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; (void)c; \
  __asm__ volatile("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\t" insn " ft2, ft0, ft1" rm "\n\tfmv.x.d %0, ft2" \
    : "=r"(r) : "r"(a), "r"(b) : FP_CLOBBERS); return r; }
#define F1(fn, insn, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; (void)b; (void)c; \
  __asm__ volatile("fmv.d.x ft0, %1\n\t" insn " ft2, ft0" rm "\n\tfmv.x.d %0, ft2" : "=r"(r) : "r"(a) : FP_CLOBBERS); return r; }
#define F3(fn, insn, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; \
  __asm__ volatile("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\tfmv.d.x ft3, %3\n\t" insn " ft2, ft0, ft1, ft3" rm "\n\tfmv.x.d %0, ft2" \
    : "=r"(r) : "r"(a), "r"(b), "r"(c) : FP_CLOBBERS); return r; }
/* FP operand(s) to an integer register (compares, fclass, conversions to integers, fmv.x.*). */
#define X2(fn, insn, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; (void)c; \
  __asm__ volatile("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\t" insn " %0, ft0, ft1" rm : "=r"(r) : "r"(a), "r"(b) : FP_CLOBBERS); return r; }
#define X1(fn, insn, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; (void)b; (void)c; \
  __asm__ volatile("fmv.d.x ft0, %1\n\t" insn " %0, ft0" rm : "=r"(r) : "r"(a) : FP_CLOBBERS); return r; }
/* An integer register to an FP result (conversions from integers, fmv.*.x). */
#define I1(fn, insn, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; (void)b; (void)c; \
  __asm__ volatile(insn " ft2, %1" rm "\n\tfmv.x.d %0, ft2" : "=r"(r) : "r"(a) : FP_CLOBBERS); return r; }

/* Each rounding form of an instruction: fn_rne .. fn_rmm, fn_dyn. */
#define ROUNDED(M, fn, insn) M(fn##_rne, insn, ", rne") M(fn##_rtz, insn, ", rtz") M(fn##_rdn, insn, ", rdn") \
  M(fn##_rup, insn, ", rup") M(fn##_rmm, insn, ", rmm") M(fn##_dyn, insn, ", dyn")
#define ENTRIES(kind, fn, insn) {insn " rne", kind, fn##_rne}, {insn " rtz", kind, fn##_rtz}, {insn " rdn", kind, fn##_rdn}, \
  {insn " rup", kind, fn##_rup}, {insn " rmm", kind, fn##_rmm}, {insn " dyn", kind, fn##_dyn}

/* The instructions with a rounding mode, for both formats: X(macro, name, insn, kind). */
#define ROUNDED_TABLE(X) \
  X(F2, fadd_d, "fadd.d", D2) X(F2, fsub_d, "fsub.d", D2) X(F2, fmul_d, "fmul.d", D2) X(F2, fdiv_d, "fdiv.d", D2) \
  X(F1, fsqrt_d, "fsqrt.d", D1) X(F3, fmadd_d, "fmadd.d", D3) X(F3, fmsub_d, "fmsub.d", D3) \
  X(F3, fnmsub_d, "fnmsub.d", D3) X(F3, fnmadd_d, "fnmadd.d", D3) \
  X(F2, fadd_s, "fadd.s", S2) X(F2, fsub_s, "fsub.s", S2) X(F2, fmul_s, "fmul.s", S2) X(F2, fdiv_s, "fdiv.s", S2) \
  X(F1, fsqrt_s, "fsqrt.s", S1) X(F3, fmadd_s, "fmadd.s", S3) X(F3, fmsub_s, "fmsub.s", S3) \
  X(F3, fnmsub_s, "fnmsub.s", S3) X(F3, fnmadd_s, "fnmadd.s", S3) \
  X(X1, fcvt_w_d, "fcvt.w.d", D1) X(X1, fcvt_wu_d, "fcvt.wu.d", D1) X(X1, fcvt_l_d, "fcvt.l.d", D1) X(X1, fcvt_lu_d, "fcvt.lu.d", D1) \
  X(X1, fcvt_w_s, "fcvt.w.s", S1) X(X1, fcvt_wu_s, "fcvt.wu.s", S1) X(X1, fcvt_l_s, "fcvt.l.s", S1) X(X1, fcvt_lu_s, "fcvt.lu.s", S1) \
  X(I1, fcvt_d_l, "fcvt.d.l", I64) X(I1, fcvt_d_lu, "fcvt.d.lu", I64) \
  X(I1, fcvt_s_w, "fcvt.s.w", I64) X(I1, fcvt_s_wu, "fcvt.s.wu", I64) X(I1, fcvt_s_l, "fcvt.s.l", I64) X(I1, fcvt_s_lu, "fcvt.s.lu", I64) \
  X(F1, fcvt_s_d, "fcvt.s.d", D1)

/* Exact conversions GNU as accepts no rounding mode for (the field is still decoded, and a
 * reserved one traps): encoded with .insn r OP-FP, rm, funct7, rd, rs1, rs2. */
#define F1_INSN(fn, f7, rs2, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; (void)b; (void)c; \
  __asm__ volatile("fmv.d.x ft0, %1\n\t.insn r 0x53, " rm ", " f7 ", ft2, ft0, " rs2 "\n\tfmv.x.d %0, ft2" : "=r"(r) : "r"(a) : FP_CLOBBERS); return r; }
#define I1_INSN(fn, f7, rs2, rm) static uint64_t fn(uint64_t a, uint64_t b, uint64_t c) { uint64_t r; (void)b; (void)c; \
  __asm__ volatile(".insn r 0x53, " rm ", " f7 ", ft2, %1, " rs2 "\n\tfmv.x.d %0, ft2" : "=r"(r) : "r"(a) : FP_CLOBBERS); return r; }
#define INSN_TABLE(X) \
  X(F1_INSN, fcvt_d_s, "fcvt.d.s", S1, "0x21", "f0") \
  X(I1_INSN, fcvt_d_w, "fcvt.d.w", I64, "0x69", "x0") X(I1_INSN, fcvt_d_wu, "fcvt.d.wu", I64, "0x69", "x1")
#define DEFINE_INSN(M, fn, insn, kind, f7, rs2) M(fn##_rne, f7, rs2, "0") M(fn##_rtz, f7, rs2, "1") M(fn##_rdn, f7, rs2, "2") \
  M(fn##_rup, f7, rs2, "3") M(fn##_rmm, f7, rs2, "4") M(fn##_dyn, f7, rs2, "7")
INSN_TABLE(DEFINE_INSN)

/* The instructions without one. */
#define PLAIN_TABLE(X) \
  X(F2, fsgnj_d, "fsgnj.d", D2) X(F2, fsgnjn_d, "fsgnjn.d", D2) X(F2, fsgnjx_d, "fsgnjx.d", D2) \
  X(F2, fmin_d, "fmin.d", D2) X(F2, fmax_d, "fmax.d", D2) \
  X(X2, feq_d, "feq.d", D2) X(X2, flt_d, "flt.d", D2) X(X2, fle_d, "fle.d", D2) X(X1, fclass_d, "fclass.d", D1) \
  X(F2, fsgnj_s, "fsgnj.s", S2) X(F2, fsgnjn_s, "fsgnjn.s", S2) X(F2, fsgnjx_s, "fsgnjx.s", S2) \
  X(F2, fmin_s, "fmin.s", S2) X(F2, fmax_s, "fmax.s", S2) \
  X(X2, feq_s, "feq.s", S2) X(X2, flt_s, "flt.s", S2) X(X2, fle_s, "fle.s", S2) X(X1, fclass_s, "fclass.s", S1) \
  X(X1, fmv_x_w, "fmv.x.w", S1) X(X1, fmv_x_d, "fmv.x.d", D1) X(I1, fmv_w_x, "fmv.w.x", I64) X(I1, fmv_d_x, "fmv.d.x", I64)

#define DEFINE_ROUNDED(M, fn, insn, kind) ROUNDED(M, fn, insn)
#define DEFINE_PLAIN(M, fn, insn, kind) M(fn, insn, "")
ROUNDED_TABLE(DEFINE_ROUNDED)
PLAIN_TABLE(DEFINE_PLAIN)

/* Loads and stores: a single through memory keeps its 32 bits (fsw) and comes back boxed (flw). */
static uint64_t scratch[2];
static uint64_t fsw_flw(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t r; (void)b; (void)c;
  scratch[0] = 0;
  __asm__ volatile("fmv.d.x ft0, %1\n\tfsw ft0, 0(%2)\n\tflw ft1, 0(%2)\n\tfmv.x.d %0, ft1" : "=r"(r) : "r"(a), "r"(scratch) : FP_CLOBBERS, "memory");
  return r ^ scratch[0];
}
static uint64_t fsd_fld(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t r; (void)c;
  scratch[1] = b;
  __asm__ volatile("fmv.d.x ft0, %1\n\tfld ft1, 8(%2)\n\tfsd ft0, 0(%2)\n\tfmv.x.d %0, ft1" : "=r"(r) : "r"(a), "r"(scratch) : FP_CLOBBERS, "memory");
  return r ^ scratch[0];
}

struct entry { const char *name; enum kind kind; op_fn fn; };
#define ENTRY_ROUNDED(M, fn, insn, kind) ENTRIES(kind, fn, insn),
#define ENTRY_PLAIN(M, fn, insn, kind) {insn, kind, fn},
#define ENTRY_INSN(M, fn, insn, kind, f7, rs2) ENTRIES(kind, fn, insn),
static const struct entry table[] = {
  ROUNDED_TABLE(ENTRY_ROUNDED)
  INSN_TABLE(ENTRY_INSN)
  PLAIN_TABLE(ENTRY_PLAIN)
  {"fsw+flw", S1, fsw_flw},
  {"fsd+fld", D2, fsd_fld},
};
#define ENTRIES_N ARRAY_SIZE(table)
static uint64_t sums[ENTRIES_N];

static uint64_t seed = 0x9e3779b97f4a7c15ULL;
static inline uint64_t rnd(void) { return kv_rand64(&seed); }

static const uint64_t special_d[] = {
  0, 0x8000000000000000ULL, 1, 0x800fffffffffffffULL, 0x000fffffffffffffULL, 0x0010000000000000ULL,
  0x8010000000000000ULL, 0x7fefffffffffffffULL, 0xffefffffffffffffULL, 0x7ff0000000000000ULL,
  0xfff0000000000000ULL, 0x7ff8000000000000ULL, 0xfff8000000000123ULL, 0x7ff0000000000001ULL,
  0x7ff4000000000abcULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL, 0x3fe0000000000000ULL,
  0x3ff8000000000000ULL, 0x4004000000000000ULL, 0xbfe0000000000000ULL, 0x41dfffffffc00000ULL,
  0x41dfffffffe00000ULL, 0x41e0000000000000ULL, 0xc1e0000000000000ULL, 0xc1e0000000100000ULL,
  0x41efffffffe00000ULL, 0x41effffffff00000ULL, 0x41f0000000000000ULL, 0x43e0000000000000ULL,
  0x43dfffffffffffffULL, 0xc3e0000000000000ULL, 0xc3e0000000000001ULL, 0x43f0000000000000ULL,
  0x43efffffffffffffULL, 0x3ca0000000000000ULL, 0x3fefffffffffffffULL, 0x3ff0000000000001ULL,
  0x4330000000000000ULL, 0x4330000000000001ULL, 0x0000000000000002ULL, 0x0008000000000000ULL,
  0x3690000000000000ULL, 0x36a0000000000000ULL, 0x47efffffe0000000ULL, 0x47effffff0000000ULL,
  0x3810000000000000ULL, 0x380fffffffffffffULL, 0x36a0000000000001ULL,
};
static const uint64_t special_s[] = {
  0, 0x80000000u, 1, 0x807fffffu, 0x007fffffu, 0x00800000u, 0x80800000u, 0x7f7fffffu, 0xff7fffffu,
  0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00123u, 0x7f800001u, 0x7fa00abcu, 0x3f800000u,
  0xbf800000u, 0x3f000000u, 0x3fc00000u, 0x40200000u, 0xbf000000u, 0x4effffffu, 0x4f000000u,
  0xcf000000u, 0xcf000001u, 0x4f7fffffu, 0x4f800000u, 0x5f000000u, 0x5effffffu, 0xdf000000u,
  0xdf000001u, 0x5f800000u, 0x5f7fffffu, 0x33800000u, 0x3f7fffffu, 0x3f800001u, 0x4b000000u,
  0x4b000001u, 0x00000002u, 0x00400000u,
};
static const uint64_t special_i[] = {
  0, 1, 2, 3, (uint64_t)-1, (uint64_t)-2, 0x7fffffffULL, 0x80000000ULL, 0xffffffffULL, 0x100000000ULL,
  0xffffffff80000000ULL, 0xffffffff7fffffffULL, 0x7fffffffffffffffULL, 0x8000000000000000ULL,
  0x8000000000000001ULL, 0x0020000000000001ULL, 0x0020000000000003ULL, 0x1000001ULL, 0x1000003ULL,
  0x00ffffffULL, 0xfffffffffefffffeULL, 0x7ffffffffffffdffULL, 0xfffffffffffffc00ULL,
};

/* Operand tuples for cases random operands hardly reach, run through every entry first:
 * (1 − 2^-52)·(2^-1022·(1 + 2^-52)) = 2^-1022·(1 − 2^-104): tiny before rounding but not after
 * (RISC-V: no underflow under RNE, underflow under RTZ/RDN), and its single analogue; a product
 * exactly halfway between subnormals; an FMA whose sum cancels to zero (sign by mode); ∞·0 + qNaN. */
static const uint64_t edge_d[][3] = {
  {0x3feffffffffffffeULL, 0x0010000000000001ULL, 0x8000000000000001ULL},
  {0xbfeffffffffffffeULL, 0x0010000000000001ULL, 0x0000000000000001ULL},
  {0x3fe0000000000000ULL, 0x0000000000000003ULL, 0x0000000000000001ULL},
  {0x3ff0000000000000ULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL},
  {0x7ff0000000000000ULL, 0x0000000000000000ULL, 0x7ff8000000000000ULL},
  {0x3fefffffffffffffULL, 0x0010000000000000ULL, 0x0010000000000000ULL},
};
static const uint64_t edge_s[][3] = {
  {0xffffffff3f7ffffeULL, 0xffffffff00800001ULL, 0xffffffff80000001ULL},
  {0xffffffffbf7ffffeULL, 0xffffffff00800001ULL, 0xffffffff00000001ULL},
  {0xffffffff3f000000ULL, 0xffffffff00000003ULL, 0xffffffff00000001ULL},
  {0xffffffff3f800000ULL, 0xffffffff3f800000ULL, 0xffffffffbf800000ULL},
  {0xffffffff7f800000ULL, 0xffffffff00000000ULL, 0xffffffff7fc00000ULL},
  {0xffffffff3f7fffffULL, 0xffffffff00800000ULL, 0xffffffff00800000ULL},
};

/* Significand bits with a tail that makes rounding ties and near-ties likely. */
static uint64_t boundary_mantissa(int bits) {
  uint64_t m = rnd() & ((1ULL << bits) - 1);
  int cut = (int)(rnd() % (unsigned)bits);
  uint64_t low = (1ULL << cut) - 1;
  switch (rnd() % 4) {
  case 0: return m & ~low;                                    /* trailing zeros: exact */
  case 1: return (m & ~low) | (cut ? 1ULL << (cut - 1) : 0);  /* a tie at that position */
  case 2: return m | low;                                     /* just below a boundary */
  default: return m;
  }
}

/* A random value of a format with e exponent and m fraction bits: one of its special values, raw
 * bits, or a sign, an exponent from a chosen band and boundary_mantissa(), or a neighbour of the
 * previous value (same exponent give or take, or one bit flipped). */
static uint64_t gen(int e, int m, const uint64_t *special, unsigned n, uint64_t *last) {
  int w = e + m + 1;
  uint64_t all = w == 64 ? ~0ULL : (1ULL << w) - 1, signbit = 1ULL << (w - 1);
  uint64_t bias = (1ULL << (e - 1)) - 1, top = (1ULL << e) - 1, high = all & ~((1ULL << m) - 1);
  uint64_t sign = (rnd() & 1) << (w - 1), v;
  switch (rnd() % 9) {
  case 0: case 1: v = special[rnd() % n]; break;
  case 2: v = rnd() & all; break;
  case 3: v = sign | ((bias + rnd() % 129 - 64) << m) | boundary_mantissa(m); break;
  case 4: v = sign | ((rnd() % 4) << m) | boundary_mantissa(m); break;                  /* subnormal, tiny */
  case 5: v = sign | ((top - 4 + rnd() % 4) << m) | boundary_mantissa(m); break;        /* huge */
  case 6: v = sign | ((bias + rnd() % 66) << m) | boundary_mantissa(m); break;          /* integer range */
  case 7: v = (*last & high) ^ ((rnd() % 3) << m) ^ (rnd() & ((all & ~high) | signbit)); break;
  default: v = *last ^ (1ULL << (rnd() % w)); break;
  }
  return *last = v;
}
static uint64_t last_d, last_s;
static uint64_t gen_d(void) { return gen(11, 52, special_d, ARRAY_SIZE(special_d), &last_d); }
static uint64_t gen_s(void) {
  uint64_t v = gen(8, 23, special_s, ARRAY_SIZE(special_s), &last_s);
  /* One in 32 is not NaN-boxed (it must read as the canonical NaN). */
  return (rnd() % 32 == 0 ? rnd() << 32 : 0xffffffff00000000ULL) | v;
}
static uint64_t gen_i(void) {
  switch (rnd() % 4) {
  case 0: return special_i[rnd() % ARRAY_SIZE(special_i)];
  case 1: return rnd();
  case 2: return rnd() >> (rnd() % 64);
  default: return (uint64_t)-(int64_t)(rnd() >> (rnd() % 64));
  }
}

static inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0x100000001b3ULL;
  return h ^ (h >> 29);
}

static void enable_fp(void) {
  unsigned long fs = 1UL << 13;
  __asm__ volatile("csrs mstatus, %0" :: "r"(fs));
}

/* One operation: its result bits and fflags into the entry's checksum. */
static void check(unsigned e, uint64_t a, uint64_t b, uint64_t c) {
  /* For the dyn forms: a valid frm at random (reserved ones trap, tested elsewhere). */
  unsigned long frm = rnd() % 5, flags;
  __asm__ volatile("csrw frm, %0\n\tcsrw fflags, zero" :: "r"(frm));
  uint64_t r = table[e].fn(a, b, c);
  __asm__ volatile("csrr %0, fflags" : "=r"(flags));
  sums[e] = mix(mix(sums[e], r), flags);
}

__attribute__((noinline)) static uint64_t run(void) {
  uint64_t count = 0;
  for (unsigned e = 0; e < ENTRIES_N; e++) {
    enum kind k = table[e].kind;
    if (k == I64) continue;
    for (unsigned t = 0; t < ARRAY_SIZE(edge_d); t++, count++) {
      const uint64_t *x = k <= D3 ? edge_d[t] : edge_s[t];
      check(e, x[0], x[1], x[2]);
    }
  }
  for (int i = 0; i < ITERATIONS; i++) {
    for (unsigned e = 0; e < ENTRIES_N; e++, count++) {
      switch (table[e].kind) {
      case D1: case D2: case D3: check(e, gen_d(), gen_d(), gen_d()); break;
      case S1: case S2: case S3: check(e, gen_s(), gen_s(), gen_s()); break;
      default: check(e, gen_i(), gen_i(), gen_i()); break;
      }
    }
  }
  return count;
}

int main(void) {
  enable_fp();
  uint64_t count = run();
  for (unsigned e = 0; e < ENTRIES_N; e++) printf("%-14s %016lx\n", table[e].name, (unsigned long)sums[e]);
  printf("operations %lu\n", (unsigned long)count);
  return 0;
}
