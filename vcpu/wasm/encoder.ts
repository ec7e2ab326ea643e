/**
 * A small WebAssembly binary encoder: just what the engines need to generate code at run time.
 *
 * We write our own rather than use binaryen: modules are built on hot paths (the translator
 * compiles pages while the guest runs) and binaryen's start-up and IR costs dwarf a module's
 * ~0.15 ms compile time. The encoder is a straight byte writer, so emitting costs about as much
 * as copying the bytes.
 */
import { setFlagsFromString } from "node:v8";

// V8 flags, set once per process before any module compiles (every thread that builds modules
// imports this file; V8's flags are process-wide, so hart and translator threads see them too):
//  - V8 in Node 20 reads the branch hints of the branch-hinting proposal (FunctionBody.ifHinted)
//    only behind --experimental-wasm-branch-hinting (later V8s by default). Without it the hints
//    are an ignored custom section — slower code, never different behaviour.
//  - --no-wasm-dynamic-tiering: optimise every function in the background as soon as its baseline
//    code exists, instead of after it has run for a while. Our modules are hot by construction (a
//    translation exists because its page is hot; the interpreter runs everything), so waiting to
//    see them hot only delays the optimised code: cpubound's long build ran ~9% faster in-VM
//    (`node --no-wasm-dynamic-tiering bin/kmemvisor.js run guests/bin/long/cpubound.elf --engine jit`
//    against the same without, interleaved, 5 rounds: medians 928 and 1014 ms).
// (Lazy compilation stays the process default; the translator thread compiles its translations
// eagerly (compileEagerly) so that a hart never stops at a first call: docs/decisions.md.)
setFlagsFromString("--experimental-wasm-branch-hinting");
setFlagsFromString("--no-wasm-dynamic-tiering");

/**
 * Compile a module's functions now, and have V8 start optimising them at once in the background
 * (by default it compiles each function lazily, at its first call, on the calling thread, and
 * optimises it after that): for modules that are to be fast by the time they are first called
 * (the interpreter, while the hart workers load; a spare whole-page translation). The flag is
 * process-wide and read when a module is compiled, so it is set for this compile only; another
 * thread's module compiled at the same moment may be compiled eagerly too, which only costs time.
 */
export function compileEagerly(bytes: Uint8Array<ArrayBuffer>): WebAssembly.Module {
  setFlagsFromString("--no-wasm-lazy-compilation");
  try {
    return new WebAssembly.Module(bytes);
  } finally {
    setFlagsFromString("--wasm-lazy-compilation");
  }
}

export const ValType = { I32: 0x7f, I64: 0x7e, F32: 0x7d, F64: 0x7c } as const;
export type ValType = (typeof ValType)[keyof typeof ValType];

/** Block type "empty" (no result). */
export const VOID = 0x40;

/** Opcodes we emit. Names follow the wasm spec's text format. */
export const Op = {
  unreachable: 0x00,
  nop: 0x01,
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0b,
  br: 0x0c,
  br_if: 0x0d,
  br_table: 0x0e,
  return: 0x0f,
  call: 0x10,
  drop: 0x1a,
  select: 0x1b,
  local_get: 0x20,
  local_set: 0x21,
  local_tee: 0x22,
  i32_load: 0x28,
  i64_load: 0x29,
  i32_load8_s: 0x2c,
  i32_load8_u: 0x2d,
  i32_load16_s: 0x2e,
  i32_load16_u: 0x2f,
  i64_load8_s: 0x30,
  i64_load8_u: 0x31,
  i64_load16_s: 0x32,
  i64_load16_u: 0x33,
  i64_load32_s: 0x34,
  i64_load32_u: 0x35,
  i32_store: 0x36,
  i64_store: 0x37,
  i32_store8: 0x3a,
  i32_store16: 0x3b,
  i64_store8: 0x3c,
  i64_store16: 0x3d,
  i64_store32: 0x3e,
  i32_const: 0x41,
  i64_const: 0x42,
  i32_eqz: 0x45,
  i32_eq: 0x46,
  i32_ne: 0x47,
  i32_lt_s: 0x48,
  i32_lt_u: 0x49,
  i32_gt_u: 0x4b,
  i32_le_u: 0x4d,
  i32_ge_s: 0x4e,
  i32_ge_u: 0x4f,
  i64_eqz: 0x50,
  i64_eq: 0x51,
  i64_ne: 0x52,
  i64_lt_s: 0x53,
  i64_lt_u: 0x54,
  i64_gt_s: 0x55,
  i64_gt_u: 0x56,
  i64_le_s: 0x57,
  i64_le_u: 0x58,
  i64_ge_s: 0x59,
  i64_ge_u: 0x5a,
  i32_add: 0x6a,
  i32_sub: 0x6b,
  i32_mul: 0x6c,
  i32_and: 0x71,
  i32_or: 0x72,
  i32_xor: 0x73,
  i32_shl: 0x74,
  i32_shr_s: 0x75,
  i32_shr_u: 0x76,
  i64_add: 0x7c,
  i64_sub: 0x7d,
  i64_mul: 0x7e,
  i64_div_s: 0x7f,
  i64_div_u: 0x80,
  i64_rem_s: 0x81,
  i64_rem_u: 0x82,
  i64_and: 0x83,
  i64_or: 0x84,
  i64_xor: 0x85,
  i64_shl: 0x86,
  i64_shr_s: 0x87,
  i64_shr_u: 0x88,
  i32_wrap_i64: 0xa7,
  i64_extend_i32_s: 0xac,
  i64_extend_i32_u: 0xad,
  i64_extend8_s: 0xc2,
  i64_extend16_s: 0xc3,
  i64_extend32_s: 0xc4,
  // Floating point (the F/D fast paths, vcpu/wasm/wasm-sem.ts).
  f32_eq: 0x5b,
  f32_lt: 0x5d,
  f32_le: 0x5f,
  f64_eq: 0x61,
  f64_ne: 0x62,
  f64_lt: 0x63,
  f64_le: 0x65,
  f64_ge: 0x66,
  f32_min: 0x96,
  f32_max: 0x97,
  f64_abs: 0x99,
  f64_neg: 0x9a,
  f64_sqrt: 0x9f,
  f64_add: 0xa0,
  f64_sub: 0xa1,
  f64_mul: 0xa2,
  f64_div: 0xa3,
  f64_min: 0xa4,
  f64_max: 0xa5,
  i32_trunc_f64_s: 0xaa,
  i64_trunc_f64_s: 0xb0,
  f64_trunc: 0x9d,
  f64_nearest: 0x9e,
  f32_demote_f64: 0xb6,
  f64_convert_i32_s: 0xb7,
  f64_convert_i32_u: 0xb8,
  f64_convert_i64_s: 0xb9,
  f64_promote_f32: 0xbb,
  i32_reinterpret_f32: 0xbc,
  i64_reinterpret_f64: 0xbd,
  f32_reinterpret_i32: 0xbe,
  f64_reinterpret_i64: 0xbf,
} as const;

/** Atomic opcodes (0xFE prefix) other than read-modify-writes (see rmwOpcode). */
export const AtomicOp = {
  fence: 0x03,
  i32_load: 0x10,
  i64_load: 0x11,
  i64_load32_u: 0x16,
  i32_store: 0x17,
  i64_store: 0x18,
  i64_store32: 0x1d,
  /** i32 read-modify-writes, for mutex words (sync/mutex.ts). */
  i32_xchg: 0x41,
  i32_cmpxchg: 0x48,
} as const;
// The threads proposal numbers rmw ops in groups of seven (i32, i64, i32_8u, i32_16u, i64_8u, i64_16u, i64_32u),
// starting at 0x1e for add; and/or/xor/xchg/cmpxchg follow at strides of 7.
const RMW_BASE = { add: 0x1e, sub: 0x25, and: 0x2c, or: 0x33, xor: 0x3a, xchg: 0x41, cmpxchg: 0x48 } as const;
export type RmwKind = keyof typeof RMW_BASE;
/** Opcode of an atomic read-modify-write on a 64-bit value (`wide`) or on 32 bits zero-extended into an i64. */
export function rmwOpcode(kind: RmwKind, wide: boolean): number {
  return RMW_BASE[kind] + (wide ? 1 : 6);
}

/** A growable byte buffer with LEB128 helpers. */
export class ByteWriter {
  private buf = new Uint8Array(256);
  length = 0;

  byte(b: number): this {
    if (this.length === this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.length++] = b;
    return this;
  }

  bytes(bs: ArrayLike<number>): this {
    if (this.length + bs.length > this.buf.length) {
      const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.length + bs.length));
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf.set(bs, this.length);
    this.length += bs.length;
    return this;
  }

  u32(value: number): this {
    let v = value >>> 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
    return this;
  }

  s32(value: number): this {
    let v = value | 0;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        this.byte(b);
        return this;
      }
      this.byte(b | 0x80);
    }
  }

  s64(value: bigint): this {
    // The signed LEB128 of a value depends only on the value: small ones take the int32 path.
    if (value >= -0x8000_0000n && value <= 0x7fff_ffffn) return this.s32(Number(value));
    let v = BigInt.asIntN(64, value);
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) {
        this.byte(b);
        return this;
      }
      this.byte(b | 0x80);
    }
  }

  name(s: string): this {
    const encoded = new TextEncoder().encode(s);
    this.u32(encoded.length);
    return this.bytes(encoded);
  }

  /** Append another writer's contents prefixed by its length (a wasm "vector of bytes"). */
  sized(inner: ByteWriter): this {
    this.u32(inner.length);
    return this.bytes(inner.toBytes());
  }

  toBytes(): Uint8Array<ArrayBuffer> {
    return this.buf.slice(0, this.length);
  }
}

/** Function body builder: locals plus an instruction stream with typed helpers. */
export class FunctionBody {
  readonly code = new ByteWriter();
  private readonly localTypes: ValType[] = [];
  /** Branch hints (code offset of an `if`, whether its then-arm is likely), see ModuleBuilder. */
  readonly branchHints: { at: number; likely: boolean }[] = [];

  constructor(readonly paramCount: number) {}

  /** Declare a new local; returns its index. */
  local(type: ValType): number {
    this.localTypes.push(type);
    return this.paramCount + this.localTypes.length - 1;
  }

  op(opcode: number): this {
    this.code.byte(opcode);
    return this;
  }
  i32(value: number): this {
    this.code.byte(Op.i32_const).s32(value);
    return this;
  }
  i64(value: bigint | number): this {
    this.code.byte(Op.i64_const).s64(BigInt(value));
    return this;
  }
  f64(value: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.code.byte(0x44).bytes(b);
    return this;
  }
  get(local: number): this {
    this.code.byte(Op.local_get).u32(local);
    return this;
  }
  set(local: number): this {
    this.code.byte(Op.local_set).u32(local);
    return this;
  }
  tee(local: number): this {
    this.code.byte(Op.local_tee).u32(local);
    return this;
  }
  /** A load or store with its memarg; alignment hint 0 because guest accesses may be misaligned. */
  mem(opcode: number, offset = 0): this {
    this.code.byte(opcode).u32(0).u32(offset);
    return this;
  }
  /** An aligned memory access (natural alignment hint, log2 of `size`). */
  memAligned(opcode: number, size: number, offset = 0): this {
    this.code.byte(opcode).u32(Math.log2(size)).u32(offset);
    return this;
  }
  atomic(opcode: number, size: number, offset = 0): this {
    this.code.byte(0xfe).u32(opcode);
    if (opcode !== AtomicOp.fence) this.code.u32(Math.log2(size)).u32(offset);
    else this.code.byte(0);
    return this;
  }
  block(type: number = VOID): this {
    this.code.byte(Op.block).byte(type);
    return this;
  }
  loop(type: number = VOID): this {
    this.code.byte(Op.loop).byte(type);
    return this;
  }
  if(type: number = VOID): this {
    this.code.byte(Op.if).byte(type);
    return this;
  }
  /**
   * An `if` whose then-arm is (un)likely: engines that read branch hints lay the unlikely arm out
   * of line and keep registers out of memory on the likely one.
   */
  ifHinted(likely: boolean, type: number = VOID): this {
    this.branchHints.push({ at: this.code.length, likely });
    return this.if(type);
  }
  else(): this {
    this.code.byte(Op.else);
    return this;
  }
  end(): this {
    this.code.byte(Op.end);
    return this;
  }
  br(depth: number): this {
    this.code.byte(Op.br).u32(depth);
    return this;
  }
  brIf(depth: number): this {
    this.code.byte(Op.br_if).u32(depth);
    return this;
  }
  brTable(depths: number[], defaultDepth: number): this {
    this.code.byte(Op.br_table).u32(depths.length);
    for (const d of depths) this.code.u32(d);
    this.code.u32(defaultDepth);
    return this;
  }
  call(func: number): this {
    this.code.byte(Op.call).u32(func);
    return this;
  }
  /** Tail call (return_call_indirect, 0x13) through table 0 to a function of type `typeIndex`: the callee replaces this frame. */
  returnCallIndirect(typeIndex: number): this {
    this.code.byte(0x13).u32(typeIndex).u32(0);
    return this;
  }

  /** The local declarations (run-length grouped). */
  private encodeLocals(): ByteWriter {
    const out = new ByteWriter();
    const groups: [number, ValType][] = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    out.u32(groups.length);
    for (const [count, type] of groups) out.u32(count).byte(type);
    return out;
  }

  /** The encoded body: local declarations then code. */
  encode(): ByteWriter {
    const out = this.encodeLocals();
    out.bytes(this.code.toBytes());
    out.byte(Op.end);
    return out;
  }

  /** Branch hints with offsets from the start of the body (its local declarations included). */
  hintsInBody(): { at: number; likely: boolean }[] {
    const localsLength = this.encodeLocals().length;
    return this.branchHints.map(({ at, likely }) => ({ at: localsLength + at, likely }));
  }
}

export interface FuncType {
  params: ValType[];
  results: ValType[];
}

interface ImportedFunc {
  module: string;
  name: string;
  type: number;
}

/** Module builder: one imported shared memory, imported functions, defined functions, exports. */
export class ModuleBuilder {
  private readonly types: FuncType[] = [];
  private readonly importedFuncs: ImportedFunc[] = [];
  private readonly funcs: { type: number; body: FunctionBody }[] = [];
  private readonly exports: { name: string; func: number }[] = [];
  private memoryImport: { module: string; name: string; pages: number } | undefined;
  private tableImport: { module: string; name: string; size: number } | undefined;

  /** The index of a function type (declared if new): for call_indirect. */
  typeIndex(type: FuncType): number {
    const key = JSON.stringify(type);
    const found = this.types.findIndex((t) => JSON.stringify(t) === key);
    if (found >= 0) return found;
    this.types.push(type);
    return this.types.length - 1;
  }

  importSharedMemory(module: string, name: string, pages: number): void {
    this.memoryImport = { module, name, pages };
  }

  /** Import table 0: a funcref table of exactly `size` entries. */
  importTable(module: string, name: string, size: number): void {
    this.tableImport = { module, name, size };
  }

  /** Imports must all be declared before the first defined function (indices depend on it). */
  importFunction(module: string, name: string, type: FuncType): number {
    if (this.funcs.length > 0) throw new Error("declare imports before defining functions");
    this.importedFuncs.push({ module, name, type: this.typeIndex(type) });
    return this.importedFuncs.length - 1;
  }

  defineFunction(type: FuncType, body: FunctionBody, exportName?: string): number {
    this.funcs.push({ type: this.typeIndex(type), body });
    const index = this.importedFuncs.length + this.funcs.length - 1;
    if (exportName) this.exports.push({ name: exportName, func: index });
    return index;
  }

  encode(): Uint8Array<ArrayBuffer> {
    const out = new ByteWriter().bytes([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    const section = (id: number, content: ByteWriter) => out.byte(id).sized(content);

    const types = new ByteWriter().u32(this.types.length);
    for (const t of this.types) {
      types.byte(0x60).u32(t.params.length).bytes(t.params).u32(t.results.length).bytes(t.results);
    }
    section(1, types);

    const imports = new ByteWriter().u32(this.importedFuncs.length + (this.memoryImport ? 1 : 0) + (this.tableImport ? 1 : 0));
    if (this.memoryImport) {
      const m = this.memoryImport;
      // Limits flag 0x03 = shared memory with a maximum.
      imports.name(m.module).name(m.name).byte(0x02).byte(0x03).u32(m.pages).u32(m.pages);
    }
    if (this.tableImport) {
      const t = this.tableImport;
      // Kind 0x01 = table, 0x70 = funcref, limits flag 0x01 = with a maximum.
      imports.name(t.module).name(t.name).byte(0x01).byte(0x70).byte(0x01).u32(t.size).u32(t.size);
    }
    for (const f of this.importedFuncs) imports.name(f.module).name(f.name).byte(0x00).u32(f.type);
    section(2, imports);

    const funcs = new ByteWriter().u32(this.funcs.length);
    for (const f of this.funcs) funcs.u32(f.type);
    section(3, funcs);

    const exports = new ByteWriter().u32(this.exports.length);
    for (const e of this.exports) exports.name(e.name).byte(0x00).u32(e.func);
    section(7, exports);

    // Branch hints (the branch-hinting proposal's custom section, before the code section).
    const hinted = this.funcs.map((f, i) => ({ index: this.importedFuncs.length + i, hints: f.body.hintsInBody() })).filter((f) => f.hints.length > 0);
    if (hinted.length > 0) {
      const hints = new ByteWriter().name("metadata.code.branch_hint").u32(hinted.length);
      for (const { index, hints: list } of hinted) {
        hints.u32(index).u32(list.length);
        for (const { at, likely } of list) hints.u32(at).u32(1).byte(likely ? 1 : 0);
      }
      section(0, hints);
    }

    const code = new ByteWriter().u32(this.funcs.length);
    for (const f of this.funcs) code.sized(f.body.encode());
    section(10, code);
    return out.toBytes();
  }
}
