/**
 * The translator thread of one hart (vcpu/jit.ts): translates a page and compiles the module off
 * the hart's thread, so the hart keeps interpreting meanwhile and never waits for a compile. The
 * page's bytes are read here, after the hart has marked the frame in the code map, so a store
 * that changes them afterwards invalidates the result (the hart checks the generation on arrival).
 */
import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { PAGE_SIZE } from "../shared-mem/layout.ts";
import { translatePage, type TranslationOptions } from "./translator.ts";
import type { EngineMemory } from "./wasm/wasm-sem.ts";
import { compileEagerly } from "./wasm/encoder.ts";

export interface TranslatorWorkerData {
  /** Marks the workerData of this thread (the module is also imported by hart threads). */
  kmemvisorTranslator: true;
  memory: WebAssembly.Memory;
  engineMemory: EngineMemory;
}

export interface TranslationRequest {
  frame: number;
  vpnLow: number;
  vpnHigh: number;
  generation: number;
  /** Offsets that must be entries of the translation. */
  wanted: number[];
  /** Offsets to translate from too, which a loop may absorb (translator.ts discover). */
  optional?: number[];
  recompiles: number;
  /**
   * Where the requesting hart's interpreter counts the frame's heat (an i32 index into guest
   * memory's buffer) and the value that makes it come back for the translation: stored once the
   * reply is posted (vcpu/jit.ts AWAITING_HEAT), unless the heat is below `notBelow` (the frame is
   * no longer to be translated at all).
   */
  readyHeat?: { index: number; value: number; notBelow: number };
  /**
   * A spare translation of all the page's code reachable from the wanted entries, made in the
   * background (vcpu/jit.ts), and compiled at once, optimising compiler included, so that it is
   * ready when the guest goes beyond the first translation.
   */
  whole?: boolean;
  /** Translate all the page's code reachable from the entries (as `whole`), but for the hart to install now. */
  complete?: boolean;
}

export interface TranslationReply extends TranslationRequest {
  /** Undefined when nothing at the wanted offsets could be translated. */
  module?: WebAssembly.Module;
  entries: number[];
  instructions: number;
  /** The frame's chunks the translation's instructions lie in (shared-mem/code-pages.ts). */
  codeChunks: [number, number];
  /** Whether reachable code was left out (translator.ts DiscoveredCode.truncated). */
  truncated: boolean;
  bytes: Uint8Array;
  milliseconds: number;
}

/**
 * Translate and compile one request (also used directly when compiling synchronously). `eager`:
 * compile the function now (V8 otherwise compiles it at its first call, on the calling thread);
 * always for a spare whole-page translation, which is to be optimised by the time it is taken.
 */
export function translateRequest(
  memory: WebAssembly.Memory,
  engineMemory: EngineMemory,
  request: TranslationRequest,
  options: TranslationOptions = {},
  eager = false,
): TranslationReply {
  const started = performance.now();
  const bytes = new Uint8Array(memory.buffer).slice(request.frame * PAGE_SIZE, (request.frame + 1) * PAGE_SIZE);
  const virtualPage = ((BigInt(request.vpnHigh) << 32n) | BigInt(request.vpnLow)) << 12n;
  const whole = request.whole === true;
  const translation = translatePage(engineMemory, memory.buffer.byteLength / 65536, bytes, virtualPage, request.wanted, {
    chain: { frame: request.frame, generation: request.generation },
    ...options,
    ...(whole || request.complete ? { maxInstructions: PAGE_SIZE / 2 } : {}), // (as many as a page can hold)
    ...(request.optional ? { optional: request.optional } : {}),
  });
  const module = translation ? (whole || eager ? compileEagerly(translation.bytes) : new WebAssembly.Module(translation.bytes)) : undefined;
  return {
    ...request,
    module,
    entries: translation?.entries ?? [],
    instructions: translation?.instructions ?? 0,
    codeChunks: translation?.codeChunks ?? [0, 0],
    truncated: translation?.truncated ?? false,
    bytes,
    milliseconds: performance.now() - started,
  };
}

/** A branch instruction (B-type) with this offset, rs1, rs2 and funct3. */
function branch(offset: number, rs1: number, rs2: number, funct3: number): number {
  return (
    (((offset >> 12) & 1) << 31) | (((offset >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) |
    (((offset >> 1) & 0xf) << 8) | (((offset >> 11) & 1) << 7) | 0x63
  ) >>> 0;
}

/** A made-up page of code for warmUpStep: a loop of common instructions, repeated. */
function warmUpPage(): Uint8Array {
  const loop = [
    0x00150513, // addi a0, a0, 1
    0x00b50633, // add a2, a0, a1
    0x00053583, // ld a1, 0(a0)
    0x00b53423, // sd a1, 8(a0)
    0x02b50633, // mul a2, a0, a1
    0x00b5262f, // amoadd.w a2, a1, (a0)
    0x34002573, // csrr a0, mscratch
  ];
  const words: number[] = [];
  while (words.length < WARM_UP_WORDS) {
    words.push(...loop, branch(-4 * loop.length, 10, 11, 1)); // bne a0, a1, back to the loop's start
  }
  words.push(0x00008067); // ret
  const page = new Uint8Array(PAGE_SIZE);
  const view = new DataView(page.buffer);
  words.forEach((word, i) => view.setUint32(i * 4, word, true));
  return page;
}

/** Translations of the made-up page while the VM boots (warmUpStep). */
const WARM_UP_ROUNDS = 16;
/** Instructions in it: few, so that a request waits for at most one short round. */
const WARM_UP_WORDS = 64;

/**
 * Translate the made-up page once (and only translate: nothing is compiled), so that the
 * translator's own JavaScript is optimised by the time the guest's first page is hot (cold, it is
 * ~10× slower). One round per turn of the event loop, and none once a real request has come: the
 * rounds took 70–120 ms together on a loaded machine, and a guest whose first page got hot
 * meanwhile waited for all of them.
 */
function warmUpStep(engineMemory: EngineMemory, page: Uint8Array, round: number, busy: () => boolean): void {
  if (round >= WARM_UP_ROUNDS || busy()) return;
  translatePage(engineMemory, 1, page, 0x8000_0000n, [0]);
  setImmediate(() => warmUpStep(engineMemory, page, round + 1, busy));
}

/** `request` with `offsets` added to its optional leaders (those it does not want already). */
export function withOptional(request: TranslationRequest, offsets: readonly number[]): TranslationRequest {
  const optional = new Set(request.optional ?? []);
  for (const offset of offsets) if (!request.wanted.includes(offset)) optional.add(offset);
  return { ...request, optional: [...optional] };
}

/**
 * The thread serves every hart of the VM, each through its own port (sent in a { port } message).
 * A page one hart had translated is handed to the next hart that asks for it, the same compiled
 * module, as long as its code has not changed since (same generation) and it has the entries.
 */
const data = workerData as Partial<TranslatorWorkerData> | undefined;
if (data?.kmemvisorTranslator === true && data.memory && data.engineMemory && parentPort) {
  const { memory, engineMemory } = data;
  const done = new Map<string, TranslationReply>();
  const serve = (request: TranslationRequest): TranslationReply => {
    const key = `${request.frame}:${request.vpnLow}:${request.vpnHigh}`;
    const known = done.get(key);
    const current = known && known.generation === request.generation ? known : undefined;
    const covers = (reply: TranslationReply) => request.wanted.every((offset) => reply.entries.includes(offset)) && (!request.whole || reply.whole);
    if (current && covers(current)) {
      return { ...current, recompiles: request.recompiles, whole: request.whole, milliseconds: 0 };
    }
    // Another hart's translation of the same code lacks an entry this one wants: translate from
    // its entries too (as optional leaders, as a hart's own recompile does), so that the harts
    // converge on one translation — one module, one optimising compile, shared — instead of each
    // replacing the other's here and compiling its own variant, which on a 2-core host competes
    // with the harts themselves (parallel-sum on 2 harts: see docs/decisions.md).
    const merged = current && !request.whole ? withOptional(request, current.entries) : request;
    // Compiled here, not lazily at the hart's first call: that compile (~30 ms for 500–900
    // instructions) stopped the hart, which here interprets on meanwhile (docs/decisions.md).
    const reply = translateRequest(memory, engineMemory, merged, {}, true);
    done.set(key, reply);
    return reply;
  };
  let requested = false;
  setImmediate(() => warmUpStep(engineMemory, warmUpPage(), 0, () => requested));
  const heat = new Int32Array(memory.buffer);
  parentPort.on("message", ({ port }: { port: MessagePort }) => {
    port.on("message", (request: TranslationRequest) => {
      requested = true;
      port.postMessage(serve(request));
      const ready = request.readyHeat;
      if (ready && Atomics.load(heat, ready.index) >= ready.notBelow) Atomics.store(heat, ready.index, ready.value);
    });
  });
}
