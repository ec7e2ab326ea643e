/**
 * The body of a hart's worker thread: one task per hart for the VM's whole life. The hart shares
 * guest RAM and its own state with every other thread through the VM's WebAssembly.Memory; it
 * runs the CLINT, PLIC, UART and virtio's interrupt registers itself (their state is in shared
 * memory too) and reaches the rest through its MMIO mailbox to the main thread (hart-devices.ts).
 */
import type { MessagePort } from "node:worker_threads";
import { computeLayout, ControlSlot, type LayoutOptions } from "../shared-mem/layout.ts";
import { Hart, GuestFault, type EngineChoice } from "../vcpu/hart.ts";
import type { JitStats } from "../vcpu/jit.ts";
import { PauseGate } from "../sync/pause.ts";
import { WorldHold } from "../sync/shootdown.ts";
import { hartOwnsMemory, MemoryOwner } from "../sync/owner.ts";
import { PhysicalMap } from "../shared-mem/p2m.ts";
import { PageRecovery, UnrecoverableMemoryError } from "../mirror/recovery.ts";
import { applyInjection, CountedInjections, type MemoryInjection } from "../mirror/inject.ts";
import { MirrorControl } from "../mirror/policy.ts";
import type { Clint } from "./devices/clint.ts";
import { HartDevices } from "./hart-devices.ts";

export interface HartTask {
  memory: WebAssembly.Memory;
  layout: LayoutOptions;
  interpreter: WebAssembly.Module;
  engine: EngineChoice;
  /** Under `--engine jit`: this hart's port to the VM's translator thread (transferred). */
  translatorPort?: MessagePort;
  /** Whether the engine was built to test a per-page mirror bit (Machine.perPageProtection). */
  perPageProtection: boolean;
  hart: number;
  pc: bigint;
  a1: bigint;
  a2: bigint;
  /** Instructions between looks at the stop flag and the timer. */
  slice: number;
  /** Hart 0: the counted injections (`due@i:N`), which its thread carries out. */
  injections?: MemoryInjection[];
}

export interface HartTaskResult {
  hart: number;
  instructions: number;
  wfiMilliseconds: number;
  mirroredStores: number;
  contendedLocks: number;
  /** Counted injections this hart's thread carried out. */
  injected: number;
  /** The translator's work on this hart (--engine jit). */
  jit?: JitStats;
  /** The guest faulted beyond repair (reported like the inline run loop does). */
  fault?: string;
  /** An internal error: message, stack and the pc where it happened. */
  crash?: string;
}

/** Longest single sleep in WFI; the main thread also wakes sleepers when the VM stops. */
const MAX_SLEEP_MS = 100;

export function runHart(task: HartTask): HartTaskResult {
  const layout = computeLayout(task.layout);
  const buffer = task.memory.buffer;
  const words = new Int32Array(buffer);
  const stopIndex = (layout.controlOffset + ControlSlot.STOP) >>> 2;
  const physicalMap = new PhysicalMap(buffer, layout);
  const recovery = new PageRecovery(buffer, layout, physicalMap, Array.from({ length: task.layout.harts }, (_, h) => layout.hartOffset(h)));
  const recoverPage = (page: number, who: string): void => {
    try {
      recovery.recover(page, who);
    } catch (e) {
      if (e instanceof UnrecoverableMemoryError) throw new GuestFault(e.message);
      throw e;
    }
  };
  const mirrorControl = new MirrorControl(
    buffer,
    layout,
    physicalMap,
    (page) => recoverPage(page, `hart ${task.hart}'s release hypercall`),
    () => recovery.stats().recoveries,
  );
  // The main thread's devices may DMA while serving a request: a hart that owns guest memory
  // (sync/owner.ts) lets go of it while it waits for the main thread.
  const owner = hartOwnsMemory(layout) ? new MemoryOwner(words, layout) : undefined;
  const devices = new HartDevices({ layout, buffer, hart: task.hart, whileWaiting: (call) => (owner ? owner.setAside(call) : call()) });
  const clint = devices.clint;
  const hart = new Hart(task.hart, {
    memory: task.memory,
    layout,
    interpreter: task.interpreter,
    engine: task.engine,
    connectTranslator: () => task.translatorPort,
    mmioRead: (addr, width) => devices.read(addr, width),
    mmioWrite: (addr, width, value) => devices.write(addr, width, value),
    mtime: () => clint.mtime(),
    physicalMap,
    hypercall: (args) => mirrorControl.hypercall(args),
    perPageProtection: task.perPageProtection,
    recoverPage,
  });
  hart.reset(task.pc, BigInt(task.hart), task.a1);
  hart.setX(12, task.a2);

  // Worker threads come up at different times; start the guest on every hart at once.
  Atomics.add(words, (layout.controlOffset + ControlSlot.READY) >>> 2, 1);
  Atomics.notify(words, (layout.controlOffset + ControlSlot.READY) >>> 2);
  const go = (layout.controlOffset + ControlSlot.GO) >>> 2;
  while (Atomics.load(words, go) === 0 && Atomics.load(words, stopIndex) === 0) Atomics.wait(words, go, 0, 100);

  const result: HartTaskResult = { hart: task.hart, instructions: 0, wfiMilliseconds: 0, mirroredStores: 0, contendedLocks: 0, injected: 0 };
  const pauseGate = new PauseGate(words, layout);
  const world = new WorldHold(words, layout);
  const counted = new CountedInjections(task.injections ?? [], (injection) =>
    applyInjection(injection, {
      buffer,
      copyStride: layout.copyStride,
      copies: layout.copies,
      physicalMap,
      // A one-hart VM's hart owns guest memory: it lets go while it waits for the policy lock.
      holding: (change) => (owner ? owner.setAside(() => world.holding(change)) : world.holding(change)),
    }),
  );
  try {
    while (Atomics.load(words, stopIndex) === 0) {
      pauseGate.holdIfRequested();
      counted.fire(hart.retired);
      hart.run(counted.budget(hart.retired, task.slice));
      counted.fire(hart.retired);
      clint.checkTimer(task.hart);
      if (hart.waitingForInterrupt && !hart.interruptPending()) sleepInWfi(hart, clint, words, task.hart);
    }
  } catch (e) {
    if (e instanceof GuestFault) result.fault = e.message;
    else result.crash = `hart ${task.hart} crashed at pc 0x${hart.pc.toString(16)}: ${(e as Error).stack ?? String(e)}`;
  }
  result.instructions = hart.retired;
  result.wfiMilliseconds = hart.wfiMilliseconds;
  result.mirroredStores = hart.mirroredStores;
  result.contendedLocks = hart.contendedLocks;
  result.injected = counted.injected;
  if (hart.jit) result.jit = hart.jit.stats;
  hart.jit?.dispose();
  return result;
}

/** Sleep on the hart's mip word until an interrupt may be pending: a timer, another hart, a device. */
function sleepInWfi(hart: Hart, clint: Clint, words: Int32Array, id: number): void {
  let nanos = clint.nanosUntilTimer(id);
  const supervisor = hart.nanosUntilSupervisorTimer();
  if (supervisor !== undefined && supervisor < nanos) nanos = supervisor;
  const ms = Math.min(Number(nanos) / 1e6, MAX_SLEEP_MS);
  const started = performance.now();
  if (ms > 0) Atomics.wait(words, hart.mipIndex, hart.mip, ms);
  hart.wfiMilliseconds += performance.now() - started;
  clint.checkTimer(id);
  hart.updateSupervisorTimer();
}

export default runHart;
