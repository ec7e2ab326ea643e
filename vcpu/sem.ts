/**
 * The vocabulary in which semantics.ts states what each instruction does. An engine implements
 * it by emitting WebAssembly; the interpreter and the translator differ only in where operands
 * come from (decoded fields at run time vs constants at translation time) and how they leave.
 *
 * An Expr emits code that leaves one i64 on the wasm stack; a Cond leaves one i32 (0 or 1).
 * Expressions are emitted where they are used, so an operand used twice is computed twice:
 * wrap it in tmp() when it has effects or is costly.
 */
export type Expr = () => void;
export type Cond = () => void;

export type Width = 1 | 2 | 4 | 8;
export type AmoKind = "add" | "swap" | "xor" | "and" | "or" | "min" | "max" | "minu" | "maxu";
export type CsrKind = "rw" | "rs" | "rc";
export type HostOp = "ecall" | "ebreak" | "mret" | "sret" | "wfi" | "sfence.vma";
/** An operation of the floating-point reference (vcpu/fpu.ts FP_OPS), e.g. "add.d", "cvt.w.s". */
export type FpOp = string;

export interface Sem {
  // Operands of the current instruction.
  readonly rs1: Expr;
  readonly rs2: Expr;
  readonly imm: Expr;
  readonly pc: Expr;
  /** pc + instruction length (2 or 4). */
  readonly nextPc: Expr;
  const(value: bigint | number): Expr;
  /** Evaluate once into a temporary; the result reads the temporary. */
  tmp(e: Expr): Expr;

  // Pure 64-bit arithmetic (wrapping, shift amounts taken mod 64).
  add(a: Expr, b: Expr): Expr;
  sub(a: Expr, b: Expr): Expr;
  and(a: Expr, b: Expr): Expr;
  or(a: Expr, b: Expr): Expr;
  xor(a: Expr, b: Expr): Expr;
  shl(a: Expr, b: Expr): Expr;
  shrU(a: Expr, b: Expr): Expr;
  shrS(a: Expr, b: Expr): Expr;
  mul(a: Expr, b: Expr): Expr;
  /** High 64 bits of the 128-bit product, unsigned × unsigned. */
  mulhU(a: Expr, b: Expr): Expr;
  /** Division primitives: undefined for b = 0 and (for divS) MIN / -1; semantics guard them. */
  divS(a: Expr, b: Expr): Expr;
  divU(a: Expr, b: Expr): Expr;
  remS(a: Expr, b: Expr): Expr;
  remU(a: Expr, b: Expr): Expr;
  sext32(a: Expr): Expr;
  zext32(a: Expr): Expr;

  eq(a: Expr, b: Expr): Cond;
  ne(a: Expr, b: Expr): Cond;
  ltS(a: Expr, b: Expr): Cond;
  ltU(a: Expr, b: Expr): Cond;
  geS(a: Expr, b: Expr): Cond;
  geU(a: Expr, b: Expr): Cond;
  /** 1 or 0 as an i64. */
  bool(c: Cond): Expr;
  /** Evaluates only the chosen arm. */
  ifElse(c: Cond, then: Expr, otherwise: Expr): Expr;

  // Effects.
  setRd(value: Expr): void;
  /** Continue at `target` instead of nextPc. */
  jump(target: Expr): void;
  branch(c: Cond, target: Expr): void;
  load(width: Width, signed: boolean, addr: Expr): Expr;
  store(width: Width, addr: Expr, value: Expr): void;
  /** Atomic read-modify-write on every copy; yields the old value sign-extended from `width`. */
  amo(kind: AmoKind, width: 4 | 8, addr: Expr, value: Expr): Expr;
  loadReserved(width: 4 | 8, addr: Expr): Expr;
  /** Yields 0 on success, 1 on failure. */
  storeConditional(width: 4 | 8, addr: Expr, value: Expr): Expr;
  /** Read-modify-write a CSR (number = imm); source is rs1, or the rs1 field itself when `immediate`. */
  csr(kind: CsrKind, immediate: boolean): Expr;
  fence(): void;
  fenceI(): void;
  /** Leave the engine so the host carries out a system instruction. */
  host(op: HostOp): void;
  /** Raise illegal-instruction for the current instruction. */
  illegal(): void;

  // F and D. Register values are raw 64-bit contents (singles NaN-boxed).
  /** The f registers the rs1, rs2 and rs3 fields name. */
  readonly frs1: Expr;
  readonly frs2: Expr;
  readonly frs3: Expr;
  /** Write the f register rd names; mstatus.FS becomes Dirty. */
  setFrd(value: Expr): void;
  /** Raise illegal-instruction when mstatus.FS is Off (every F/D instruction begins with it). */
  requireFp(): void;
  /** The rounding mode of the rm field (imm bits 2:0), frm when dynamic; illegal when reserved. */
  roundingMode(): Expr;
  /**
   * Floating-point operation `op` under rounding mode `rm` on register values (absent operands
   * read as 0): its result, with its exception flags accumulated in fflags (FS Dirty if any).
   */
  fp(op: FpOp, rm: Expr, a: Expr, b?: Expr, c?: Expr): Expr;
}
