/**
 * The host side of the translator, one per hart: finds the translation of the page the hart is
 * about to run, compiles hot pages (vcpu/translator.ts), and keeps translations honest when code
 * changes.
 *
 * Heat: the interpreter counts its jumps per host frame in shared memory (layout.heatOffset) and
 * returns when a frame reaches the threshold; the next lookup compiles it. Pages are keyed by host
 * frame and virtual page (pc constants are baked in), and entered only through the hart's fetch
 * TLB, so a translation is used only where the guest may execute that frame.
 *
 * Compilation: the VM's translator thread (TranslatorThread) translates and compiles while the hart
 * interprets on, so the hart never waits; tests and lockstep translate on the hart's own thread
 * (JitOptions.synchronous). V8 runs a new module with its baseline compiler (Liftoff) and
 * optimises hot functions with TurboFan on background threads, swapping the code in when ready.
 *
 * Changed code: the shared code map (shared-mem/code-pages.ts) keeps frames with translations out
 * of every store TLB, so any store to them (from any hart, or DMA) takes a slow path that bumps
 * the frame's generation; a translation whose generation is stale is dropped at the next lookup.
 * FENCE.I compares every translated page with memory, which also catches a store that another
 * hart made through a store-TLB entry it had not yet dropped when the page was compiled.
 */
import { HartSlot, PAGE_SIZE, WASM_PAGE, type MemoryLayout } from "../shared-mem/layout.ts";
import { FunctionBody, ModuleBuilder, Op } from "./wasm/encoder.ts";
import { RUN_TYPE, TRANSLATION_TABLE } from "./translator.ts";
import { Exit } from "./exits.ts";
import { cachedFetchPage } from "./tlb.ts";
import { CODE_CHUNK_SHIFT, hasChunk, type CodeMap } from "../shared-mem/code-pages.ts";
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { translateRequest, type TranslationReply, type TranslationRequest, type TranslatorWorkerData } from "./translator-worker.ts";
import type { EngineMemory } from "./wasm/wasm-sem.ts";
import { requestTlbShootdown } from "../sync/hart-signals.ts";

/** Interpreted jumps within a frame before it is compiled. */
export const DEFAULT_JIT_THRESHOLD = 2000;
/** After a hot frame could not be entered, the interpreter's jumps there before it asks again. */
const RETRY_JUMPS = 16;
/** ... and while its translation is being made, when the hart has an older one of the frame to go back to. */
const PENDING_JUMPS = 512;
/**
 * The heat of a frame whose first translation is being made: the interpreter runs on there
 * without coming back (each return costs a host round of several microseconds, and at every 512
 * jumps these were cpubound's first ~40 ms at 5–45 MIPS) until the translator thread, having
 * posted the translation, sets the heat to the threshold (TranslationRequest.readyHeat).
 */
const AWAITING_HEAT = -(1 << 29);
/** HartSlot.PRIV's values in S- and M-mode. */
const PRIV_S = 1;
const PRIV_M = 3;
/** The heat of a frame left to the interpreter for good (below AWAITING_HEAT: no signal raises it). */
const NEVER_HEAT = -(1 << 30);
/**
 * How long a page runs its first translation before its whole-page translation is asked for
 * (requestWhole). Asked for at once, its compile competed with the first translation's optimising
 * compile on a 2-core machine, and the hot code ran its unoptimised code longer. cpubound's long
 * build, 7 interleaved runs, in-VM medians: none 872 ms, at once 766, after 50 ms 760, after
 * 100 ms 743; cpubound 228, 226, 200, 209 (9 runs).
 */
const WHOLE_AFTER_MS = 100;
/** Times the guest enters a translated page at an offset it lacks before the page's first recompile (doubling for each next one). */
const HOT_ENTRY = 4;
/** After this many recompilations (for newly found entries) a page keeps what it has. */
const MAX_RECOMPILES = 16;
/** A page whose code keeps being overwritten is left to the interpreter. */
const MAX_INVALIDATIONS = 8;

export const ENGINES = ["interp", "jit"] as const;
export type EngineName = (typeof ENGINES)[number];

/**
 * The engine a VM gets when none is named: KMEMVISOR_ENGINE if set (so that a whole test suite
 * can be run on either engine), else the translator. (It became the default once the whole suite
 * passed on it and the differential testers found no divergence; it runs the benchmark guests
 * 4–10× faster than the interpreter.)
 */
export function defaultEngineName(): EngineName {
  const chosen = process.env.KMEMVISOR_ENGINE;
  if (chosen === undefined || chosen === "") return "jit";
  if (!(ENGINES as readonly string[]).includes(chosen)) {
    throw new RangeError(`KMEMVISOR_ENGINE must be one of ${ENGINES.join(", ")}, got "${chosen}"`);
  }
  return chosen as EngineName;
}

export interface JitOptions {
  /** Jumps within a frame before it is compiled (0: compile every page on first sight). */
  threshold: number;
  /** Lockstep (difftest): every instruction is an entry and budget 1 runs exactly one. */
  lockstep?: boolean;
  /**
   * Translate on the hart's own thread, at once (tests that need a translation to exist right
   * after the page got hot; lockstep). Otherwise a translator thread does it while the hart
   * interprets on.
   */
  synchronous?: boolean;
  /**
   * Testing the translator: every translation also gets entries at `percent`% of the page's
   * halfword offsets, chosen by a generator seeded with `seed` and the frame (offsets that hold no
   * instruction are ignored), as if the guest had entered there. So tests can vary the shape of
   * the code (entries inside loops, on back edges) as the entries a long run learns do.
   */
  extraEntries?: { seed: number; percent: number };
  /**
   * Milliseconds a page runs its first translation before its whole-page one is asked for (default
   * WHOLE_AFTER_MS, and only when the host has a core the VM's harts leave idle: see
   * Jit.speculates).
   */
  wholeAfterMs?: number;
  /** Host cores the VM may use (default: os.availableParallelism(); tests vary it). */
  cores?: number;
  /**
   * Leave code the hart runs in S-mode to the interpreter (the CLI sets it unless told
   * `--jit-supervisor`). On every kernel we have, translating supervisor code costs more than it
   * saves — compiles, module instantiation, and leaving translated code at every trap, sret and CSR
   * access (Linux's boot: ~50 s against ~1.5 s interpreted; docs/decisions.md) — while M-mode
   * programs and user code gain several times. Until the translator wins on kernels, the default
   * engine keeps it off them.
   */
  interpretSupervisor?: boolean;
  /**
   * Leave code the hart runs in M-mode to the interpreter too (the CLI sets it when firmware is
   * booted with --bios: OpenSBI's translated console and trap paths cost a Linux boot ~1 s more than
   * interpreting them; docs/decisions.md).
   */
  interpretMachine?: boolean;
}

/** The offsets JitOptions.extraEntries asks for in one frame (xorshift32, deterministic). */
export function extraEntriesFor(frame: number, seed: number, percent: number): number[] {
  let x = ((seed * 0x9e3779b1) ^ (frame * 0x85ebca6b) ^ 0x2545f491) >>> 0 || 1;
  const offsets: number[] = [];
  for (let offset = 0; offset < PAGE_SIZE; offset += 2) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    if (x % 100 < percent) offsets.push(offset);
  }
  return offsets;
}

/**
 * Whether a VM with `harts` harts makes whole-page translations ahead of need (Jit.speculates): when
 * the host has a core its harts leave idle, or when asked to (JitOptions.wholeAfterMs given).
 */
export function speculatesWholePages(harts: number, options: JitOptions, cores = options.cores ?? availableParallelism()): boolean {
  return options.wholeAfterMs !== undefined || harts < cores;
}

/**
 * The function a hart's table of translations holds for frames without one: called in tail
 * position by a translation leaving its page (its registers and pc written back), it records the
 * instructions retired so far and returns to the host, which carries on at pc.
 */
function chainStub(memory: WebAssembly.Memory): TranslatedRun {
  const m = new ModuleBuilder();
  m.importSharedMemory("env", "memory", memory.buffer.byteLength / WASM_PAGE);
  const f = new FunctionBody(3);
  f.get(0).get(2).op(Op.i64_extend_i32_u).mem(Op.i64_store, HartSlot.RETIRED);
  f.i32(Exit.Budget);
  m.defineFunction(RUN_TYPE, f, "run");
  const instance = new WebAssembly.Instance(new WebAssembly.Module(m.encode()), { env: { memory } });
  return (instance.exports as { run: TranslatedRun }).run;
}

export interface JitEnvironment {
  memory: WebAssembly.Memory;
  layout: MemoryLayout;
  engineMemory: EngineMemory;
  /** The imports the hart gives its interpreter: translations call the same slow paths. */
  imports: WebAssembly.Imports;
  hartBase: number;
  codeMap: CodeMap;
  /** Drop this hart's own TLB (other harts get a shootdown request). */
  flushOwnTlb(): void;
  /**
   * This hart's port to the VM's translator thread (TranslatorThread.connect()), asked for when
   * the first page gets hot; none: translate here.
   */
  connectTranslator?: () => MessagePort | undefined;
}

/**
 * The VM's translator thread (vcpu/translator-worker.ts), started at the first connect(): a VM
 * whose harts run in worker threads connects them when it starts running, so the thread loads
 * (and warms up) while they start; a VM run inline connects when its first page gets hot, so a
 * short run that never gets there never pays for the thread. Each hart talks to it through its
 * own port; the thread does not keep the process alive.
 */
export class TranslatorThread {
  private worker: Worker | undefined;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly engineMemory: EngineMemory,
  ) {}

  private started(): Worker {
    if (!this.worker) {
      const workerData: TranslatorWorkerData = { kmemvisorTranslator: true, memory: this.memory, engineMemory: this.engineMemory };
      this.worker = new Worker(new URL("./translator-worker-entry.mjs", import.meta.url), { workerData });
      this.worker.unref();
      // Should the thread die, harts see no replies and interpret on: slower, never wrong.
      this.worker.on("error", () => {});
    }
    return this.worker;
  }

  /** A port for one hart (transferable to the hart's worker thread). */
  connect(): MessagePort {
    const { port1, port2 } = new MessageChannel();
    this.started().postMessage({ port: port2 }, [port2]);
    port1.unref();
    return port1;
  }
}

/** A translation's entry: (hart base, budget, instructions retired before it in this engine call: 0) -> Exit. */
export type TranslatedRun = (hart: number, budget: number, retired: number) => number;

interface TranslatedPage {
  frame: number;
  vpnLow: number;
  vpnHigh: number;
  generation: number;
  run: TranslatedRun;
  entries: Set<number>;
  /** Offsets the guest entered at that the translation lacks, and how often (for the next recompile). */
  misses: Map<number, number>;
  recompiles: number;
  /** The page's bytes when translated (FENCE.I compares its code chunks with memory). */
  bytes: Uint8Array;
  /** The page's 64-byte chunks the translation's instructions lie in. */
  codeChunks: [number, number];
  /**
   * performance.now() from which its whole-page translation is to be asked for (requestWhole), or
   * Infinity: asked for already, or not wanted (nothing was left out, or not the first translation).
   */
  wholeAfter: number;
}

export interface JitStats {
  /** Engine calls that ran translated code (each entered a page and ran until it left it). */
  runs: number;
  pagesCompiled: number;
  recompiles: number;
  instructionsTranslated: number;
  invalidations: number;
  /** Translations thrown away on arrival: their page's code changed while they were being made. */
  staleOnArrival: number;
  /** Whole-page translations (made in the background) taken when the guest went beyond the first. */
  wholePagesTaken: number;
  compileMilliseconds: number;
}

export class Jit {
  private readonly u32: Uint32Array;
  private readonly words: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly pages = new Map<number, TranslatedPage>();
  private readonly invalidationsOf = new Map<number, number>();
  private readonly pending = new Map<number, TranslationRequest>();
  /** Frames whose whole-page translation the translator thread is making (requestWhole). */
  private readonly pendingWhole = new Set<number>();
  /** Whole-page translations received, kept until the guest needs an entry only they have. */
  private readonly spare = new Map<number, TranslationReply>();
  private port: MessagePort | undefined;
  private askedForPort = false;
  private synchronous: boolean;
  /**
   * Whether to make whole-page translations ahead of need (requestWhole). They are speculative —
   * taken only if the guest goes beyond the first translation — and their optimising compile is
   * the largest (~0.2 s of a core for a full page): worth it on a core the harts leave idle, a
   * loss when every core runs a hart (parallel-sum, 2 harts on 2 cores, lost a third of its
   * speed-up to one it never took: docs/decisions.md). Then pages learn entries by recompiles.
   */
  private readonly speculates: boolean;
  readonly stats: JitStats = { runs: 0, pagesCompiled: 0, recompiles: 0, instructionsTranslated: 0, invalidations: 0, staleOnArrival: 0, wholePagesTaken: 0, compileMilliseconds: 0 };

  /**
   * This hart's translations by host frame, for translations to go on in without returning to the
   * host (translator.ts chaining); frames with none hold `stub`, which returns.
   */
  private readonly table: WebAssembly.Table;
  private readonly stub: TranslatedRun;
  /** The imports of translations: the hart's slow paths and the table. */
  private readonly imports: WebAssembly.Imports;

  constructor(private readonly env: JitEnvironment, private readonly options: JitOptions) {
    const frames = env.codeMap.frames;
    this.stub = chainStub(env.memory);
    this.table = new WebAssembly.Table({ element: "anyfunc", initial: frames, maximum: frames }, this.stub);
    this.imports = { ...env.imports, [TRANSLATION_TABLE[0]]: { [TRANSLATION_TABLE[1]]: this.table } };
    this.u32 = new Uint32Array(env.memory.buffer);
    this.words = new Int32Array(env.memory.buffer);
    this.bytes = new Uint8Array(env.memory.buffer);
    this.synchronous = options.synchronous === true || options.lockstep === true;
    this.speculates = speculatesWholePages(env.layout.harts, options);
  }

  /**
   * The translation to run at the hart's pc (after the host chose the TLB sets), compiling the
   * page when it is hot; undefined when the interpreter must run.
   */
  lookup(): TranslatedRun | undefined {
    const run = this.translationAtPc();
    if (!run && this.lastFrame >= 0) {
      // The interpreter came back because the frame is hot, but runs on: let it count again
      // (from a little below the threshold: soon, as a missing entry may be learnt; from further
      // below while the translator thread works; from far below when nothing there translates).
      const codeMap = this.env.codeMap;
      const heat = codeMap.heatOf(this.lastFrame);
      if (heat >= this.options.threshold) {
        codeMap.setHeat(this.lastFrame, this.pending.has(this.lastFrame) ? this.pendingHeat(this.lastFrame) : this.options.threshold - RETRY_JUMPS);
      }
    }
    return run;
  }

  /** The heat a frame gets while its translation is being made. */
  private pendingHeat(frame: number): number {
    return this.pages.has(frame) ? this.options.threshold - PENDING_JUMPS : AWAITING_HEAT;
  }

  /** Frame of the pc at the last lookup, or -1 when it had none. */
  private lastFrame = -1;

  private translationAtPc(): TranslatedRun | undefined {
    this.lastFrame = -1;
    const base = this.env.hartBase;
    const u32 = this.u32;
    const pcLow = u32[(base + HartSlot.PC) >>> 2]!;
    const pcHigh = u32[(base + HartSlot.PC + 4) >>> 2]!;
    const vpnLow = ((pcLow >>> 12) | (pcHigh << 20)) >>> 0;
    const vpnHigh = pcHigh >>> 12;
    const hostPage = cachedFetchPage(u32, base, pcLow, pcHigh);
    if (hostPage < 0) return undefined; // let the interpreter fill the TLB
    const frame = hostPage / PAGE_SIZE;
    const codeMap = this.env.codeMap;
    if (frame >= codeMap.frames) return undefined;
    this.lastFrame = frame;
    if (this.pending.size > 0 || this.pendingWhole.size > 0) this.receive();
    let page = this.pages.get(frame);
    if (page && (page.vpnLow !== vpnLow || page.vpnHigh !== vpnHigh || page.generation !== codeMap.generation(frame))) {
      if (page.generation !== codeMap.generation(frame)) this.noteInvalidated(frame);
      this.dropPage(frame);
      page = undefined;
    }
    const offset = pcLow & 0xfff;
    if (!page) {
      if (codeMap.heatOf(frame) < this.options.threshold) return undefined;
      const priv = u32[(base + HartSlot.PRIV) >>> 2];
      if ((this.options.interpretSupervisor && priv === PRIV_S) || (this.options.interpretMachine && priv === PRIV_M)) {
        // Not translated (JitOptions.interpretSupervisor, interpretMachine): the interpreter keeps
        // this frame and stops coming back about it.
        codeMap.setHeat(frame, AWAITING_HEAT);
        return undefined;
      }
      if (this.pending.has(frame)) return undefined;
      page = this.request(frame, vpnLow, vpnHigh, [offset], 0);
      if (!page) return undefined;
    }
    if (!page.entries.has(offset)) {
      page = this.enteredAt(page, offset);
      if (!page) return undefined;
    }
    if (page.wholeAfter !== Infinity && performance.now() >= page.wholeAfter) this.requestWhole(page);
    this.stats.runs++;
    return page.run;
  }

  /** FENCE.I: drop every translation whose page no longer holds the bytes it was made from. */
  fenceI(): void {
    for (const page of [...this.pages.values()]) {
      if (page.generation === this.env.codeMap.generation(page.frame) && this.stillHolds(page.frame, page.bytes, page.codeChunks)) continue;
      this.env.codeMap.invalidate(page.frame);
      this.noteInvalidated(page.frame);
      this.dropPage(page.frame);
    }
  }

  /** Whether the frame's code chunks still hold the bytes a translation was made from. */
  private stillHolds(frame: number, bytes: Uint8Array, codeChunks: readonly [number, number]): boolean {
    for (let chunk = 0; chunk < PAGE_SIZE >> CODE_CHUNK_SHIFT; chunk++) {
      if (!hasChunk(codeChunks, chunk)) continue;
      const from = chunk << CODE_CHUNK_SHIFT;
      const to = from + (1 << CODE_CHUNK_SHIFT);
      if (Buffer.compare(this.bytes.subarray(frame * PAGE_SIZE + from, frame * PAGE_SIZE + to), bytes.subarray(from, to)) !== 0) return false;
    }
    return true;
  }

  /** Forget the frame's translation: translations chaining there reach the stub (back to the host). */
  private dropPage(frame: number): void {
    this.pages.delete(frame);
    this.table.set(frame, this.stub);
  }

  /** Number of pages this hart holds translations for. */
  get translatedPages(): number {
    return this.pages.size;
  }

  private noteInvalidated(frame: number): void {
    this.stats.invalidations++;
    const count = (this.invalidationsOf.get(frame) ?? 0) + 1;
    this.invalidationsOf.set(frame, count);
    // Code that rewrites itself over and over is cheaper to interpret than to recompile.
    if (count >= MAX_INVALIDATIONS) this.env.codeMap.setHeat(frame, NEVER_HEAT);
  }

  /** The guest entered a translated page at an offset it has no entry for. */
  private enteredAt(page: TranslatedPage, offset: number): TranslatedPage | undefined {
    const spare = this.spare.get(page.frame);
    if (spare && spare.vpnLow === page.vpnLow && spare.vpnHigh === page.vpnHigh && spare.entries.includes(offset)) {
      // The whole page's translation has it: take that one at once (install checks it is current).
      this.spare.delete(page.frame);
      this.stats.recompiles++;
      const whole = this.install(spare);
      if (whole) this.stats.wholePagesTaken++;
      if (whole?.entries.has(offset)) return whole;
      page = whole ?? page;
    }
    const seen = (page.misses.get(offset) ?? 0) + 1;
    page.misses.set(offset, seen);
    // An entry used once or twice (a trap return, a one-off call) is left to the interpreter; one
    // the guest keeps using is worth translating the page again.
    // Each recompile needs twice the evidence of the one before: it compiles the whole page's
    // translation again, which grows with every entry learnt, and V8's optimising compile time
    // grows faster than the function; a kernel page, or two harts each entering a page where the
    // other's translation had no entry, kept asking (parallel-sum on 2 harts: 4 compiles, 0.6 s of
    // a core on a loaded host, against 2 on 1 hart: docs/decisions.md).
    const needed = HOT_ENTRY << Math.min(page.recompiles, 8);
    if (seen < needed || page.recompiles >= MAX_RECOMPILES || this.pending.has(page.frame)) return undefined;
    this.stats.recompiles++;
    // Where the guest now enters the page first, the most used first: the translator spends its
    // budget of instructions beyond the wanted code on what these reach (translator.ts discover).
    // Only the offsets entered as often as this one must be entries. The others, and the old
    // entries, are translated from but may be absorbed by a loop: the interpreter also comes back
    // at offsets where its budget ran out, and the first translation, seeing only part of a loop,
    // had entries inside it; either kept the loop from being a wasm loop when they were entries
    // (cpubound's long build: 873 against 835 ms, 7 interleaved runs). Leaving them out instead
    // cost memstress a recompile (and its hot code the wait for V8's optimising compile again).
    const byUse = [...page.misses].sort((a, b) => b[1] - a[1]);
    const hot = byUse.filter(([, n]) => n >= needed).map(([at]) => at);
    const rest = [...byUse.filter(([, n]) => n < needed).map(([at]) => at), ...page.entries];
    const again = this.request(page.frame, page.vpnLow, page.vpnHigh, hot, page.recompiles + 1, rest);
    return again?.entries.has(offset) ? again : undefined;
  }

  /**
   * Have the page translated: at once when synchronous (the translation is returned), else by the
   * translator thread (undefined now; receive() installs it when it arrives).
   */
  private request(frame: number, vpnLow: number, vpnHigh: number, wanted: number[], recompiles: number, optional?: number[]): TranslatedPage | undefined {
    const codeMap = this.env.codeMap;
    // Mark first, then read the bytes: a store after the mark reaches a slow path and invalidates.
    const { generation, newlyMarked } = codeMap.markTranslated(frame);
    if (newlyMarked) {
      this.env.flushOwnTlb();
      for (let h = 0; h < this.env.layout.harts; h++) {
        const base = this.env.layout.hartOffset(h);
        if (base !== this.env.hartBase) requestTlbShootdown(this.words, base);
      }
    }
    const fuzz = this.options.extraEntries;
    const extra = fuzz ? extraEntriesFor(frame, fuzz.seed, fuzz.percent) : [];
    // Without a core to spare, a recompile takes all the page's code it reaches at once: the
    // whole-page translation is not made ahead (speculates), and learning a page a few entries at
    // a time compiled it again and again, each time larger.
    const complete = recompiles > 0 && !this.speculates;
    const request: TranslationRequest = {
      frame, vpnLow, vpnHigh, generation, wanted: [...wanted, ...extra], recompiles, ...(optional ? { optional } : {}), ...(complete ? { complete } : {}),
      readyHeat: { index: (this.env.layout.heatOffset >>> 2) + frame, value: this.options.threshold, notBelow: AWAITING_HEAT },
    };
    const port = this.synchronous ? undefined : this.translatorPort();
    if (!port) return this.install(translateRequest(this.env.memory, this.env.engineMemory, request, { everyInstruction: this.options.lockstep }));
    this.pending.set(frame, request);
    // The interpreter runs on meanwhile; it comes back (and finds the translation) when the frame is
    // hot again, or at once when the translator signals it through the heat.
    codeMap.setHeat(frame, this.pendingHeat(frame));
    port.postMessage(request);
    return undefined;
  }

  /**
   * After a page's first translation, which holds only the code near where the guest entered (so
   * that V8's optimising compiler, which the hot code waits for, has little to do), ask for all of
   * the page's code reachable from there, compiled and optimised in the background, to be taken
   * when the guest needs an entry the first lacks. Else the guest's next phase (cpubound's matrix
   * code after its CRC loops) waited for recompile after recompile, each running unoptimised code
   * until its own optimised code came.
   */
  private requestWhole(page: TranslatedPage): void {
    page.wholeAfter = Infinity;
    if (this.pendingWhole.has(page.frame) || this.spare.has(page.frame)) return;
    const request: TranslationRequest = {
      frame: page.frame, vpnLow: page.vpnLow, vpnHigh: page.vpnHigh, generation: page.generation,
      wanted: [], optional: [...page.entries], recompiles: page.recompiles + 1, whole: true,
    };
    const port = this.synchronous ? undefined : this.port;
    if (!port) {
      // (Translating on the hart's thread: tests, which may ask for it at once, wholeAfterMs 0.)
      const reply = translateRequest(this.env.memory, this.env.engineMemory, request);
      if (reply.module) this.spare.set(page.frame, reply);
      return;
    }
    this.pendingWhole.add(page.frame);
    port.postMessage(request);
  }

  /** Install the translations the translator thread has finished; keep whole-page ones aside. */
  private receive(): void {
    for (let message = receiveMessageOnPort(this.port!); message; message = receiveMessageOnPort(this.port!)) {
      const reply = message.message as TranslationReply;
      if (reply.whole) {
        this.pendingWhole.delete(reply.frame);
        if (reply.module) this.spare.set(reply.frame, reply);
        continue;
      }
      this.pending.delete(reply.frame);
      this.install(reply);
    }
  }

  private install(reply: TranslationReply): TranslatedPage | undefined {
    const { frame } = reply;
    this.stats.compileMilliseconds += reply.milliseconds;
    if (!reply.module) {
      // Nothing translatable where the guest runs (data, or instructions crossing the page end):
      // let the interpreter cool down on this frame before trying again.
      this.env.codeMap.setHeat(frame, -this.options.threshold);
      return undefined;
    }
    // Record where the code lies first, so that every store from now on to those chunks
    // invalidates (code-pages.ts), and then look for one that came before.
    this.env.codeMap.recordCodeChunks(frame, reply.codeChunks);
    // Code changed while it was being translated: the result is stale.
    if (reply.generation !== this.env.codeMap.generation(frame)) {
      this.stats.staleOnArrival++;
      return undefined;
    }
    // The same, for a store that reached the page without invalidating it (through a store-TLB
    // entry another hart had not yet dropped when the page was marked; to chunks an earlier
    // translation did not cover) — or a translation the thread made for another hart before such
    // a store: compare the bytes it was made from.
    if (!this.stillHolds(frame, reply.bytes, reply.codeChunks)) {
      this.stats.staleOnArrival++;
      this.env.codeMap.invalidate(frame);
      return undefined;
    }
    const instance = new WebAssembly.Instance(reply.module, this.imports);
    const page: TranslatedPage = {
      frame,
      vpnLow: reply.vpnLow,
      vpnHigh: reply.vpnHigh,
      generation: reply.generation,
      run: (instance.exports as { run: TranslatedRun }).run,
      entries: new Set(reply.entries),
      misses: new Map(),
      recompiles: reply.recompiles,
      bytes: reply.bytes,
      codeChunks: reply.codeChunks,
      // (Not at once: its compile would compete with the first translation's optimising compile,
      // which the hot code is waiting for.)
      wholeAfter: reply.recompiles === 0 && reply.truncated && this.speculates && !this.options.lockstep ? performance.now() + (this.options.wholeAfterMs ?? WHOLE_AFTER_MS) : Infinity,
    };
    this.pages.set(frame, page);
    this.table.set(frame, page.run);
    if (reply.recompiles === 0) this.stats.pagesCompiled++;
    this.stats.instructionsTranslated += reply.instructions;
    return page;
  }

  /** The port to the VM's translator thread, or undefined (then translations are made here). */
  private translatorPort(): MessagePort | undefined {
    // Asked once: a VM without a translator thread answers undefined, and stays so.
    if (!this.askedForPort) {
      this.askedForPort = true;
      this.port = this.env.connectTranslator?.();
      this.port?.unref();
    }
    return this.port;
  }

  /** The hart is done: let go of the translator thread. */
  dispose(): void {
    this.port?.close();
    this.port = undefined;
    this.synchronous = true;
  }
}
