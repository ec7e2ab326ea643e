/**
 * NS16550A UART, as on QEMU's virt board (base 0x1000_0000, 0x100 bytes, byte
 * registers at stride 1, reg-shift 0). Behaviour follows QEMU's hw/char/serial.c,
 * which is what Linux's 8250 driver, OpenSBI and bare-metal guests are tested on:
 *
 * - Transmission is instant: a THR write emits the byte at once, so LSR.THRE and
 *   LSR.TEMT always read 1 and the THR-empty interrupt re-arms after every write.
 * - Received bytes wait in a host-side queue (unbounded, like a chardev that has not
 *   been read yet) and move into the receive FIFO (16 bytes with FCR.FIFOE, else
 *   1 byte) only as it has room, so nothing is ever lost to overrun and clearing the
 *   FIFO with FCR drops at most what real hardware would hold.
 * - With FIFOs enabled, data below the trigger level reports the character-timeout
 *   interrupt (IIR 0xC) at once instead of after four character times, so a guest
 *   never waits for a byte that has already arrived.
 * - Registers repeat every 8 bytes across the window (QEMU masks the offset with 7);
 *   an access wider than a byte reaches the register at its offset, using the low byte.
 *
 * Every register, the receive FIFO and two byte rings live in shared memory (`state`), under one
 * lock, so that each hart's worker thread builds a Uart16550 over the same block and runs the
 * register logic itself (as QEMU's multi-threaded TCG runs MMIO in the vCPU thread): no register
 * access waits for the main thread. The main thread keeps only host I/O: it feeds received bytes
 * into the input ring and takes transmitted bytes from the output ring (`drainOutput`), in the
 * order the guest wrote them, whichever hart wrote them.
 */
import { Mutex } from '../../sync/mutex.ts';
import type { AccessWidth, MmioDevice } from './device.ts';

export const UART_BASE = 0x1000_0000;
export const UART_SIZE = 0x100;
/** The UART's interrupt source on the virt board's PLIC. */
export const UART_IRQ = 10;

// Register offsets (DLAB = 0 unless noted).
const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

// IER bits.
const IER_RDI = 0x01; // receive data available
const IER_THRI = 0x02; // THR empty
const IER_RLSI = 0x04; // receiver line status

// IIR values (bit 0 set = nothing pending); bits 7:6 report FIFOs enabled.
const IIR_NO_INT = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_CTI = 0x0c;
const IIR_FIFO_ENABLED = 0xc0;

// FCR bits.
const FCR_FIFOE = 0x01;
const FCR_CLEAR_RX = 0x02;
const FCR_ITL_SHIFT = 6;
const FIFO_TRIGGER_LEVELS = [1, 4, 8, 14] as const;
const FIFO_DEPTH = 16;

// LCR / MCR / LSR / MSR bits.
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LSR_ERRORS = 0x1e; // OE | PE | FE | BI
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;

export interface UartOptions {
  base?: number;
  /**
   * Where transmitted bytes go, on the one host-side instance (the main thread's); instances in
   * harts' threads have none and leave their bytes in the output ring for it.
   */
  output?: (byte: number) => void;
  /** Called when the interrupt line changes level (wire it to the PLIC source). */
  irq?: (level: boolean) => void;
  /**
   * Where the state lives (UART_STATE_BYTES at `offset`). The first instance initialises it;
   * harts' worker threads attach to it. Default: a private block.
   */
  state?: { buffer: ArrayBufferLike; offset: number; attach?: boolean };
  /** Tell the host-side instance that transmitted bytes wait in the output ring (a doorbell). */
  wakeHost?: () => void;
  /**
   * Run a wait for the host (output ring full) so that it blocks nothing the host needs: a hart
   * that owns guest memory lets go of it meanwhile (sync/owner.ts setAside).
   */
  blockingWait?: (wait: () => void) => void;
}

/** The shared state, in i32 words: the lock alone in its host cache line, registers, FIFO, rings. */
const Slot = {
  LOCK: 0,
  IER: 16,
  LCR: 17,
  MCR: 18,
  FCR: 19,
  SCR: 20,
  DLL: 21,
  DLM: 22,
  /** Line-status error bits (OE/PE/FE/BI), set only by loopback overrun. */
  LSR_ERRORS: 23,
  /** Set when THR becomes empty; cleared by a THR write or by reading IIR that reports it. */
  THR_INTERRUPT_PENDING: 24,
  IIR: 25,
  LEVEL: 26,
  RX_HEAD: 27,
  RX_COUNT: 28,
  RX_FIFO: 32,
  /** Input ring: the host produces (IN_TAIL), whoever holds the lock consumes (IN_HEAD). */
  IN_HEAD: 64,
  IN_TAIL: 80,
  /** Output ring: whoever holds the lock produces (OUT_TAIL), the host consumes (OUT_HEAD). */
  OUT_HEAD: 96,
  OUT_TAIL: 112,
} as const;
const IN_RING_OFFSET = 512;
const IN_RING_BYTES = 4096; // powers of two: slots are index & (size - 1)
const OUT_RING_OFFSET = IN_RING_OFFSET + IN_RING_BYTES;
const OUT_RING_BYTES = 16384;
/**
 * Host-side input backlog past which `pushInput` asks its source to wait: a paste or a script
 * stays whole, and a source that never stops (`yes |`) holds host memory flat.
 */
export const HOST_INPUT_LIMIT = 64 * 1024;
/** Bytes of shared state a UART needs (shared-mem/layout.ts reserves them). */
export const UART_STATE_BYTES = OUT_RING_OFFSET + OUT_RING_BYTES;
/** Longest single sleep of a hart waiting for room in the output ring (the host drains every ~1 ms). */
const OUTPUT_WAIT_MS = 5;

export class Uart16550 implements MmioDevice {
  readonly name = 'uart16550';
  readonly base: number;
  readonly size = UART_SIZE;

  private readonly output: ((byte: number) => void) | undefined;
  private readonly irq: ((level: boolean) => void) | undefined;
  private readonly wakeHost: (() => void) | undefined;
  private readonly blockingWait: (wait: () => void) => void;
  private readonly lock: Mutex;
  private readonly s: Int32Array;
  private readonly inRing: Uint8Array;
  private readonly outRing: Uint8Array;
  /**
   * Host side: received chunks the input ring had no room for yet, oldest first, and how far the
   * first has been taken. Bounded by the caller: `pushInput` says when it is over
   * HOST_INPUT_LIMIT, and the console stops reading its source until `whenInputRoom` fires.
   */
  private hostPending: Uint8Array[] = [];
  private hostPendingTaken = 0;
  private hostPendingBytes = 0;
  private inputRoomWaiters: (() => void)[] = [];

  constructor(options: UartOptions) {
    this.base = options.base ?? UART_BASE;
    this.output = options.output;
    this.irq = options.irq;
    this.wakeHost = options.wakeHost;
    this.blockingWait = options.blockingWait ?? ((wait) => wait());
    const { buffer, offset, attach } = options.state ?? { buffer: new SharedArrayBuffer(UART_STATE_BYTES), offset: 0 };
    this.s = new Int32Array(buffer, offset, OUT_RING_OFFSET / 4);
    this.inRing = new Uint8Array(buffer, offset + IN_RING_OFFSET, IN_RING_BYTES);
    this.outRing = new Uint8Array(buffer, offset + OUT_RING_OFFSET, OUT_RING_BYTES);
    this.lock = new Mutex(new Int32Array(buffer), (offset >>> 2) + Slot.LOCK);
    if (!attach) {
      new Uint8Array(buffer, offset, UART_STATE_BYTES).fill(0);
      const s = this.s;
      s[Slot.LCR] = 0x03; // 8N1, as QEMU resets it
      s[Slot.MCR] = MCR_OUT2;
      s[Slot.DLL] = 0x0c; // 9600 baud from a 1.8432 MHz clock, QEMU's reset divisor
      s[Slot.IIR] = IIR_NO_INT;
      this.lock.with(() => this.update());
    }
  }

  /** Current level of the interrupt line. */
  get irqLevel(): boolean {
    return Atomics.load(this.s, Slot.LEVEL) === 1;
  }

  /** Bytes received from the host and not yet read by the guest. */
  get inputBacklog(): number {
    const inRing = (Atomics.load(this.s, Slot.IN_TAIL) - Atomics.load(this.s, Slot.IN_HEAD)) | 0;
    return Atomics.load(this.s, Slot.RX_COUNT) + inRing + this.hostPendingBytes;
  }

  /**
   * Queue bytes arriving on the serial line (host stdin, a test script); host side only. Every
   * byte is kept; the result is false when the host-side backlog is over HOST_INPUT_LIMIT, and a
   * source that can wait (a stream) should then stop until `whenInputRoom` calls back, as a real
   * line's sender waits for flow control.
   */
  pushInput(bytes: Uint8Array): boolean {
    if (bytes.length > 0) {
      this.hostPending.push(bytes.slice());
      this.hostPendingBytes += bytes.length;
    }
    this.feedInput();
    return this.hostPendingBytes < HOST_INPUT_LIMIT;
  }

  /** Call `callback` once the host-side backlog is under HOST_INPUT_LIMIT (at once if it is). */
  whenInputRoom(callback: () => void): void {
    if (this.hostPendingBytes < HOST_INPUT_LIMIT) callback();
    else this.inputRoomWaiters.push(callback);
  }

  /** Hand every transmitted byte waiting in the output ring to `output`; host side only. */
  drainOutput(): number {
    const output = this.output;
    if (!output) return 0;
    const s = this.s;
    const tail = Atomics.load(s, Slot.OUT_TAIL);
    let head = Atomics.load(s, Slot.OUT_HEAD);
    const drained = (tail - head) | 0;
    for (; head !== tail; head = (head + 1) | 0) output(this.outRing[head & (OUT_RING_BYTES - 1)]!);
    Atomics.store(s, Slot.OUT_HEAD, head);
    if (drained > 0) Atomics.notify(s, Slot.OUT_HEAD);
    return drained;
  }

  /** Host side, between slices: move waiting input in and transmitted bytes out. */
  tick(): void {
    this.feedInput();
    this.drainOutput();
  }

  read(offset: number, _width: AccessWidth): bigint {
    this.lock.acquire();
    try {
      const reg = offset & 7;
      const value = this.readRegister(reg);
      this.update(reg === RBR_THR_DLL || reg === IIR_FCR);
      return BigInt(value);
    } finally {
      this.lock.release();
    }
  }

  write(offset: number, _width: AccessWidth, value: bigint): void {
    this.lock.acquire();
    try {
      const reg = offset & 7;
      this.writeRegister(reg, Number(value & 0xffn));
      this.update(reg === RBR_THR_DLL || reg === IER_DLM || reg === IIR_FCR);
    } finally {
      this.lock.release();
    }
  }

  /**
   * Move host input into the input ring as far as it has room, then into the FIFO. The lock is
   * taken by trying, draining output between tries: a hart may hold it while it waits for room
   * in the output ring, which only this thread makes.
   */
  private feedInput(): void {
    const s = this.s;
    if (this.hostPendingBytes > 0) {
      const head = Atomics.load(s, Slot.IN_HEAD);
      let tail = Atomics.load(s, Slot.IN_TAIL);
      while (this.hostPending.length > 0 && ((tail - head) | 0) < IN_RING_BYTES) {
        const chunk = this.hostPending[0]!;
        while (this.hostPendingTaken < chunk.length && ((tail - head) | 0) < IN_RING_BYTES) {
          this.inRing[tail & (IN_RING_BYTES - 1)] = chunk[this.hostPendingTaken++]!;
          this.hostPendingBytes--;
          tail = (tail + 1) | 0;
        }
        if (this.hostPendingTaken === chunk.length) {
          this.hostPending.shift();
          this.hostPendingTaken = 0;
        }
      }
      Atomics.store(s, Slot.IN_TAIL, tail);
      if (this.hostPendingBytes < HOST_INPUT_LIMIT && this.inputRoomWaiters.length > 0) {
        const waiters = this.inputRoomWaiters;
        this.inputRoomWaiters = [];
        for (const waiter of waiters) waiter();
      }
    }
    if (Atomics.load(s, Slot.IN_TAIL) === Atomics.load(s, Slot.IN_HEAD)) return;
    while (!this.lock.tryAcquire()) this.drainOutput();
    try {
      this.update(this.refill() > 0);
    } finally {
      this.lock.release();
    }
  }

  private readRegister(reg: number): number {
    const s = this.s;
    switch (reg) {
      case RBR_THR_DLL: {
        if (s[Slot.LCR]! & LCR_DLAB) return s[Slot.DLL]!;
        const byte = this.rxShift();
        this.refill();
        return byte;
      }
      case IER_DLM:
        return s[Slot.LCR]! & LCR_DLAB ? s[Slot.DLM]! : s[Slot.IER]!;
      case IIR_FCR: {
        // IIR was computed by the last update(); reading it acknowledges THRE.
        const iir = s[Slot.IIR]!;
        if ((iir & 0x0f) === IIR_THRI) s[Slot.THR_INTERRUPT_PENDING] = 0;
        return iir;
      }
      case LCR:
        return s[Slot.LCR]!;
      case MCR:
        return s[Slot.MCR]!;
      case LSR: {
        const lsr = this.lsr();
        s[Slot.LSR_ERRORS] = 0; // error bits clear on read
        return lsr;
      }
      case MSR:
        return this.msr();
      case SCR:
        return s[Slot.SCR]!;
      default:
        return 0;
    }
  }

  private writeRegister(reg: number, v: number): void {
    const s = this.s;
    switch (reg) {
      case RBR_THR_DLL:
        if (s[Slot.LCR]! & LCR_DLAB) {
          s[Slot.DLL] = v;
        } else {
          this.transmit(v);
        }
        return;
      case IER_DLM:
        if (s[Slot.LCR]! & LCR_DLAB) {
          s[Slot.DLM] = v;
        } else {
          const changed = (s[Slot.IER]! ^ v) & IER_THRI;
          s[Slot.IER] = v & 0x0f;
          // Enabling THRI while THR is empty raises the interrupt at once (the
          // transmitter is always empty here); disabling it drops the request.
          if (changed) s[Slot.THR_INTERRUPT_PENDING] = s[Slot.IER]! & IER_THRI ? 1 : 0;
        }
        return;
      case IIR_FCR: {
        const wasEnabled = (s[Slot.FCR]! & FCR_FIFOE) !== 0;
        const enable = (v & FCR_FIFOE) !== 0;
        // Toggling FIFO mode resets the FIFOs, as on the real chip.
        if ((v & FCR_CLEAR_RX) || wasEnabled !== enable) s[Slot.RX_COUNT] = 0;
        // Bits 1-2 are self-clearing; keep enable, DMA mode and trigger level.
        s[Slot.FCR] = v & 0xc9;
        this.refill();
        return;
      }
      case LCR:
        s[Slot.LCR] = v;
        return;
      case MCR:
        s[Slot.MCR] = v & 0x1f;
        return;
      case LSR:
      case MSR:
        return; // read-only (factory test writes are ignored, as in QEMU)
      case SCR:
        s[Slot.SCR] = v;
        return;
    }
  }

  private transmit(byte: number): void {
    const s = this.s;
    if (s[Slot.MCR]! & MCR_LOOP) {
      // Loopback: the byte comes straight back to the receiver (Linux's 8250 probe uses this).
      if (s[Slot.RX_COUNT]! < this.fifoCapacity()) this.rxPush(byte);
      else s[Slot.LSR_ERRORS] = s[Slot.LSR_ERRORS]! | 0x02; // overrun
    } else {
      this.emit(byte);
    }
    // The shift register drains at once, so THR is empty again and THRE re-arms.
    s[Slot.THR_INTERRUPT_PENDING] = 1;
  }

  /** Append a byte to the output ring, waiting for the host to make room if it is full. */
  private emit(byte: number): void {
    const s = this.s;
    const tail = Atomics.load(s, Slot.OUT_TAIL);
    for (let head = Atomics.load(s, Slot.OUT_HEAD); ((tail - head) | 0) >= OUT_RING_BYTES; head = Atomics.load(s, Slot.OUT_HEAD)) {
      if (this.output) this.drainOutput();
      else {
        this.wakeHost?.();
        this.blockingWait(() => Atomics.wait(s, Slot.OUT_HEAD, head, OUTPUT_WAIT_MS));
      }
    }
    const wasEmpty = Atomics.load(s, Slot.OUT_HEAD) === tail;
    this.outRing[tail & (OUT_RING_BYTES - 1)] = byte;
    Atomics.store(s, Slot.OUT_TAIL, (tail + 1) | 0);
    // The host side passes its own bytes on at once (after any a hart left before them).
    if (this.output) this.drainOutput();
    else if (wasEmpty) this.wakeHost?.();
  }

  private fifoCapacity(): number {
    return this.s[Slot.FCR]! & FCR_FIFOE ? FIFO_DEPTH : 1;
  }

  private rxPush(byte: number): void {
    const s = this.s;
    s[Slot.RX_FIFO + ((s[Slot.RX_HEAD]! + s[Slot.RX_COUNT]!) & (FIFO_DEPTH - 1))] = byte;
    s[Slot.RX_COUNT] = s[Slot.RX_COUNT]! + 1;
  }

  /** The oldest byte of the receive FIFO, removed (0 when it is empty). */
  private rxShift(): number {
    const s = this.s;
    if (s[Slot.RX_COUNT] === 0) return 0;
    const byte = s[Slot.RX_FIFO + s[Slot.RX_HEAD]!]!;
    s[Slot.RX_HEAD] = (s[Slot.RX_HEAD]! + 1) & (FIFO_DEPTH - 1);
    s[Slot.RX_COUNT] = s[Slot.RX_COUNT]! - 1;
    return byte;
  }

  /** Move host input from the input ring into the receive FIFO as far as it has room; returns how many bytes moved. */
  private refill(): number {
    const s = this.s;
    if (s[Slot.MCR]! & MCR_LOOP) return 0; // in loopback the line is disconnected from the host
    const capacity = this.fifoCapacity();
    const tail = Atomics.load(s, Slot.IN_TAIL);
    const start = s[Slot.IN_HEAD]!;
    let head = start;
    while (s[Slot.RX_COUNT]! < capacity && head !== tail) {
      this.rxPush(this.inRing[head & (IN_RING_BYTES - 1)]!);
      head = (head + 1) | 0;
    }
    Atomics.store(s, Slot.IN_HEAD, head);
    return (head - start) | 0;
  }

  private lsr(): number {
    return (this.s[Slot.RX_COUNT]! > 0 ? LSR_DR : 0) | LSR_THRE | LSR_TEMT | this.s[Slot.LSR_ERRORS]!;
  }

  private msr(): number {
    const mcr = this.s[Slot.MCR]!;
    if (mcr & MCR_LOOP) {
      // Loopback wires the modem outputs to the inputs: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
      return (mcr & MCR_RTS ? MSR_CTS : 0) | (mcr & MCR_DTR ? MSR_DSR : 0) | (mcr & MCR_OUT1 ? MSR_RI : 0) | (mcr & MCR_OUT2 ? MSR_DCD : 0);
    }
    // No modem attached: carrier, data-set-ready and clear-to-send always asserted (as QEMU).
    return MSR_DCD | MSR_DSR | MSR_CTS;
  }

  /**
   * Recompute IIR by 16550 priority and drive the interrupt line (the lock is held). `signal`: tell
   * the PLIC the level even if it did not change — where QEMU's serial.c calls serial_update_irq
   * (received data, an RBR or IIR read, a THR, IER or FCR write), since its PLIC takes each such
   * call as a new request (plic.ts). Elsewhere only a change is signalled.
   */
  private update(signal = false): void {
    this.refill();
    const s = this.s;
    const fcr = s[Slot.FCR]!;
    const ier = s[Slot.IER]!;
    const fifo = (fcr & FCR_FIFOE) !== 0;
    let id = IIR_NO_INT;
    if (ier & IER_RLSI && s[Slot.LSR_ERRORS]! & LSR_ERRORS) {
      id = IIR_RLSI;
    } else if (ier & IER_RDI && s[Slot.RX_COUNT]! > 0) {
      const trigger = FIFO_TRIGGER_LEVELS[(fcr >> FCR_ITL_SHIFT) & 3]!;
      id = fifo && s[Slot.RX_COUNT]! < trigger ? IIR_CTI : IIR_RDI;
    } else if (ier & IER_THRI && s[Slot.THR_INTERRUPT_PENDING]) {
      id = IIR_THRI;
    }
    // Modem-status interrupts (IER_MSI, IIR 0x0) never fire: the modem lines never change
    // outside loopback, and no guest we run relies on loopback delta bits.
    s[Slot.IIR] = id | (fifo ? IIR_FIFO_ENABLED : 0);
    const level = id !== IIR_NO_INT ? 1 : 0;
    if (level !== s[Slot.LEVEL] || signal) {
      Atomics.store(s, Slot.LEVEL, level);
      this.irq?.(level === 1);
    }
  }
}
