/* A floating-point benchmark guest: the n-body simulation of the Computer Language Benchmarks Game
 * (five planets, double precision, sqrt) and a dense matrix product, printing each result's bits
 * (the runtime's printf has no %g: the bits must match QEMU's exactly anyway) and a scaled integer.
 * -DSMALL: a short run for the tests. */
#include "kv.h"

#ifdef SMALL
#define STEPS 2000
#define N 24
#else
#define STEPS 50000
#define N 64
#endif

#define PI 3.141592653589793
#define SOLAR_MASS (4 * PI * PI)
#define DAYS_PER_YEAR 365.24

struct body { double x, y, z, vx, vy, vz, mass; };

static struct body bodies[5] = {
  {0, 0, 0, 0, 0, 0, SOLAR_MASS},
  {4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01, 1.66007664274403694e-03 * DAYS_PER_YEAR,
   7.69901118419740425e-03 * DAYS_PER_YEAR, -6.90460016972063023e-05 * DAYS_PER_YEAR, 9.54791938424326609e-04 * SOLAR_MASS},
  {8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01, -2.76742510726862411e-03 * DAYS_PER_YEAR,
   4.99852801234917238e-03 * DAYS_PER_YEAR, 2.30417297573763929e-05 * DAYS_PER_YEAR, 2.85885980666130812e-04 * SOLAR_MASS},
  {1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01, 2.96460137564761618e-03 * DAYS_PER_YEAR,
   2.37847173959480950e-03 * DAYS_PER_YEAR, -2.96589568540237556e-05 * DAYS_PER_YEAR, 4.36624404335156298e-05 * SOLAR_MASS},
  {1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01, 2.68067772490389322e-03 * DAYS_PER_YEAR,
   1.62824170038242295e-03 * DAYS_PER_YEAR, -9.51592254519715870e-05 * DAYS_PER_YEAR, 5.15138902046611451e-05 * SOLAR_MASS},
};

static double fsqrt(double v) {
  double r;
  __asm__("fsqrt.d %0, %1" : "=f"(r) : "f"(v));
  return r;
}

static void advance(double dt) {
  for (int i = 0; i < 5; i++) {
    struct body *b = &bodies[i];
    for (int j = i + 1; j < 5; j++) {
      struct body *c = &bodies[j];
      double dx = b->x - c->x, dy = b->y - c->y, dz = b->z - c->z;
      double d2 = dx * dx + dy * dy + dz * dz;
      double mag = dt / (d2 * fsqrt(d2));
      b->vx -= dx * c->mass * mag; b->vy -= dy * c->mass * mag; b->vz -= dz * c->mass * mag;
      c->vx += dx * b->mass * mag; c->vy += dy * b->mass * mag; c->vz += dz * b->mass * mag;
    }
  }
  for (int i = 0; i < 5; i++) {
    bodies[i].x += dt * bodies[i].vx; bodies[i].y += dt * bodies[i].vy; bodies[i].z += dt * bodies[i].vz;
  }
}

static double energy(void) {
  double e = 0;
  for (int i = 0; i < 5; i++) {
    struct body *b = &bodies[i];
    e += 0.5 * b->mass * (b->vx * b->vx + b->vy * b->vy + b->vz * b->vz);
    for (int j = i + 1; j < 5; j++) {
      struct body *c = &bodies[j];
      double dx = b->x - c->x, dy = b->y - c->y, dz = b->z - c->z;
      e -= b->mass * c->mass / fsqrt(dx * dx + dy * dy + dz * dz);
    }
  }
  return e;
}

static double a[N][N], bm[N][N], cm[N][N];

static void print(const char *what, double v) {
  union { double d; uint64_t u; } bits = { v };
  long scaled = (long)(v * 1e9); /* fcvt.l.d, RTZ */
  printf("%-10s %016lx %ld\n", what, (unsigned long)bits.u, scaled);
}

static void enable_fp(void) {
  unsigned long fs = 1UL << 13;
  __asm__ volatile("csrs mstatus, %0" :: "r"(fs));
}

__attribute__((noinline)) static void run(void) {
  double px = 0, py = 0, pz = 0;
  for (int i = 0; i < 5; i++) {
    px += bodies[i].vx * bodies[i].mass; py += bodies[i].vy * bodies[i].mass; pz += bodies[i].vz * bodies[i].mass;
  }
  bodies[0].vx = -px / SOLAR_MASS; bodies[0].vy = -py / SOLAR_MASS; bodies[0].vz = -pz / SOLAR_MASS;
  print("energy0", energy());
  for (int s = 0; s < STEPS; s++) advance(0.01);
  print("energy1", energy());

  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      a[i][j] = (double)(i * j + 1) / (double)(i + j + 1);
      bm[i][j] = (double)(i - j) / (double)(i + 2 * j + 3);
    }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double sum = 0;
      for (int k = 0; k < N; k++) sum += a[i][k] * bm[k][j];
      cm[i][j] = sum;
    }
  double trace = 0, total = 0;
  for (int i = 0; i < N; i++) {
    trace += cm[i][i];
    for (int j = 0; j < N; j++) total += cm[i][j];
  }
  print("trace", trace);
  print("total", total);
  unsigned long fflags;
  __asm__ volatile("csrr %0, fflags" : "=r"(fflags));
  printf("fflags     %lx\n", fflags);
}

int main(void) {
  enable_fp();
  run();
  return 0;
}
