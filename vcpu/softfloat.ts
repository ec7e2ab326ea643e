/**
 * The exact reference for RISC-V's F and D extensions: IEEE 754 binary32 and binary64 arithmetic
 * on the raw bits, in BigInt, with RISC-V's exception flags. Correct first: every operation
 * reduces its exact result to (sign, exponent, integer significand with a sticky bit) and one
 * rounding routine (roundPack) makes it a value of the format under RNE/RTZ/RDN/RUP/RMM. Both
 * engines call it out of wasm (vcpu/wasm/wasm-sem.ts `fp`); fast paths must agree with it.
 *
 * RISC-V's choices (unprivileged spec, "F" chapter): tininess is detected after rounding; every
 * NaN result is the canonical NaN (no payload propagation); the invalid flag is raised for
 * signaling NaN inputs and invalid operations (including ∞×0 in an FMA whose addend is a quiet NaN);
 * min/max follow IEEE 754-2019 (−0 < +0, a single NaN operand yields the other). NaN-boxing is the
 * caller's business except where an operation reads a single (unbox() helps).
 */

export const Flag = { NX: 1, UF: 2, OF: 4, DZ: 8, NV: 16 } as const;
export const Rm = { RNE: 0, RTZ: 1, RDN: 2, RUP: 3, RMM: 4 } as const;

export interface Format {
  /** Exponent field width. */
  readonly e: number;
  /** Fraction field width (precision − 1). */
  readonly m: number;
}
export const F32: Format = { e: 8, m: 23 };
export const F64: Format = { e: 11, m: 52 };

const MASK64 = (1n << 64n) - 1n;
/** High half of a NaN-boxed single. */
export const BOX = 0xffffffff00000000n;
export const CANONICAL_NAN_32 = 0x7fc00000n;
export const CANONICAL_NAN_64 = 0x7ff8000000000000n;

/** Flags raised since the last takeFlags(). */
let flags = 0;
export function takeFlags(): number {
  const f = flags;
  flags = 0;
  return f;
}

const bias = (f: Format) => (1 << (f.e - 1)) - 1;
const emin = (f: Format) => 1 - bias(f);
const emax = (f: Format) => bias(f);
const width = (f: Format) => BigInt(f.e + f.m + 1);
const expAllOnes = (f: Format) => (1 << f.e) - 1;
const canonicalNaN = (f: Format) => (f === F32 ? CANONICAL_NAN_32 : CANONICAL_NAN_64);
const signBit = (f: Format) => 1n << (width(f) - 1n);

function bitLength(x: bigint): number {
  return x === 0n ? 0 : x.toString(2).length;
}

/** A single read from a 64-bit register: a value not properly NaN-boxed reads as the canonical NaN. */
export function unbox(bits: bigint): bigint {
  return (bits & BOX) === BOX ? bits & 0xffffffffn : CANONICAL_NAN_32;
}

type Kind = "zero" | "finite" | "inf" | "qnan" | "snan";
interface Unpacked {
  kind: Kind;
  sign: number;
  /** value = (−1)^sign · sig · 2^exp (finite nonzero only). */
  sig: bigint;
  exp: number;
}

function unpack(f: Format, bits: bigint): Unpacked {
  const m = BigInt(f.m);
  const sign = Number((bits >> (width(f) - 1n)) & 1n);
  const biased = Number((bits >> m) & BigInt(expAllOnes(f)));
  const frac = bits & ((1n << m) - 1n);
  if (biased === expAllOnes(f)) {
    if (frac === 0n) return { kind: "inf", sign, sig: 0n, exp: 0 };
    return { kind: (frac >> (m - 1n)) & 1n ? "qnan" : "snan", sign, sig: 0n, exp: 0 };
  }
  if (biased === 0) {
    if (frac === 0n) return { kind: "zero", sign, sig: 0n, exp: 0 };
    return { kind: "finite", sign, sig: frac, exp: emin(f) - f.m };
  }
  return { kind: "finite", sign, sig: frac | (1n << m), exp: biased - bias(f) - f.m };
}

const isNaN = (u: Unpacked) => u.kind === "qnan" || u.kind === "snan";
const zero = (f: Format, sign: number) => (sign ? signBit(f) : 0n);
const infinity = (f: Format, sign: number) => (sign ? signBit(f) : 0n) | (BigInt(expAllOnes(f)) << BigInt(f.m));
const largest = (f: Format, sign: number) => infinity(f, sign) - 1n;

/**
 * Shift `sig` right by `shift` bits, rounding under `rm` for a value of sign `sign`.
 * Returns the rounded integer and whether anything was discarded.
 */
function shiftRound(sig: bigint, shift: number, sign: number, rm: number): [bigint, boolean] {
  if (shift <= 0) return [sig << BigInt(-shift), false];
  const s = BigInt(shift);
  let kept = sig >> s;
  const rest = sig & ((1n << s) - 1n);
  if (rest === 0n) return [kept, false];
  const half = 1n << (s - 1n);
  let up: boolean;
  switch (rm) {
    case Rm.RNE: up = rest > half || (rest === half && (kept & 1n) === 1n); break;
    case Rm.RTZ: up = false; break;
    case Rm.RDN: up = sign === 1; break;
    case Rm.RUP: up = sign === 0; break;
    case Rm.RMM: up = rest >= half; break;
    default: throw new RangeError(`reserved rounding mode ${rm}`);
  }
  if (up) kept += 1n;
  return [kept, true];
}

/**
 * The one rounding routine: the value (−1)^sign · sig · 2^exp (sig > 0; any sticky information is
 * already OR'ed into sig's low bit, below the rounding position) to format `f` under `rm`,
 * raising NX, UF (tiny after rounding and inexact), OF.
 */
export function roundPack(f: Format, sign: number, exp: number, sig: bigint, rm: number): bigint {
  if (sig === 0n) return zero(f, sign);
  const p = f.m + 1;
  const top = exp + bitLength(sig) - 1; // exponent of the leading bit
  // Tininess after rounding: round to p bits with an unbounded exponent range, look at the exponent.
  let tiny = false;
  if (top < emin(f)) {
    const [r] = shiftRound(sig, top - f.m - exp, sign, rm);
    tiny = top + (bitLength(r) > p ? 1 : 0) < emin(f);
  }
  const quantum = Math.max(top, emin(f)) - f.m;
  let [kept, inexact] = shiftRound(sig, quantum - exp, sign, rm);
  let q = quantum;
  if (bitLength(kept) > p) {
    kept >>= 1n;
    q += 1;
  }
  if (inexact) flags |= Flag.NX;
  if (tiny && inexact) flags |= Flag.UF;
  if (kept === 0n) return zero(f, sign);
  const finalTop = q + bitLength(kept) - 1;
  if (finalTop > emax(f)) {
    flags |= Flag.OF | Flag.NX;
    const toInfinity = rm === Rm.RNE || rm === Rm.RMM || (rm === Rm.RUP && sign === 0) || (rm === Rm.RDN && sign === 1);
    return toInfinity ? infinity(f, sign) : largest(f, sign);
  }
  const s = sign ? signBit(f) : 0n;
  if (bitLength(kept) <= f.m) return s | kept; // subnormal (exponent field 0)
  const biased = BigInt(finalTop + bias(f));
  return s | (biased << BigInt(f.m)) | (kept & ((1n << BigInt(f.m)) - 1n));
}

/** NaN result of an operation with these operands: canonical, NV when any is signaling. */
function nanResult(f: Format, ...operands: Unpacked[]): bigint {
  if (operands.some((u) => u.kind === "snan")) flags |= Flag.NV;
  return canonicalNaN(f);
}
function invalid(f: Format): bigint {
  flags |= Flag.NV;
  return canonicalNaN(f);
}

/** The exact sum of two finite-or-zero values, rounded; zero signs per IEEE 754 6.3. */
function addFinite(f: Format, a: Unpacked, b: Unpacked, rm: number): bigint {
  const e = Math.min(a.kind === "zero" ? Infinity : a.exp, b.kind === "zero" ? Infinity : b.exp);
  if (e === Infinity) return zero(f, a.sign === b.sign ? a.sign : rm === Rm.RDN ? 1 : 0);
  const term = (u: Unpacked) => (u.kind === "zero" ? 0n : (u.sign ? -u.sig : u.sig) << BigInt(u.exp - e));
  const sum = term(a) + term(b);
  if (sum === 0n) return zero(f, a.kind === "zero" && b.kind === "zero" && a.sign === b.sign ? a.sign : rm === Rm.RDN ? 1 : 0);
  return roundPack(f, sum < 0n ? 1 : 0, e, sum < 0n ? -sum : sum, rm);
}

export function add(f: Format, x: bigint, y: bigint, rm: number): bigint {
  const a = unpack(f, x), b = unpack(f, y);
  if (isNaN(a) || isNaN(b)) return nanResult(f, a, b);
  if (a.kind === "inf" || b.kind === "inf") {
    if (a.kind === "inf" && b.kind === "inf" && a.sign !== b.sign) return invalid(f);
    return infinity(f, a.kind === "inf" ? a.sign : b.sign);
  }
  return addFinite(f, a, b, rm);
}

export function sub(f: Format, x: bigint, y: bigint, rm: number): bigint {
  const b = unpack(f, y);
  // Negating a NaN would not change its class; the result is canonical anyway.
  return isNaN(b) ? add(f, x, y, rm) : add(f, x, y ^ signBit(f), rm);
}

export function mul(f: Format, x: bigint, y: bigint, rm: number): bigint {
  const a = unpack(f, x), b = unpack(f, y);
  if (isNaN(a) || isNaN(b)) return nanResult(f, a, b);
  const sign = a.sign ^ b.sign;
  if (a.kind === "inf" || b.kind === "inf") {
    if (a.kind === "zero" || b.kind === "zero") return invalid(f);
    return infinity(f, sign);
  }
  if (a.kind === "zero" || b.kind === "zero") return zero(f, sign);
  return roundPack(f, sign, a.exp + b.exp, a.sig * b.sig, rm);
}

export function div(f: Format, x: bigint, y: bigint, rm: number): bigint {
  const a = unpack(f, x), b = unpack(f, y);
  if (isNaN(a) || isNaN(b)) return nanResult(f, a, b);
  const sign = a.sign ^ b.sign;
  if (a.kind === "inf") return b.kind === "inf" ? invalid(f) : infinity(f, sign);
  if (b.kind === "inf") return zero(f, sign);
  if (b.kind === "zero") {
    if (a.kind === "zero") return invalid(f);
    flags |= Flag.DZ;
    return infinity(f, sign);
  }
  if (a.kind === "zero") return zero(f, sign);
  // A quotient of at least p + 2 bits, then the remainder as a sticky bit below them.
  const k = Math.max(0, f.m + 3 + bitLength(b.sig) - bitLength(a.sig));
  const n = a.sig << BigInt(k);
  const q = n / b.sig;
  const sticky = n % b.sig === 0n ? 0n : 1n;
  return roundPack(f, sign, a.exp - b.exp - k - 1, (q << 1n) | sticky, rm);
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << BigInt(Math.ceil(bitLength(n) / 2));
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

export function sqrt(f: Format, x: bigint, rm: number): bigint {
  const a = unpack(f, x);
  if (isNaN(a)) return nanResult(f, a);
  if (a.kind === "zero") return x;
  if (a.sign) return invalid(f);
  if (a.kind === "inf") return x;
  // sig · 2^exp with exp even and sig wide enough for a root of p + 2 bits.
  let shift = Math.max(0, 2 * (f.m + 3) - bitLength(a.sig) + 2);
  if ((a.exp - shift) % 2 !== 0) shift++;
  const n = a.sig << BigInt(shift);
  const r = isqrt(n);
  const sticky = r * r === n ? 0n : 1n;
  return roundPack(f, 0, (a.exp - shift) / 2 - 1, (r << 1n) | sticky, rm);
}

/** (x × y) + z rounded once; `negateProduct`/`negateAddend` give fmsub, fnmsub, fnmadd. */
export function fma(f: Format, x: bigint, y: bigint, z: bigint, rm: number, negateProduct = false, negateAddend = false): bigint {
  const a = unpack(f, x), b = unpack(f, y), c = unpack(f, z);
  const infTimesZero = (a.kind === "inf" && b.kind === "zero") || (a.kind === "zero" && b.kind === "inf");
  // RISC-V: ∞ × 0 is invalid even when the addend is a quiet NaN.
  if (infTimesZero) return invalid(f);
  if (isNaN(a) || isNaN(b) || isNaN(c)) return nanResult(f, a, b, c);
  const ps = a.sign ^ b.sign ^ (negateProduct ? 1 : 0);
  const cs = c.sign ^ (negateAddend ? 1 : 0);
  if (a.kind === "inf" || b.kind === "inf") {
    if (c.kind === "inf" && cs !== ps) return invalid(f);
    return infinity(f, ps);
  }
  if (c.kind === "inf") return infinity(f, cs);
  const product: Unpacked = a.kind === "zero" || b.kind === "zero"
    ? { kind: "zero", sign: ps, sig: 0n, exp: 0 }
    : { kind: "finite", sign: ps, sig: a.sig * b.sig, exp: a.exp + b.exp };
  return addFinite(f, product, { ...c, sign: cs }, rm);
}

// --- comparisons, min/max, classification, sign injection ----------------------------------------

/** a < b (or a ≤ b when `orEqual`) for non-NaN values. */
function less(f: Format, x: bigint, y: bigint, orEqual: boolean): boolean {
  const a = unpack(f, x), b = unpack(f, y);
  const key = (u: Unpacked, bits: bigint): bigint => {
    // Order-preserving integer: magnitude bits, negated for negative values (±0 both map to 0).
    const magnitude = bits & (signBit(f) - 1n);
    return u.sign ? -magnitude : magnitude;
  };
  const ka = key(a, x), kb = key(b, y);
  return orEqual ? ka <= kb : ka < kb;
}

export function feq(f: Format, x: bigint, y: bigint): bigint {
  const a = unpack(f, x), b = unpack(f, y);
  if (isNaN(a) || isNaN(b)) {
    if (a.kind === "snan" || b.kind === "snan") flags |= Flag.NV;
    return 0n;
  }
  return less(f, x, y, true) && less(f, y, x, true) ? 1n : 0n;
}

/** flt / fle: signaling comparisons (any NaN is invalid). */
export function flt(f: Format, x: bigint, y: bigint, orEqual: boolean): bigint {
  const a = unpack(f, x), b = unpack(f, y);
  if (isNaN(a) || isNaN(b)) {
    flags |= Flag.NV;
    return 0n;
  }
  return less(f, x, y, orEqual) ? 1n : 0n;
}

/** fmin / fmax (IEEE 754-2019 minimumNumber/maximumNumber, with −0 < +0). */
export function minMax(f: Format, x: bigint, y: bigint, max: boolean): bigint {
  const a = unpack(f, x), b = unpack(f, y);
  if (a.kind === "snan" || b.kind === "snan") flags |= Flag.NV;
  if (isNaN(a) && isNaN(b)) return canonicalNaN(f);
  if (isNaN(a)) return y;
  if (isNaN(b)) return x;
  if (a.kind === "zero" && b.kind === "zero" && a.sign !== b.sign) return (a.sign === 1) === max ? y : x;
  if (less(f, x, y, false)) return max ? y : x;
  if (less(f, y, x, false)) return max ? x : y;
  return x;
}

export function fclass(f: Format, x: bigint): bigint {
  const a = unpack(f, x);
  const subnormal = a.kind === "finite" && ((x >> BigInt(f.m)) & BigInt(expAllOnes(f))) === 0n;
  switch (a.kind) {
    case "inf": return a.sign ? 1n : 1n << 7n;
    case "zero": return a.sign ? 1n << 3n : 1n << 4n;
    case "finite": return a.sign ? (subnormal ? 1n << 2n : 1n << 1n) : subnormal ? 1n << 5n : 1n << 6n;
    case "snan": return 1n << 8n;
    case "qnan": return 1n << 9n;
  }
}

/** fsgnj (0), fsgnjn (1), fsgnjx (2). */
export function signInject(f: Format, x: bigint, y: bigint, kind: 0 | 1 | 2): bigint {
  const s = signBit(f);
  const ys = y & s;
  const sign = kind === 0 ? ys : kind === 1 ? ys ^ s : (x & s) ^ ys;
  return (x & ~s & (s | (s - 1n))) | sign;
}

// --- conversions -------------------------------------------------------------------------------

/** Integer formats of the conversions: 32 or 64 bits, signed or unsigned. */
export interface IntFormat {
  bits: 32 | 64;
  signed: boolean;
}

/**
 * Float to integer under `rm`. Out of range, ±∞ and NaN raise NV (and not NX) and give the
 * nearest limit (NaN: the largest); the result is returned sign-extended to 64 bits (RV64 keeps
 * 32-bit results, unsigned ones too, sign-extended in the register).
 */
export function toInt(f: Format, x: bigint, rm: number, to: IntFormat): bigint {
  const a = unpack(f, x);
  const n = BigInt(to.bits);
  const max = to.signed ? (1n << (n - 1n)) - 1n : (1n << n) - 1n;
  const min = to.signed ? -(1n << (n - 1n)) : 0n;
  const out = (v: bigint) => BigInt.asUintN(64, BigInt.asIntN(to.bits, v));
  if (isNaN(a)) {
    flags |= Flag.NV;
    return out(max);
  }
  if (a.kind === "inf") {
    flags |= Flag.NV;
    return out(a.sign ? min : max);
  }
  if (a.kind === "zero") return 0n;
  const [magnitude, inexact] = shiftRound(a.sig, -a.exp, a.sign, rm);
  const value = a.sign ? -magnitude : magnitude;
  if (value > max || value < min) {
    flags |= Flag.NV;
    return out(value > max ? max : min);
  }
  if (inexact) flags |= Flag.NX;
  return out(value);
}

/** Integer (the low `from.bits` bits of `x`, signed or not) to float under `rm`. */
export function fromInt(f: Format, x: bigint, rm: number, from: IntFormat): bigint {
  const v = from.signed ? BigInt.asIntN(from.bits, x) : BigInt.asUintN(from.bits, x);
  if (v === 0n) return 0n;
  return roundPack(f, v < 0n ? 1 : 0, 0, v < 0n ? -v : v, rm);
}

/** Between formats: s → d is exact, d → s rounds. */
export function convert(from: Format, to: Format, x: bigint, rm: number): bigint {
  const a = unpack(from, x);
  if (isNaN(a)) return nanResult(to, a);
  if (a.kind === "inf") return infinity(to, a.sign);
  if (a.kind === "zero") return zero(to, a.sign);
  return roundPack(to, a.sign, a.exp, a.sig, rm);
}

export const u64 = (v: bigint) => v & MASK64;
