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
 */
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
  /** Called with each transmitted byte. */
  output: (byte: number) => void;
  /** Called when the interrupt line changes level (wire it to the PLIC source). */
  irq?: (level: boolean) => void;
  /**
   * Called after every access and input with what a hart in another thread may do without a round
   * trip to this device (sync/mailbox.ts MmioShortcuts): post THR writes (transmitting, outside
   * loopback and with DLAB clear, only emits a byte and re-arms THRE: nothing a later read could
   * see early or late), and read LSR from a copy (undefined while an error bit is set, since
   * reading LSR clears those).
   */
  publish?: (state: UartShortcuts) => void;
}

export interface UartShortcuts {
  thrWritesPostable: boolean;
  lsr: number | undefined;
}

/** Offsets of the registers UartShortcuts speaks of. */
export const UART_THR_OFFSET = RBR_THR_DLL;
export const UART_LSR_OFFSET = LSR;

export class Uart16550 implements MmioDevice {
  readonly name = 'uart16550';
  readonly base: number;
  readonly size = UART_SIZE;

  private readonly output: (byte: number) => void;
  private readonly irq: ((level: boolean) => void) | undefined;
  private readonly publish: ((state: UartShortcuts) => void) | undefined;

  private ier = 0;
  private lcr = 0x03; // 8N1, as QEMU resets it
  private mcr = MCR_OUT2;
  private fcr = 0;
  private scr = 0;
  private dll = 0x0c; // 9600 baud from a 1.8432 MHz clock, QEMU's reset divisor
  private dlm = 0;
  /** Line-status error bits (OE/PE/FE/BI); never set today, kept so RLSI is honest. */
  private lsrErrors = 0;
  /** Set when THR becomes empty; cleared by a THR write or by reading IIR that reports it. */
  private thrInterruptPending = false;
  private rxFifo: number[] = [];
  private pending: number[] = [];
  private pendingHead = 0;
  private iir = IIR_NO_INT;
  private level = false;

  constructor(options: UartOptions) {
    this.base = options.base ?? UART_BASE;
    this.output = options.output;
    this.irq = options.irq;
    this.publish = options.publish;
    this.update();
  }

  /** Current level of the interrupt line. */
  get irqLevel(): boolean {
    return this.level;
  }

  /** Bytes received from the host and not yet read by the guest. */
  get inputBacklog(): number {
    return this.rxFifo.length + this.pending.length - this.pendingHead;
  }

  /** Queue bytes arriving on the serial line (host stdin, a test script). */
  pushInput(bytes: Uint8Array): void {
    for (const b of bytes) this.pending.push(b);
    this.refill();
    this.update();
  }

  read(offset: number, _width: AccessWidth): bigint {
    const value = this.readRegister(offset & 7);
    this.update();
    return BigInt(value);
  }

  write(offset: number, _width: AccessWidth, value: bigint): void {
    this.writeRegister(offset & 7, Number(value & 0xffn));
    this.update();
  }

  private readRegister(reg: number): number {
    switch (reg) {
      case RBR_THR_DLL: {
        if (this.lcr & LCR_DLAB) return this.dll;
        const byte = this.rxFifo.shift() ?? 0;
        this.refill();
        return byte;
      }
      case IER_DLM:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR_FCR: {
        // this.iir was computed by the last update(); reading it acknowledges THRE.
        const iir = this.iir;
        if ((iir & 0x0f) === IIR_THRI) this.thrInterruptPending = false;
        return iir;
      }
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR: {
        const lsr = this.lsr();
        this.lsrErrors = 0; // error bits clear on read
        return lsr;
      }
      case MSR:
        return this.msr();
      case SCR:
        return this.scr;
      default:
        return 0;
    }
  }

  private writeRegister(reg: number, v: number): void {
    switch (reg) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) {
          this.dll = v;
        } else {
          this.transmit(v);
        }
        return;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) {
          this.dlm = v;
        } else {
          const changed = (this.ier ^ v) & IER_THRI;
          this.ier = v & 0x0f;
          // Enabling THRI while THR is empty raises the interrupt at once (the
          // transmitter is always empty here); disabling it drops the request.
          if (changed) this.thrInterruptPending = (this.ier & IER_THRI) !== 0;
        }
        return;
      case IIR_FCR: {
        const wasEnabled = (this.fcr & FCR_FIFOE) !== 0;
        const enable = (v & FCR_FIFOE) !== 0;
        // Toggling FIFO mode resets the FIFOs, as on the real chip.
        if ((v & FCR_CLEAR_RX) || wasEnabled !== enable) this.rxFifo = [];
        // Bits 1-2 are self-clearing; keep enable, DMA mode and trigger level.
        this.fcr = v & 0xc9;
        this.refill();
        return;
      }
      case LCR:
        this.lcr = v;
        return;
      case MCR:
        this.mcr = v & 0x1f;
        return;
      case LSR:
      case MSR:
        return; // read-only (factory test writes are ignored, as in QEMU)
      case SCR:
        this.scr = v;
        return;
    }
  }

  private transmit(byte: number): void {
    if (this.mcr & MCR_LOOP) {
      // Loopback: the byte comes straight back to the receiver (Linux's 8250 probe uses this).
      if (this.rxFifo.length < this.fifoCapacity()) this.rxFifo.push(byte);
      else this.lsrErrors |= 0x02; // overrun
    } else {
      this.output(byte);
    }
    // The shift register drains at once, so THR is empty again and THRE re-arms.
    this.thrInterruptPending = true;
  }

  private fifoCapacity(): number {
    return this.fcr & FCR_FIFOE ? FIFO_DEPTH : 1;
  }

  /** Move host-side input into the receive FIFO as far as it has room. */
  private refill(): void {
    if (this.mcr & MCR_LOOP) return; // in loopback the line is disconnected from the host
    const capacity = this.fifoCapacity();
    while (this.rxFifo.length < capacity && this.pendingHead < this.pending.length) {
      this.rxFifo.push(this.pending[this.pendingHead++]!);
    }
    if (this.pendingHead > 4096 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
  }

  private lsr(): number {
    return (this.rxFifo.length > 0 ? LSR_DR : 0) | LSR_THRE | LSR_TEMT | this.lsrErrors;
  }

  private msr(): number {
    if (this.mcr & MCR_LOOP) {
      // Loopback wires the modem outputs to the inputs: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
      return (
        (this.mcr & MCR_RTS ? MSR_CTS : 0) |
        (this.mcr & MCR_DTR ? MSR_DSR : 0) |
        (this.mcr & MCR_OUT1 ? MSR_RI : 0) |
        (this.mcr & MCR_OUT2 ? MSR_DCD : 0)
      );
    }
    // No modem attached: carrier, data-set-ready and clear-to-send always asserted (as QEMU).
    return MSR_DCD | MSR_DSR | MSR_CTS;
  }

  /** Recompute IIR by 16550 priority and drive the interrupt line. */
  private update(): void {
    this.refill();
    const fifo = (this.fcr & FCR_FIFOE) !== 0;
    let id = IIR_NO_INT;
    if (this.ier & IER_RLSI && this.lsrErrors & LSR_ERRORS) {
      id = IIR_RLSI;
    } else if (this.ier & IER_RDI && this.rxFifo.length > 0) {
      const trigger = FIFO_TRIGGER_LEVELS[(this.fcr >> FCR_ITL_SHIFT) & 3]!;
      id = fifo && this.rxFifo.length < trigger ? IIR_CTI : IIR_RDI;
    } else if (this.ier & IER_THRI && this.thrInterruptPending) {
      id = IIR_THRI;
    }
    // Modem-status interrupts (IER_MSI, IIR 0x0) never fire: the modem lines never change
    // outside loopback, and no guest we run relies on loopback delta bits.
    this.iir = id | (fifo ? IIR_FIFO_ENABLED : 0);
    const level = id !== IIR_NO_INT;
    if (level !== this.level) {
      this.level = level;
      this.irq?.(level);
    }
    this.publish?.({
      thrWritesPostable: (this.lcr & LCR_DLAB) === 0 && (this.mcr & MCR_LOOP) === 0,
      lsr: this.lsrErrors === 0 ? this.lsr() : undefined,
    });
  }
}
