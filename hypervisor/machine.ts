/**
 * A virtual machine compatible with QEMU's `virt` board: shared memory laid out per
 * shared-mem/layout.ts, harts, the MMIO bus with its devices, ELF loading and the run loop.
 */
import { computeLayout, ControlSlot, createSharedMemory, DeviceStateSlot, RAM_BASE, type LayoutOptions, type MemoryLayout, type SyncStrategy } from "../shared-mem/layout.ts";
import { Piscina } from "piscina";
import { kickHart } from "../sync/hart-signals.ts";
import { MmioMailboxServer } from "../sync/mailbox.ts";
import { PauseGate } from "../sync/pause.ts";
import type { HartTask, HartTaskResult } from "./hart-worker.ts";
import { Hart, GuestFault, type EngineChoice, type HartEnvironment } from "../vcpu/hart.ts";
import { buildInterpreterModule } from "../vcpu/interpreter.ts";
import { engineMemoryOf } from "../vcpu/wasm/wasm-sem.ts";
import { compileEagerly } from "../vcpu/wasm/encoder.ts";
import { DEFAULT_JIT_THRESHOLD, defaultEngineName, TranslatorThread, type JitStats } from "../vcpu/jit.ts";
import { Bus } from "./bus.ts";
import { Clint } from "./devices/clint.ts";
import type { MachineControl } from "./devices/device.ts";
import { Htif } from "./devices/htif.ts";
import { SifiveTest } from "./devices/sifive-test.ts";
import { Uart16550, UART_IRQ } from "./devices/uart.ts";
import { Plic } from "./devices/plic.ts";
import { Rom, MROM_BASE, MROM_SIZE } from "./devices/rom.ts";
import { VirtioBlock, VIRTIO_BLK_IRQ } from "./devices/virtio-blk.ts";
import { GuestDmaMemory } from "../mirror/dma.ts";
import { PageRecovery, UnrecoverableMemoryError, type RecoveryStats } from "../mirror/recovery.ts";
import { applyInjection, CountedInjections, timedInjections, type InjectionMemory, type MemoryInjection } from "../mirror/inject.ts";
import { MirrorControl, type MirrorPolicy } from "../mirror/policy.ts";
import { Scrubber, describeFinding, type ScrubStats } from "../mirror/scrubber.ts";
import type { ScrubTask, ScrubTaskResult } from "./scrub-worker.ts";
import { PhysicalMap } from "../shared-mem/p2m.ts";
import { WorldHold } from "../sync/shootdown.ts";
import type { DiskImage } from "./disk-image.ts";
import { checkSegmentsFit, ElfError, parseElf, type ElfImage } from "./elf.ts";

export interface MachineConfig {
  ramSize: number;
  harts: number;
  /** Where console bytes go (UART and HTIF); default: process.stdout. */
  output?: (bytes: Uint8Array) => void;
  /** Backing image of the virtio block device; no device without one. */
  disk?: DiskImage;
  /** Told when the virtio device sees a malformed request from the driver. */
  onDeviceError?: (message: string) => void;
  /** Copies of guest RAM: 1 = unmirrored, 2..5 = primary plus N−1 mirrors (`--mirror vm --nmr N`). */
  copies?: number;
  /** Which pages the copies protect (default: all of them when mirrored). */
  mirror?: MirrorPolicy;
  /** Spare frames for recovery (default 64 when mirrored, none otherwise). */
  spareFrames?: number;
  /** How the copies stay identical when harts race (sync/strategy.ts; default `striped`). */
  sync?: SyncStrategy;
  /** The execution engine (vcpu/hart.ts EngineChoice; default: vcpu/jit.ts defaultEngineName). */
  engine?: EngineChoice;
  /**
   * Run each hart in its own worker thread (the default for `kmemvisor run`). Otherwise all harts
   * take turns on the calling thread, which tests use to inspect harts directly.
   */
  workers?: boolean;
}

export interface HartStats {
  hart: number;
  instructions: number;
  wfiMilliseconds: number;
  /** Stores the engine also wrote to the mirror copies. */
  mirroredStores: number;
  /** Mirror-lock acquisitions that found the lock held (see --sync). */
  contendedLocks: number;
  /** Under --engine jit: pages translated, recompilations, invalidations, time spent compiling. */
  jit?: JitStats;
}

export interface RunResult {
  /** The guest's exit code (finisher or HTIF), or undefined when it did not exit. */
  exitCode: number | undefined;
  /** Why the run ended ("stopped": the host ended it, as the console's C-a x does). */
  reason: "exit" | "timeout" | "fault" | "stopped";
  /** For reason "fault": what went wrong, naming the hart and pc. */
  fault?: string;
  wallMilliseconds: number;
  harts: HartStats[];
  /** Mirroring and recovery: copies kept, spare frames, failures injected, pages recovered, their latency, scrubbing. */
  memory: RecoveryStats & { copies: number; spareFrames: number; sync: SyncStrategy; injected: number; scrub: ScrubStats };
  /** What the scrubber found and did, one line each. */
  scrubReports: string[];
}

export interface RunOptions {
  /** Stop after this many wall-clock milliseconds. */
  timeoutMs?: number;
  /** Memory failures to inject while the guest runs. */
  injections?: readonly MemoryInjection[];
  /** Run the scrubber (in its own thread when harts run in workers), pausing this long between passes. */
  scrubIntervalMs?: number;
  /**
   * Every `everyMs`, hold every hart still at an instruction boundary and call `atPause` with the
   * milliseconds since the start (the stress tester compares the copies there). It returns "stop"
   * to end the run (reason "exit", no exit code) or "continue".
   */
  pauses?: { everyMs: number; atPause(elapsedMs: number): "continue" | "stop" };
}

/** Spare frames a mirrored VM keeps for recovery unless told otherwise. */
export const DEFAULT_SPARE_FRAMES = 64;

/** Instructions a hart runs between looks at devices and interrupts. */
const SLICE = 50_000;
/**
 * The same under the translator, which runs them 4–15× faster: the machine-timer latency stays
 * about the same (≤ ~0.2 ms at translated speed), and the per-slice host work (timer, pause gate,
 * page lookup) drops from ~7% of a translated hot loop's time to ~2%.
 */
const JIT_SLICE = 200_000;
/** Longest the run loop keeps the host event loop (stdin, timers) waiting. */
const YIELD_EVERY_MS = 20;

export class Machine implements MachineControl {
  readonly layout: MemoryLayout;
  readonly memory: WebAssembly.Memory;
  readonly bus = new Bus();
  readonly clint: Clint;
  readonly uart: Uart16550;
  readonly plic: Plic;
  readonly rom: Rom;
  readonly virtio: VirtioBlock | undefined;
  readonly harts: Hart[];
  readonly physicalMap: PhysicalMap;
  readonly recovery: PageRecovery;
  readonly scrubber: Scrubber;
  readonly mirrorControl: MirrorControl;
  /** `--mirror ranges:`: the engine tests a per-page mirror bit (under `vm` it mirrors every store). */
  readonly perPageProtection: boolean;
  private htif: Htif | undefined;
  private exitCode: number | undefined;
  private stopped = false;
  private stoppedByHost = false;
  private readonly workers: boolean;
  /** Holds the harts out of their engines while a DUE is injected (sync/shootdown.ts). */
  private readonly world: WorldHold;
  private readonly interpreter: WebAssembly.Module;
  readonly engine: EngineChoice;
  /** Under `--engine jit`: the thread that translates hot pages for every hart. */
  private readonly translator: TranslatorThread | undefined;
  private readonly words: Int32Array;
  private startState: { pc: bigint; a1: bigint; a2: bigint } | undefined;
  private outputBuffer: number[] = [];
  private readonly output: (bytes: Uint8Array) => void;
  /** Console bytes from UART and HTIF, batched and flushed between slices. */
  private readonly consoleByte = (byte: number) => {
    this.outputBuffer.push(byte);
  };

  constructor(config: MachineConfig) {
    const copies = config.copies ?? 1;
    this.layout = computeLayout({
      ramSize: config.ramSize,
      copies,
      spareFrames: config.spareFrames ?? (copies > 1 ? DEFAULT_SPARE_FRAMES : 0),
      harts: config.harts,
      sync: config.sync,
    });
    this.memory = createSharedMemory(this.layout);
    this.output = config.output ?? ((bytes) => process.stdout.write(bytes));

    this.words = new Int32Array(this.memory.buffer);
    this.perPageProtection = config.mirror?.kind === "ranges";
    this.physicalMap = new PhysicalMap(this.memory.buffer, this.layout);
    this.physicalMap.initialize();
    this.recovery = new PageRecovery(
      this.memory.buffer,
      this.layout,
      this.physicalMap,
      Array.from({ length: config.harts }, (_, h) => this.layout.hartOffset(h)),
    );
    this.scrubber = new Scrubber(this.memory.buffer, this.layout, this.physicalMap, this.recovery);
    this.mirrorControl = new MirrorControl(
      this.memory.buffer,
      this.layout,
      this.physicalMap,
      (page) => this.recoverPage(page, "a release hypercall"),
      () => this.recovery.stats().recoveries,
    );
    if (config.mirror) this.mirrorControl.apply(config.mirror);
    this.world = new WorldHold(this.words, this.layout);
    this.workers = config.workers ?? false;
    this.clint = new Clint({
      harts: config.harts,
      control: this,
      state: { buffer: this.memory.buffer, offset: this.layout.controlOffset + ControlSlot.CLINT },
    });
    // The devices harts run in their own threads keep their registers in shared memory
    // (hart-devices.ts); these are the main thread's views, which initialise it.
    const deviceState = (slot: number) => ({ buffer: this.memory.buffer, offset: this.layout.deviceStateOffset + slot });
    this.plic = new Plic({ harts: config.harts, control: this, state: deviceState(DeviceStateSlot.PLIC) });
    this.uart = new Uart16550({
      output: this.consoleByte,
      irq: (level) => this.plic.setIrq(UART_IRQ, level),
      state: deviceState(DeviceStateSlot.UART),
    });
    this.rom = new Rom(MROM_BASE, MROM_SIZE);
    this.bus.add(this.rom);
    this.bus.add(this.clint);
    this.bus.add(this.plic);
    this.bus.add(this.uart);
    this.bus.add(new SifiveTest({ control: this }));
    if (config.disk) {
      this.virtio = new VirtioBlock({
        disk: config.disk,
        memory: this.guestMemory("virtio-blk DMA"),
        irq: (level) => this.plic.setIrq(VIRTIO_BLK_IRQ, level),
        onError: config.onDeviceError,
        interruptState: deviceState(DeviceStateSlot.VIRTIO_BLK_IRQ),
      });
      this.bus.add(this.virtio);
    }

    const pages = this.layout.totalBytes / 65536;
    this.engine = config.engine ?? (defaultEngineName() === "jit" ? { kind: "jit", threshold: DEFAULT_JIT_THRESHOLD } : { kind: "interp" });
    const heat = this.engine.kind === "jit" ? { heatOffset: this.layout.heatOffset, threshold: this.engine.threshold } : undefined;
    const interpreterBytes = buildInterpreterModule(engineMemoryOf(this.layout, this.perPageProtection), pages, heat);
    // Compiled eagerly: its optimised code (~30 ms on an idle core) is made in the background
    // while the hart workers load, instead of after the first call, with the hart running the
    // interpreter's baseline code, several times slower, meanwhile. cpubound under the jit, 9
    // interleaved runs: medians 236 against 254 ms in-VM.
    const interpreter = (this.interpreter = compileEagerly(interpreterBytes));
    if (this.engine.kind === "jit" && !this.engine.lockstep && !this.engine.synchronous) {
      this.translator = new TranslatorThread(this.memory, engineMemoryOf(this.layout, this.perPageProtection));
    }
    const env: HartEnvironment = {
      // In worker mode these harts never run (each worker builds its own): no port for them.
      connectTranslator: () => (this.workers ? undefined : this.translator?.connect()),
      memory: this.memory,
      layout: this.layout,
      interpreter,
      mmioRead: (addr, width) => this.bus.read(addr, width),
      mmioWrite: (addr, width, value) => this.bus.write(addr, width, value),
      mtime: () => this.clint.mtime(),
      physicalMap: this.physicalMap,
      recoverPage: (page, who) => this.recoverPage(page, who),
      hypercall: (args) => this.mirrorControl.hypercall(args),
      perPageProtection: this.perPageProtection,
      engine: this.engine,
    };
    this.harts = Array.from({ length: config.harts }, (_, id) => new Hart(id, env));
  }

  // --- MachineControl ------------------------------------------------------------------------
  requestExit(code: number): void {
    if (this.stopped) return;
    this.exitCode = code;
    this.stopped = true;
    Atomics.store(this.words, (this.layout.controlOffset + ControlSlot.EXIT_CODE) >>> 2, code);
    this.signalStop();
    for (const hart of this.harts) hart.requestReturn();
  }

  setHartInterrupt(hart: number, bit: number, level: boolean): void {
    this.harts[hart]?.updateMip(1 << bit, level ? 1 << bit : 0);
  }

  // --- loading -------------------------------------------------------------------------------
  /** Load an ELF into RAM; wires HTIF when it defines tohost/fromhost. Returns the image. */
  loadElf(bytes: Uint8Array, fileName: string): ElfImage {
    const image = parseElf(bytes, fileName);
    checkSegmentsFit(image, RAM_BASE, this.layout.ramSize);
    for (const segment of image.segments) {
      // checkSegmentsFit allows a header prefix below RAM (see HEADER_PREFIX_LIMIT): skip it.
      const skip = Math.max(0, RAM_BASE - Number(segment.paddr));
      const start = Number(segment.paddr) + skip;
      const data = segment.fileData.subarray(Math.min(skip, segment.fileData.length));
      this.writeRam(start, data);
      // .bss: fresh memory is zero, but a second image may overlap an earlier one.
      this.writeRam(start + data.length, new Uint8Array(Number(segment.paddr) + Number(segment.memSize) - start - data.length));
    }
    const tohost = image.symbols.get("tohost");
    const fromhost = image.symbols.get("fromhost");
    if (tohost !== undefined && fromhost !== undefined) {
      for (const [name, address] of [["tohost", tohost], ["fromhost", fromhost]] as const) {
        if (address < BigInt(RAM_BASE) || address + 8n > BigInt(RAM_BASE + this.layout.ramSize)) {
          throw new ElfError(`${fileName}: HTIF symbol ${name} at 0x${address.toString(16)} is outside RAM`);
        }
      }
      // Through the p2m, like every host access: a recovered page lives in a spare frame.
      const memory = this.guestMemory("HTIF");
      this.htif = new Htif({
        tohost: Number(tohost),
        fromhost: Number(fromhost),
        read64: (gpa) => memory.readU64(gpa),
        write64: (gpa, value) => {
          const bytes = new Uint8Array(8);
          new DataView(bytes.buffer).setBigUint64(0, value, true);
          memory.write(gpa, bytes); // every copy: host writes are mirrored like the guest's
        },
        output: this.consoleByte,
        control: this,
      });
    }
    return image;
  }

  /** Host-side access to guest RAM for `who`: through the p2m, poisoned pages recovered, writes to every copy. */
  private guestMemory(who: string): GuestDmaMemory {
    return new GuestDmaMemory(this.memory.buffer, this.layout, this.physicalMap, (page) => this.recoverPage(page, who));
  }

  /** Every hart starts at `entry` in M-mode with a0 = hartid, a1 = FDT, a2 = fw_dynamic_info (as QEMU). */
  start(entry: bigint, fdt = 0n, dynamicInfo = 0n): void {
    this.startState = { pc: entry, a1: fdt, a2: dynamicInfo };
    for (const hart of this.harts) {
      hart.reset(entry, BigInt(hart.id), fdt);
      hart.setX(12, dynamicInfo);
    }
  }

  /** Copy bytes into guest RAM, every copy of it, through the p2m (boot loading, tests); throws DmaError outside RAM. */
  writeRam(gpa: number, bytes: Uint8Array): void {
    this.guestMemory("a host write").write(gpa, bytes);
  }

  private injected = 0;
  private readonly scrubReports: string[] = [];

  private layoutOptions(): LayoutOptions {
    const { ramSize, copies, spareFrames, harts, sync } = this.layout;
    return { ramSize, copies, spareFrames, harts, sync };
  }

  /** Mirroring and recovery so far: copies, failures injected, pages recovered, scrubbing. */
  memoryStats(): RunResult["memory"] {
    const { copies, spareFrames, sync } = this.layout;
    return { copies, spareFrames, sync, injected: this.injected, ...this.recovery.stats(), scrub: this.scrubber.stats() };
  }

  /** Inject the timed failures whose time has come (`elapsedMs` since the harts started); returns those left. */
  private injectMemoryInjections(pending: MemoryInjection[], elapsedMs: number, whileWaiting?: () => void): MemoryInjection[] {
    const left: MemoryInjection[] = [];
    for (const injection of pending) {
      if (injection.atMs! > elapsedMs) left.push(injection);
      else this.inject(injection, whileWaiting);
    }
    return left;
  }

  /** `whileWaiting`: the run loop's MMIO service, for the harts the DUE's hold waits for. */
  private injectionMemory(whileWaiting?: () => void): InjectionMemory {
    return {
      buffer: this.memory.buffer,
      copyStride: this.layout.copyStride,
      copies: this.layout.copies,
      physicalMap: this.physicalMap,
      holding: (change) => this.world.holding(change, whileWaiting),
    };
  }

  private inject(injection: MemoryInjection, whileWaiting?: () => void): void {
    applyInjection(injection, this.injectionMemory(whileWaiting));
    this.injected++; // counted injections are hart 0's: in worker mode its thread counts them (HartTaskResult)
  }

  /** Inject an SDC: flip bit `bit` of the byte at guest-physical `gpa` in copy `copy`, silently. */
  injectSdc(gpa: number, bit: number, copy = 0): void {
    this.inject({ kind: "sdc", gpa, bit, copy });
  }

  /** Recover a poisoned page for a host-side accessor; a failure stops the VM like a guest fault. */
  private recoverPage(page: number, who: string): void {
    try {
      this.recovery.recover(page, who);
    } catch (e) {
      if (e instanceof UnrecoverableMemoryError) throw new GuestFault(e.message);
      throw e;
    }
  }

  /**
   * Inject a DUE: poison the frame holding guest-physical `gpa` in copy `copy` (0 = primary).
   * Every hart drops its TLB, so the next access to the page, by any hart or device, finds the
   * poison and raises a machine check. The harts are held out of their engines meanwhile (a
   * synchronous shootdown, sync/shootdown.ts): a hart that went on storing through its cached
   * entry after the poison would write into the old frame while another recovers the page from a
   * copy, and that store would be lost. `whileWaiting` serves the harts' MMIO meanwhile (this
   * thread's run loop).
   */
  injectDue(gpa: number, copy = 0, whileWaiting?: () => void): void {
    this.inject({ kind: "due", gpa, copy, bit: 0 }, whileWaiting);
  }

  /** Instructions a hart in its own thread runs between looks at devices and interrupts. */
  private get slice(): number {
    return this.engine.kind === "jit" ? JIT_SLICE : SLICE;
  }

  // --- running -------------------------------------------------------------------------------
  async run(options: RunOptions = {}): Promise<RunResult> {
    return this.workers ? this.runInWorkers(options) : this.runInline(options);
  }

  /**
   * Every hart in its own worker thread; this thread serves their MMIO requests, ticks devices
   * (console input, HTIF) and enforces the timeout.
   */
  private async runInWorkers(options: RunOptions): Promise<RunResult> {
    const deadline = options.timeoutMs === undefined ? Infinity : performance.now() + options.timeoutMs;
    const start = this.startState;
    if (!start) throw new Error("Machine.start() must come before run()");
    const harts = this.harts.length;
    const pool = new Piscina({
      filename: new URL("./hart-worker-entry.mjs", import.meta.url).href,
      minThreads: harts + (options.scrubIntervalMs !== undefined ? 1 : 0),
      maxThreads: harts + (options.scrubIntervalMs !== undefined ? 1 : 0),
      concurrentTasksPerWorker: 1,
      idleTimeout: 1000,
    });
    const server = new MmioMailboxServer(
      this.memory.buffer,
      this.harts.map((h) => h.base),
      this.layout.controlOffset,
      { read: (addr, width) => this.bus.read(addr, width), write: (addr, width, value) => this.bus.write(addr, width, value) },
    );
    const results: (HartTaskResult | undefined)[] = new Array(harts);
    let failure: string | undefined;
    let running = harts;
    for (let hart = 0; hart < harts; hart++) {
      const task: HartTask = {
        memory: this.memory,
        layout: this.layoutOptions(),
        interpreter: this.interpreter,
        engine: this.engine,
        perPageProtection: this.perPageProtection,
        hart,
        ...start,
        slice: this.slice,
        // Counted injections (`due@i:N`) are timed by hart 0's own retired count: its thread injects.
        ...(hart === 0 ? { injections: (options.injections ?? []).filter((i) => i.atInstruction !== undefined) } : {}),
      };
      const translatorPort = this.translator?.connect();
      if (translatorPort) task.translatorPort = translatorPort;
      (pool.run(task, { transferList: translatorPort ? [translatorPort] : [] }) as Promise<HartTaskResult>).then(
        (result) => {
          results[hart] = result;
          this.injected += result.injected;
          if ((result.fault || result.crash) && !failure) {
            failure = result.fault ?? result.crash;
            this.stopAllHarts();
          }
        },
        (error: unknown) => {
          failure ??= `hart ${hart}: worker failed: ${(error as Error).stack ?? String(error)}`;
          this.stopAllHarts();
        },
      ).finally(() => running--);
    }

    let scrubbing: Promise<ScrubTaskResult> | undefined;
    if (options.scrubIntervalMs !== undefined) {
      const task: ScrubTask = { memory: this.memory, layout: this.layoutOptions(), intervalMs: options.scrubIntervalMs };
      scrubbing = pool.run(task, { name: "runScrubber" }) as Promise<ScrubTaskResult>;
    }
    let reason: RunResult["reason"] = "exit";
    const serveMailboxes = (): void => {
      try {
        server.serve();
      } catch (e) {
        // A device's DMA hit memory that could not be recovered: stop the VM with the report.
        if (!(e instanceof GuestFault)) throw e;
        failure ??= e.message;
        this.stopAllHarts();
      }
    };
    let lastTick = 0;
    // Neither Atomics.waitAsync nor piscina's workers keep Node's event loop alive: this does.
    const keepAlive = setInterval(() => {}, 1000);
    let started = performance.now();
    try {
      // Start every hart at once, with the guest's clock at zero, when all workers are loaded.
      const ready = (this.layout.controlOffset + ControlSlot.READY) >>> 2;
      for (let seen = Atomics.load(this.words, ready); seen < harts && running === harts; seen = Atomics.load(this.words, ready)) {
        const wait = Atomics.waitAsync(this.words, ready, seen, 100);
        if (wait.async) await wait.value;
        if (performance.now() >= deadline) break;
      }
      this.clint.restartClock();
      started = performance.now();
      Atomics.store(this.words, (this.layout.controlOffset + ControlSlot.GO) >>> 2, 1);
      Atomics.notify(this.words, (this.layout.controlOffset + ControlSlot.GO) >>> 2);

      let pendingInjections = timedInjections(options.injections ?? []);
      const gate = new PauseGate(this.words, this.layout);
      let lastPause = started;
      while (running > 0) {
        if (options.pauses && !this.stopped) {
          // Harts that hold cannot finish a task, so "all running harts hold" is reachable; a hart
          // waiting for an MMIO reply holds once served below.
          if (!gate.requested && performance.now() - lastPause >= options.pauses.everyMs) gate.request();
          if (gate.requested && gate.held() >= running) {
            const verdict = options.pauses.atPause(performance.now() - started);
            gate.resume();
            lastPause = performance.now();
            if (verdict === "stop") this.stopAllHarts();
          }
        }
        serveMailboxes();
        const now = performance.now();
        if (pendingInjections.length > 0) pendingInjections = this.injectMemoryInjections(pendingInjections, now - started, serveMailboxes);
        if (now - lastTick >= 1) {
          lastTick = now;
          this.bus.tick();
          this.htif?.tick();
          this.flushOutput();
        }
        if (now >= deadline && !this.stopped) {
          reason = "timeout";
          this.stopAllHarts();
        }
        await server.waitForRequests(1);
      }
    } finally {
      clearInterval(keepAlive);
      server.drainPosted(); // requests a hart posted just before the VM stopped
      this.flushOutput();
      this.stopAllHarts(); // the scrubber runs until the VM stops
      if (scrubbing) this.scrubReports.push(...(await scrubbing).reports);
      await pool.destroy();
    }
    if (failure !== undefined) reason = "fault";
    else if (this.stoppedByHost) reason = "stopped";
    return {
      exitCode: reason === "exit" ? this.exitCode : undefined,
      reason,
      fault: failure,
      wallMilliseconds: performance.now() - started,
      memory: this.memoryStats(),
      scrubReports: this.scrubReports,
      // Array.from, not map: a hart whose worker failed left a hole, which map would skip.
      harts: Array.from(results, (r, hart) => ({
        hart,
        instructions: r?.instructions ?? 0,
        wfiMilliseconds: r?.wfiMilliseconds ?? 0,
        mirroredStores: r?.mirroredStores ?? 0,
        contendedLocks: r?.contendedLocks ?? 0,
        ...(r?.jit ? { jit: r.jit } : {}),
      })),
    };
  }

  /** End the run from the host (the console's C-a x): reason "stopped", no exit code. */
  stopFromHost(): void {
    if (this.stopped) return;
    this.stoppedByHost = true;
    this.stopAllHarts();
  }

  /** Stop every hart without an exit code (timeout, failure). */
  private stopAllHarts(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.signalStop();
  }

  /**
   * Raise STOP, kick every hart, and wake the scrubber, which sleeps on the STOP word between
   * passes: unwoken it would keep the process alive for up to a whole --scrub interval.
   */
  private signalStop(): void {
    const stop = (this.layout.controlOffset + ControlSlot.STOP) >>> 2;
    Atomics.store(this.words, stop, 1);
    Atomics.notify(this.words, stop);
    for (let h = 0; h < this.harts.length; h++) kickHart(this.words, this.layout.hartOffset(h));
  }

  /**
   * All harts take turns on this thread, SLICE instructions at a time (not JIT_SLICE: a hart
   * spinning on another's progress would spin 4× longer before the other gets its turn).
   */
  private async runInline(options: RunOptions): Promise<RunResult> {
    const started = performance.now();
    const deadline = options.timeoutMs === undefined ? Infinity : started + options.timeoutMs;
    let lastYield = started;
    let reason: RunResult["reason"] = "exit";
    let fault: string | undefined;
    try {
      let pendingInjections = timedInjections(options.injections ?? []);
      const counted = new CountedInjections(options.injections ?? [], (injection) => this.inject(injection));
      let lastScrub = started;
      let lastPause = started;
      while (!this.stopped) {
        if (options.scrubIntervalMs !== undefined && performance.now() - lastScrub >= options.scrubIntervalMs) {
          for (const finding of this.scrubber.pass()) this.scrubReports.push(describeFinding(finding));
          lastScrub = performance.now();
        }
        if (pendingInjections.length > 0) pendingInjections = this.injectMemoryInjections(pendingInjections, performance.now() - started);
        // Between rounds every hart is at an instruction boundary: a pause needs no gate here.
        if (options.pauses && performance.now() - lastPause >= options.pauses.everyMs) {
          if (options.pauses.atPause(performance.now() - started) === "stop") this.stopAllHarts();
          lastPause = performance.now();
          if (this.stopped) break;
        }
        let anyRan = false;
        for (const hart of this.harts) {
          if (this.stopped) break;
          if (hart.waitingForInterrupt && !hart.interruptPending()) continue;
          if (hart.id === 0) counted.fire(hart.retired);
          hart.run(hart.id === 0 ? counted.budget(hart.retired, SLICE) : SLICE);
          if (hart.id === 0) counted.fire(hart.retired);
          anyRan = true;
        }
        this.bus.tick();
        this.htif?.tick();
        for (const hart of this.harts) hart.updateSupervisorTimer();
        this.flushOutput();
        const now = performance.now();
        if (now >= deadline) {
          reason = "timeout";
          break;
        }
        if (!anyRan) {
          await this.sleepUntilInterrupt(deadline - now);
          lastYield = performance.now();
        } else if (now - lastYield >= YIELD_EVERY_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          lastYield = performance.now();
        }
      }
    } catch (e) {
      if (!(e instanceof GuestFault)) throw e;
      reason = "fault";
      fault = e.message;
    } finally {
      this.flushOutput();
    }
    for (const hart of this.harts) hart.waitingForInterrupt = false;
    if (reason === "exit" && this.stoppedByHost) reason = "stopped";
    return {
      exitCode: reason === "exit" ? this.exitCode : undefined,
      reason,
      fault,
      wallMilliseconds: performance.now() - started,
      memory: this.memoryStats(),
      scrubReports: this.scrubReports,
      harts: this.harts.map((h) => ({ hart: h.id, instructions: h.retired, wfiMilliseconds: h.wfiMilliseconds, mirroredStores: h.mirroredStores, contendedLocks: h.contendedLocks, ...(h.jit ? { jit: { ...h.jit.stats } } : {}) })),
    };
  }

  /** Every hart is in WFI: sleep until the earliest timer or a host event, at most `limitMs`. */
  private async sleepUntilInterrupt(limitMs: number): Promise<void> {
    let nanos = 10_000_000n; // wake at least every 10 ms for input and the timeout
    for (const hart of this.harts) {
      const until = this.clint.nanosUntilTimer(hart.id);
      if (until < nanos) nanos = until;
      const supervisor = hart.nanosUntilSupervisorTimer();
      if (supervisor !== undefined && supervisor < nanos) nanos = supervisor;
    }
    const ms = Math.max(0, Math.min(Number(nanos) / 1e6, limitMs));
    const start = performance.now();
    await new Promise((resolve) => setTimeout(resolve, ms));
    const slept = performance.now() - start;
    for (const hart of this.harts) if (hart.waitingForInterrupt) hart.wfiMilliseconds += slept;
  }

  private flushOutput(): void {
    this.uart.drainOutput();
    if (this.outputBuffer.length === 0) return;
    this.output(Uint8Array.from(this.outputBuffer));
    this.outputBuffer = [];
  }

  /** A copy of guest RAM as the guest sees it (through the p2m), for tests and tools. */
  readRam(gpa: number, length: number): Uint8Array {
    return this.guestMemory("a host read").read(gpa, length);
  }
}
