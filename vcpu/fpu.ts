/**
 * The floating-point operations the engines call out of wasm (Sem.fp): each is one softfloat.ts
 * operation on register values, with RISC-V's register conventions around it — single operands
 * unboxed (a value not NaN-boxed reads as the canonical NaN), single results NaN-boxed, integer
 * results sign-extended to 64 bits. The engines pass the rounding mode already resolved (frm for
 * the dynamic mode, reserved modes trapped), and this module leaves the flags to the caller
 * (softfloat.takeFlags).
 */
import * as sf from "./softfloat.ts";

type Operation = (rm: number, a: bigint, b: bigint, c: bigint) => bigint;

const INT_FORMATS = {
  w: { bits: 32, signed: true },
  wu: { bits: 32, signed: false },
  l: { bits: 64, signed: true },
  lu: { bits: 64, signed: false },
} as const;

function operations(): Map<string, Operation> {
  const ops = new Map<string, Operation>();
  for (const t of ["s", "d"] as const) {
    const f = t === "s" ? sf.F32 : sf.F64;
    // Operand in, result out of a 64-bit f register.
    const arg = t === "s" ? sf.unbox : (x: bigint) => x;
    const out = t === "s" ? (x: bigint) => x | sf.BOX : (x: bigint) => x;
    ops.set(`add.${t}`, (rm, a, b) => out(sf.add(f, arg(a), arg(b), rm)));
    ops.set(`sub.${t}`, (rm, a, b) => out(sf.sub(f, arg(a), arg(b), rm)));
    ops.set(`mul.${t}`, (rm, a, b) => out(sf.mul(f, arg(a), arg(b), rm)));
    ops.set(`div.${t}`, (rm, a, b) => out(sf.div(f, arg(a), arg(b), rm)));
    ops.set(`sqrt.${t}`, (rm, a) => out(sf.sqrt(f, arg(a), rm)));
    // fmadd: a·b + c; fmsub: a·b − c; fnmsub: −(a·b) + c; fnmadd: −(a·b) − c.
    for (const [name, negP, negC] of [["madd", false, false], ["msub", false, true], ["nmsub", true, false], ["nmadd", true, true]] as const) {
      ops.set(`${name}.${t}`, (rm, a, b, c) => out(sf.fma(f, arg(a), arg(b), arg(c), rm, negP, negC)));
    }
    ops.set(`sgnj.${t}`, (_rm, a, b) => out(sf.signInject(f, arg(a), arg(b), 0)));
    ops.set(`sgnjn.${t}`, (_rm, a, b) => out(sf.signInject(f, arg(a), arg(b), 1)));
    ops.set(`sgnjx.${t}`, (_rm, a, b) => out(sf.signInject(f, arg(a), arg(b), 2)));
    ops.set(`min.${t}`, (_rm, a, b) => out(sf.minMax(f, arg(a), arg(b), false)));
    ops.set(`max.${t}`, (_rm, a, b) => out(sf.minMax(f, arg(a), arg(b), true)));
    ops.set(`eq.${t}`, (_rm, a, b) => sf.feq(f, arg(a), arg(b)));
    ops.set(`lt.${t}`, (_rm, a, b) => sf.flt(f, arg(a), arg(b), false));
    ops.set(`le.${t}`, (_rm, a, b) => sf.flt(f, arg(a), arg(b), true));
    ops.set(`class.${t}`, (_rm, a) => sf.fclass(f, arg(a)));
    for (const [name, int] of Object.entries(INT_FORMATS)) {
      ops.set(`cvt.${name}.${t}`, (rm, a) => sf.toInt(f, arg(a), rm, int));
      ops.set(`cvt.${t}.${name}`, (rm, a) => out(sf.fromInt(f, a, rm, int)));
    }
  }
  ops.set("cvt.s.d", (rm, a) => sf.convert(sf.F64, sf.F32, a, rm) | sf.BOX);
  ops.set("cvt.d.s", (rm, a) => sf.convert(sf.F32, sf.F64, sf.unbox(a), rm));
  return ops;
}

const OPERATIONS = operations();
/** Operation names in import-argument order. */
export const FP_OPS: readonly string[] = [...OPERATIONS.keys()];
export const FP_OP_NUMBER: ReadonlyMap<string, number> = new Map(FP_OPS.map((name, i) => [name, i]));
const BY_NUMBER: readonly Operation[] = [...OPERATIONS.values()];

/** Run operation number `op` on 64-bit register values (as wasm passes them: signed); flags to takeFlags. */
export function fpExecute(op: number, rm: number, a: bigint, b: bigint, c: bigint): bigint {
  const run = BY_NUMBER[op];
  if (!run) throw new RangeError(`no floating-point operation ${op}`);
  return run(rm, BigInt.asUintN(64, a), BigInt.asUintN(64, b), BigInt.asUintN(64, c));
}

/**
 * The `fp` import of an engine module for the hart whose block is at `hartBase` in `view`:
 * runs the operation and accumulates its flags in the hart's fcsr (marking FS Dirty).
 */
export function fpImport(view: DataView, hartBase: number, fcsrSlot: number, fsSlot: number) {
  return (_hart: number, op: number, rm: number, a: bigint, b: bigint, c: bigint): bigint => {
    const result = fpExecute(op, rm, a, b, c);
    const raised = sf.takeFlags();
    if (raised !== 0) {
      view.setInt32(hartBase + fcsrSlot, view.getInt32(hartBase + fcsrSlot, true) | raised, true);
      view.setInt32(hartBase + fsSlot, 3, true);
    }
    return BigInt.asIntN(64, result);
  };
}
