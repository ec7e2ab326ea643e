/**
 * How to make a guest's 64-bit AMO atomic across worker threads (issue: SMP atomics). Three ways
 * to do 10 million amoadd.d on shared memory, single-threaded so only the cost per operation shows:
 *  1. JS Atomics.add on a BigInt64Array;
 *  2. a JS spinlock (Atomics.compareExchange on an Int32Array) around a plain 64-bit add as two
 *     32-bit halves;
 *  3. WebAssembly i64.atomic.rmw.add, what the engine emits (vcpu/wasm/wasm-sem.ts).
 *
 *   node --import tsx bench/atomics.bench.ts
 */
import bench from "nanobench";
import { FunctionBody, ModuleBuilder, Op, ValType, rmwOpcode } from "../vcpu/wasm/encoder.ts";

const COUNT = 10_000_000;
const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });

bench(`JS Atomics.add on BigInt64Array × ${COUNT}`, (b) => {
  const quads = new BigInt64Array(memory.buffer);
  b.start();
  for (let i = 0; i < COUNT; i++) Atomics.add(quads, 1, 3n);
  b.end();
  if (quads[1] !== BigInt(3 * COUNT)) throw new Error("wrong sum");
});

bench(`JS spinlock + two 32-bit halves × ${COUNT}`, (b) => {
  const words = new Int32Array(memory.buffer);
  const lock = 16, lo = 18, hi = 19;
  b.start();
  for (let i = 0; i < COUNT; i++) {
    while (Atomics.compareExchange(words, lock, 0, 1) !== 0);
    const sum = (words[lo]! >>> 0) + 3;
    words[lo] = sum | 0;
    if (sum > 0xffffffff) words[hi] = (words[hi]! + 1) | 0;
    Atomics.store(words, lock, 0);
  }
  b.end();
  if (words[lo]! >>> 0 !== 3 * COUNT) throw new Error("wrong sum");
});

bench(`wasm i64.atomic.rmw.add × ${COUNT}`, (b) => {
  const m = new ModuleBuilder();
  m.importSharedMemory("env", "memory", 1);
  const f = new FunctionBody(1);
  const i = f.local(ValType.I32);
  f.loop();
  f.i32(64).i64(3).atomic(rmwOpcode("add", true), 8).op(Op.drop);
  f.get(i).i32(1).op(Op.i32_add).tee(i).get(0).op(Op.i32_lt_u).brIf(0);
  f.end();
  m.defineFunction({ params: [ValType.I32], results: [] }, f, "run");
  const instance = new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { env: { memory } });
  const run = instance.exports.run as (n: number) => void;
  b.start();
  run(COUNT);
  b.end();
  if (new BigInt64Array(memory.buffer)[8] !== BigInt(3 * COUNT)) throw new Error("wrong sum");
});
