/**
 * A virtual machine compatible with QEMU's `virt` board: shared memory laid out per
 * shared-mem/layout.ts, harts, the MMIO bus with its devices, ELF loading and the run loop.
 */
import { computeLayout, createSharedMemory, RAM_BASE, type MemoryLayout } from "../shared-mem/layout.ts";
import { Hart, GuestFault, type HartEnvironment } from "../vcpu/hart.ts";
import { buildInterpreterModule } from "../vcpu/interpreter.ts";
import { Bus } from "./bus.ts";
import { Clint } from "./devices/clint.ts";
import type { AccessWidth, MachineControl } from "./devices/device.ts";
import { Htif } from "./devices/htif.ts";
import { SifiveTest } from "./devices/sifive-test.ts";
import { Uart16550, UART_IRQ } from "./devices/uart.ts";
import { Plic } from "./devices/plic.ts";
import { Rom, MROM_BASE, MROM_SIZE } from "./devices/rom.ts";
import { LinearDmaMemory, VirtioBlock, VIRTIO_BLK_IRQ } from "./devices/virtio-blk.ts";
import type { DiskImage } from "./disk-image.ts";
import { checkSegmentsFit, parseElf, type ElfImage } from "./elf.ts";

export interface MachineConfig {
  ramSize: number;
  harts: number;
  /** Where console bytes go (UART and HTIF); default: process.stdout. */
  output?: (bytes: Uint8Array) => void;
  /** Backing image of the virtio block device; no device without one. */
  disk?: DiskImage;
  /** Told when the virtio device sees a malformed request from the driver. */
  onDeviceError?: (message: string) => void;
}

export interface HartStats {
  hart: number;
  instructions: number;
  wfiMilliseconds: number;
}

export interface RunResult {
  /** The guest's exit code (finisher or HTIF), or undefined when it did not exit. */
  exitCode: number | undefined;
  /** Why the run ended. */
  reason: "exit" | "timeout" | "fault";
  /** For reason "fault": what went wrong, naming the hart and pc. */
  fault?: string;
  wallMilliseconds: number;
  harts: HartStats[];
}

export interface RunOptions {
  /** Stop after this many wall-clock milliseconds. */
  timeoutMs?: number;
}

/** Instructions a hart runs between looks at devices and interrupts. */
const SLICE = 50_000;
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
  private readonly view: DataView;
  private htif: Htif | undefined;
  private exitCode: number | undefined;
  private stopped = false;
  private outputBuffer: number[] = [];
  private readonly output: (bytes: Uint8Array) => void;
  /** Console bytes from UART and HTIF, batched and flushed between slices. */
  private readonly consoleByte = (byte: number) => {
    this.outputBuffer.push(byte);
  };

  constructor(config: MachineConfig) {
    this.layout = computeLayout({ ramSize: config.ramSize, copies: 1, spareFrames: 0, harts: config.harts });
    this.memory = createSharedMemory(this.layout);
    this.view = new DataView(this.memory.buffer);
    this.output = config.output ?? ((bytes) => process.stdout.write(bytes));

    this.clint = new Clint({ harts: config.harts, control: this });
    this.plic = new Plic({ harts: config.harts, control: this });
    this.uart = new Uart16550({ output: this.consoleByte, irq: (level) => this.plic.setIrq(UART_IRQ, level) });
    this.rom = new Rom(MROM_BASE, MROM_SIZE);
    this.bus.add(this.rom);
    this.bus.add(this.clint);
    this.bus.add(this.plic);
    this.bus.add(this.uart);
    this.bus.add(new SifiveTest({ control: this }));
    if (config.disk) {
      const ram = new Uint8Array(this.memory.buffer, this.layout.ramOffset, this.layout.ramSize);
      this.virtio = new VirtioBlock({
        disk: config.disk,
        memory: new LinearDmaMemory(ram, RAM_BASE),
        irq: (level) => this.plic.setIrq(VIRTIO_BLK_IRQ, level),
        onError: config.onDeviceError,
      });
      this.bus.add(this.virtio);
    }

    const pages = this.layout.totalBytes / 65536;
    const interpreter = new WebAssembly.Module(
      buildInterpreterModule({ ramSize: this.layout.ramSize, ramOffset: this.layout.ramOffset }, pages),
    );
    const env: HartEnvironment = {
      memory: this.memory,
      layout: this.layout,
      interpreter,
      mmioRead: (addr, width) => this.bus.read(addr, width),
      mmioWrite: (addr, width, value) => this.bus.write(addr, width, value),
      mtime: () => this.clint.mtime(),
    };
    this.harts = Array.from({ length: config.harts }, (_, id) => new Hart(id, env));
  }

  // --- MachineControl ------------------------------------------------------------------------
  requestExit(code: number): void {
    if (this.stopped) return;
    this.exitCode = code;
    this.stopped = true;
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
    const ram = new Uint8Array(this.memory.buffer, this.layout.ramOffset, this.layout.ramSize);
    for (const segment of image.segments) {
      // checkSegmentsFit allows a header prefix below RAM (see HEADER_PREFIX_LIMIT): skip it.
      const skip = Math.max(0, RAM_BASE - Number(segment.paddr));
      const offset = Number(segment.paddr) + skip - RAM_BASE;
      const data = segment.fileData.subarray(Math.min(skip, segment.fileData.length));
      ram.set(data, offset);
      ram.fill(0, offset + data.length, Number(segment.paddr) + Number(segment.memSize) - RAM_BASE);
    }
    const tohost = image.symbols.get("tohost");
    const fromhost = image.symbols.get("fromhost");
    if (tohost !== undefined && fromhost !== undefined) {
      this.htif = new Htif({
        tohost: Number(tohost),
        fromhost: Number(fromhost),
        read64: (gpa) => this.view.getBigUint64(this.ramOffsetOf(gpa), true),
        write64: (gpa, value) => this.view.setBigUint64(this.ramOffsetOf(gpa), value, true),
        output: this.consoleByte,
        control: this,
      });
    }
    return image;
  }

  private ramOffsetOf(gpa: number): number {
    const offset = gpa - RAM_BASE;
    if (offset < 0 || offset + 8 > this.layout.ramSize) {
      throw new GuestFault(`HTIF symbol at 0x${gpa.toString(16)} is outside RAM`);
    }
    return this.layout.ramOffset + offset;
  }

  /** Every hart starts at `entry` in M-mode with a0 = hartid, a1 = FDT, a2 = fw_dynamic_info (as QEMU). */
  start(entry: bigint, fdt = 0n, dynamicInfo = 0n): void {
    for (const hart of this.harts) {
      hart.reset(entry, BigInt(hart.id), fdt);
      hart.setX(12, dynamicInfo);
    }
  }

  /** Copy bytes into guest RAM (boot loading); throws RangeError outside RAM. */
  writeRam(gpa: number, bytes: Uint8Array): void {
    const offset = gpa - RAM_BASE;
    if (offset < 0 || offset + bytes.length > this.layout.ramSize) {
      throw new RangeError(`0x${gpa.toString(16)}+${bytes.length} is outside RAM`);
    }
    new Uint8Array(this.memory.buffer, this.layout.ramOffset + offset, bytes.length).set(bytes);
  }

  // --- running -------------------------------------------------------------------------------
  async run(options: RunOptions = {}): Promise<RunResult> {
    const started = performance.now();
    const deadline = options.timeoutMs === undefined ? Infinity : started + options.timeoutMs;
    let lastYield = started;
    let reason: RunResult["reason"] = "exit";
    let fault: string | undefined;
    try {
      while (!this.stopped) {
        let anyRan = false;
        for (const hart of this.harts) {
          if (this.stopped) break;
          if (hart.waitingForInterrupt && !hart.interruptPending()) continue;
          hart.run(SLICE);
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
    return {
      exitCode: reason === "exit" ? this.exitCode : undefined,
      reason,
      fault,
      wallMilliseconds: performance.now() - started,
      harts: this.harts.map((h) => ({ hart: h.id, instructions: h.retired, wfiMilliseconds: h.wfiMilliseconds })),
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
    if (this.outputBuffer.length === 0) return;
    this.output(Uint8Array.from(this.outputBuffer));
    this.outputBuffer = [];
  }

  /** Guest-visible address of RAM for tests and tools. */
  readRam(gpa: number, length: number): Uint8Array {
    const offset = this.ramOffsetOf(gpa);
    return new Uint8Array(this.memory.buffer, offset, length).slice();
  }
}
