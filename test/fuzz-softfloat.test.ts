/**
 * The exact IEEE 754 reference (vcpu/softfloat.ts) against oracles we did not write: JavaScript's
 * own binary64 arithmetic (round to nearest even) for RNE results, Math.fround over binary64 for
 * binary32 (double rounding is innocuous for + − × ÷ √ when the wide format has at least 2p + 2
 * bits, Figueroa 1995: 53 ≥ 2·24 + 2), error-free transformations (TwoSum, exact rationals) for
 * the inexact flag, and the ordering identities RDN ≤ RNE ≤ RUP for the directed modes.
 */
import test from "ava";
import fc from "fast-check";
import { fuzzParameters } from "./helpers/fuzz.ts";
import * as sf from "../vcpu/softfloat.ts";

const { F32, F64, Flag, Rm } = sf;
const buf = new DataView(new ArrayBuffer(8));
const bitsOf = (x: number): bigint => (buf.setFloat64(0, x, true), buf.getBigUint64(0, true));
const valueOf = (b: bigint): number => (buf.setBigUint64(0, b, true), buf.getFloat64(0, true));
const bits32 = (x: number): bigint => (buf.setFloat32(0, x, true), BigInt(buf.getUint32(0, true)));
const value32 = (b: bigint): number => (buf.setUint32(0, Number(b), true), buf.getFloat32(0, true));

/** Doubles with the edge cases over-represented: zeros, subnormals, infinities, NaNs with payloads. */
const special64 = [0n, 1n << 63n, 1n, 0x000fffffffffffffn, 0x0010000000000000n, 0x7fefffffffffffffn, 0x7ff0000000000000n,
  0xfff0000000000000n, 0x7ff8000000000000n, 0x7ff0000000000001n, 0x7ff4000000000123n, 0x3ff0000000000000n, 0xbff0000000000000n];
const arb64 = fc.oneof(
  fc.double().map(bitsOf),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.constantFrom(...special64),
  // Nearby exponents make cancellation and carries likely.
  fc.tuple(fc.integer({ min: 1020, max: 1030 }), fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }), fc.boolean()).map(([e, m, s]) => (s ? 1n << 63n : 0n) | (BigInt(e) << 52n) | m),
);
const arb32 = fc.oneof(
  fc.float().map(bits32),
  fc.bigInt({ min: 0n, max: 0xffffffffn }),
  fc.constantFrom(0n, 0x80000000n, 1n, 0x007fffffn, 0x00800000n, 0x7f7fffffn, 0x7f800000n, 0xff800000n, 0x7fc00000n, 0x7f800001n),
);
const isNaN64 = (b: bigint) => Number.isNaN(valueOf(b));

/** JS result bits, with every NaN made canonical (RISC-V returns only the canonical NaN). */
function jsBits64(x: number): bigint {
  return Number.isNaN(x) ? sf.CANONICAL_NAN_64 : bitsOf(x);
}
function jsBits32(x: number): bigint {
  return Number.isNaN(x) ? sf.CANONICAL_NAN_32 : bits32(Math.fround(x));
}

const ops64: [string, (a: bigint, b: bigint, rm: number) => bigint, (a: number, b: number) => number][] = [
  ["add", (a, b, rm) => sf.add(F64, a, b, rm), (a, b) => a + b],
  ["sub", (a, b, rm) => sf.sub(F64, a, b, rm), (a, b) => a - b],
  ["mul", (a, b, rm) => sf.mul(F64, a, b, rm), (a, b) => a * b],
  ["div", (a, b, rm) => sf.div(F64, a, b, rm), (a, b) => a / b],
  ["sqrt", (a, _b, rm) => sf.sqrt(F64, a, rm), (a) => Math.sqrt(a)],
];

for (const [name, exact, js] of ops64) {
  test(`binary64 ${name} under RNE agrees with JavaScript`, (t) => {
    fc.assert(fc.property(arb64, arb64, (a, b) => {
      const r = exact(a, b, Rm.RNE);
      sf.takeFlags();
      return r === jsBits64(js(valueOf(a), valueOf(b)));
    }), fuzzParameters());
    t.pass();
  });

  test(`binary32 ${name} under RNE agrees with Math.fround over binary64`, (t) => {
    const exact32 = { add: sf.add, sub: sf.sub, mul: sf.mul, div: sf.div }[name];
    fc.assert(fc.property(arb32, arb32, (a, b) => {
      const r = exact32 ? exact32(F32, a, b, Rm.RNE) : sf.sqrt(F32, a, Rm.RNE);
      sf.takeFlags();
      return r === jsBits32(js(value32(a), value32(b)));
    }), fuzzParameters());
    t.pass();
  });

  test(`binary64 ${name}: RDN ≤ RNE, RMM, RTZ ≤ RUP, one ulp apart exactly when inexact`, (t) => {
    fc.assert(fc.property(arb64, arb64, (a, b) => {
      const results = [Rm.RNE, Rm.RTZ, Rm.RDN, Rm.RUP, Rm.RMM].map((rm) => {
        const r = exact(a, b, rm);
        return { r, flags: sf.takeFlags() };
      });
      const [rne, rtz, rdn, rup, rmm] = results as [typeof results[0], typeof results[0], typeof results[0], typeof results[0], typeof results[0]];
      if (isNaN64(rne.r)) return results.every((x) => x.r === sf.CANONICAL_NAN_64 && x.flags === rne.flags);
      const v = (x: bigint) => valueOf(x);
      if (!(v(rdn.r) <= v(rne.r) && v(rne.r) <= v(rup.r) && v(rdn.r) <= v(rmm.r) && v(rmm.r) <= v(rup.r))) return false;
      // Exact: one result for every mode, but for the sign of an exact zero sum (−0 under RDN only).
      if (!(rne.flags & Flag.NX)) return results.every((x) => (x.r === rne.r || (v(x.r) === 0 && v(rne.r) === 0 && x === rdn)) && x.flags === rne.flags);
      // Inexact: RTZ is the one of RDN/RUP nearer zero; the two are neighbours (or overflow limits).
      const towardZero = v(rne.r) > 0 || (v(rne.r) === 0 && !(rne.r >> 63n)) ? rdn.r : rup.r;
      if (rtz.r !== towardZero) return false;
      if (rne.flags & Flag.OF) return true;
      // The next binary64 up from RDN's result is RUP's.
      const nextUp = rdn.r === 1n << 63n ? 1n : rdn.r >> 63n ? rdn.r - 1n : rdn.r + 1n;
      return nextUp === rup.r || (rup.r === 0n && rdn.r === (1n << 63n) + 1n);
    }), fuzzParameters());
    t.pass();
  });
}

/** Exact rational value of a finite double: [numerator, power of two]. */
function rational(b: bigint): [bigint, number] {
  const e = Number((b >> 52n) & 0x7ffn);
  const m = b & ((1n << 52n) - 1n);
  const sig = e === 0 ? m : m | (1n << 52n);
  const n = b >> 63n ? -sig : sig;
  return [n, (e === 0 ? 1 : e) - 1075];
}
function exactEqual(x: [bigint, number], y: [bigint, number]): boolean {
  const e = Math.min(x[1], y[1]);
  return x[0] << BigInt(x[1] - e) === y[0] << BigInt(y[1] - e);
}

test("binary64 inexact flag: set exactly when the rounded result differs from the exact one", (t) => {
  const finite = fc.double({ noNaN: true, noDefaultInfinity: true }).map(bitsOf);
  fc.assert(fc.property(finite, finite, (a, b) => {
    // add: the exact sum is a + b in rationals.
    const s = sf.add(F64, a, b, Rm.RNE);
    const fs = sf.takeFlags();
    if (!Number.isFinite(valueOf(s))) return (fs & Flag.OF) !== 0;
    const [an, ae] = rational(a), [bn, be] = rational(b);
    const e = Math.min(ae, be);
    const sum: [bigint, number] = [(an << BigInt(ae - e)) + (bn << BigInt(be - e)), e];
    if (exactEqual(sum, rational(s)) === ((fs & Flag.NX) !== 0)) return false;
    // mul: the exact product is the product of the rationals.
    const p = sf.mul(F64, a, b, Rm.RNE);
    const fp = sf.takeFlags();
    if (!Number.isFinite(valueOf(p))) return (fp & Flag.OF) !== 0;
    return exactEqual([an * bn, ae + be], rational(p)) !== ((fp & Flag.NX) !== 0);
  }), fuzzParameters());
  t.pass();
});

test("conversions agree with JavaScript: f64→f32 (Math.fround), integers→f64 (Number), f64→int (Math.trunc)", (t) => {
  fc.assert(fc.property(arb64, fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), (a, i) => {
    const x = valueOf(a);
    if (sf.convert(F64, F32, a, Rm.RNE) !== jsBits32(x)) return false;
    const back = sf.convert(F32, F64, jsBits32(x), Rm.RNE);
    if (back !== jsBits64(Math.fround(x))) return false;
    if (sf.fromInt(F64, BigInt.asUintN(64, i), Rm.RNE, { bits: 64, signed: true }) !== bitsOf(Number(i))) return false;
    if (sf.fromInt(F64, BigInt.asUintN(64, i), Rm.RNE, { bits: 64, signed: false }) !== bitsOf(Number(BigInt.asUintN(64, i)))) return false;
    if (Number.isFinite(x) && Math.abs(x) < 2 ** 63) {
      if (sf.toInt(F64, a, Rm.RTZ, { bits: 64, signed: true }) !== BigInt.asUintN(64, BigInt(Math.trunc(x)))) return false;
      const rne = BigInt.asIntN(64, sf.toInt(F64, a, Rm.RNE, { bits: 64, signed: true }));
      // Nearest, ties to even: within a half, and a tie goes to the even neighbour.
      const d = Math.abs(Number(rne) - x);
      if (d > 0.5 || (d === 0.5 && rne % 2n !== 0n)) return false;
    }
    sf.takeFlags();
    return true;
  }), fuzzParameters());
  t.pass();
});

test("fma: x × y + z equals the RNE sum when the product is exact, and flags ∞ × 0 + qNaN invalid", (t) => {
  // Products of two 26-bit significands are exact in binary64, so fma = add(mul, z).
  const small = fc.tuple(fc.integer({ min: -(2 ** 26), max: 2 ** 26 }), fc.integer({ min: -40, max: 40 })).map(([m, e]) => bitsOf(m * 2 ** e));
  fc.assert(fc.property(small, small, (a, b) => {
    const product = sf.mul(F64, a, b, Rm.RNE);
    if (sf.takeFlags() & Flag.NX) return true;
    const z = bitsOf(1.5);
    const fused = sf.fma(F64, a, b, z, Rm.RNE);
    const fusedFlags = sf.takeFlags();
    const sum = sf.add(F64, product, z, Rm.RNE);
    return fused === sum && fusedFlags === sf.takeFlags();
  }), fuzzParameters());
  sf.takeFlags();
  t.is(sf.fma(F64, 0x7ff0000000000000n, 0n, sf.CANONICAL_NAN_64, Rm.RNE), sf.CANONICAL_NAN_64);
  t.is(sf.takeFlags(), Flag.NV);
  // A single rounding: (1 + 2^-52)(1 − 2^-52) − 1 = −2^-104 exactly, where mul-then-add gives 0.
  t.is(valueOf(sf.fma(F64, bitsOf(1 + 2 ** -52), bitsOf(1 - 2 ** -52), bitsOf(-1), Rm.RNE)), -(2 ** -104));
});

test("underflow is detected after rounding (RISC-V), and only when inexact", (t) => {
  // (2^64 − 1) · 2^-1086 = 2^-1022 (1 − 2^-64): rounds up to the smallest normal under RNE (not
  // tiny after rounding: NX only); down under RTZ (tiny and inexact: UF too).
  sf.takeFlags();
  t.is(sf.roundPack(F64, 0, -1086, (1n << 64n) - 1n, Rm.RNE), 0x0010000000000000n);
  t.is(sf.takeFlags(), Flag.NX);
  t.is(sf.roundPack(F64, 0, -1086, (1n << 64n) - 1n, Rm.RTZ), 0x000fffffffffffffn);
  t.is(sf.takeFlags(), Flag.NX | Flag.UF);
  // An exact subnormal result raises nothing.
  t.is(sf.mul(F64, 1n, bitsOf(1), Rm.RNE), 1n);
  t.is(sf.takeFlags(), 0);
});

test("min/max (2019): −0 < +0, a single NaN gives the other operand, a signaling NaN is invalid", (t) => {
  const pz = 0n, nz = 1n << 63n, snan = 0x7ff0000000000001n, qnan = 0x7ff8000000000000n, one = bitsOf(1);
  sf.takeFlags();
  t.is(sf.minMax(F64, pz, nz, false), nz);
  t.is(sf.minMax(F64, nz, pz, true), pz);
  t.is(sf.minMax(F64, qnan, one, false), one);
  t.is(sf.takeFlags(), 0);
  t.is(sf.minMax(F64, snan, one, true), one);
  t.is(sf.takeFlags(), Flag.NV);
  t.is(sf.minMax(F64, snan, qnan, true), sf.CANONICAL_NAN_64);
});

test("float → integer limits: NaN → largest, out of range → limit with NV only, unsigned results sign-extended", (t) => {
  sf.takeFlags();
  const w = { bits: 32, signed: true } as const, wu = { bits: 32, signed: false } as const;
  t.is(sf.toInt(F64, sf.CANONICAL_NAN_64, Rm.RNE, w), 0x7fffffffn);
  t.is(sf.takeFlags(), Flag.NV);
  t.is(sf.toInt(F64, bitsOf(-3e10), Rm.RNE, w), 0xffffffff80000000n);
  t.is(sf.takeFlags(), Flag.NV);
  t.is(sf.toInt(F64, bitsOf(4e9), Rm.RNE, wu), 0xffffffffee6b2800n);
  t.is(sf.takeFlags(), 0);
  t.is(sf.toInt(F64, bitsOf(-0.25), Rm.RNE, wu), 0n);
  t.is(sf.takeFlags(), Flag.NX);
  t.is(sf.toInt(F64, bitsOf(-1), Rm.RNE, wu), 0n);
  t.is(sf.takeFlags(), Flag.NV);
});
