/**
 * The WebAssembly encoder (vcpu/wasm/encoder.ts): the branch-hint section points at the `if`
 * instructions it hints, with offsets counted from the function body's start (its local
 * declarations included), and the module validates and runs with it.
 */
import test from "ava";
import { FunctionBody, ModuleBuilder, Op, ValType } from "../vcpu/wasm/encoder.ts";

/** The custom sections of a module: name → content. */
function customSections(bytes: Uint8Array): Map<string, Uint8Array> {
  const sections = new Map<string, Uint8Array>();
  let at = 8;
  const leb = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++]!;
      value |= (byte & 0x7f) << shift;
      shift += 7;
      if (!(byte & 0x80)) return value;
    }
  };
  while (at < bytes.length) {
    const id = bytes[at++]!;
    const size = leb();
    const end = at + size;
    if (id === 0) {
      const nameLength = leb();
      const name = new TextDecoder().decode(bytes.subarray(at, at + nameLength));
      sections.set(name, bytes.subarray(at + nameLength, end));
    }
    at = end;
  }
  return sections;
}

/** A function (i32) → i32 with a hinted `if` on its parameter; returns the module and the body. */
function hintedModule(likely: boolean): { bytes: Uint8Array<ArrayBuffer>; body: FunctionBody } {
  const m = new ModuleBuilder();
  const f = new FunctionBody(1);
  const scratch = f.local(ValType.I64); // local declarations shift the hint's offset
  f.local(ValType.I32);
  f.i64(5).set(scratch);
  f.get(0).ifHinted(likely, ValType.I32).i32(10).else().i32(20).end();
  m.defineFunction({ params: [ValType.I32], results: [ValType.I32] }, f, "pick");
  return { bytes: m.encode(), body: f };
}

test("a hinted if: the branch-hint section names the function and the offset of its `if` in the body", (t) => {
  for (const likely of [true, false]) {
    const { bytes, body } = hintedModule(likely);
    const section = customSections(bytes).get("metadata.code.branch_hint");
    t.truthy(section, "the section is there");
    // One function (index 0: no imports), one hint: offset, size 1, value.
    const [functions, index, hints, offset, size, value] = [...section!];
    t.deepEqual([functions, index, hints, size, value], [1, 0, 1, 1, likely ? 1 : 0]);
    const encoded = body.encode().toBytes();
    t.is(encoded[offset!], Op.if, "the offset lands on the if instruction");
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    const pick = instance.exports.pick as (x: number) => number;
    t.is(pick(1), 10);
    t.is(pick(0), 20);
  }
});

test("a module without hints has no branch-hint section", (t) => {
  const m = new ModuleBuilder();
  const f = new FunctionBody(1);
  f.get(0).if(ValType.I32).i32(1).else().i32(2).end();
  m.defineFunction({ params: [ValType.I32], results: [ValType.I32] }, f, "pick");
  t.false(customSections(m.encode()).has("metadata.code.branch_hint"));
});
