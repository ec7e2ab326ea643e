/**
 * The devices as a hart in a worker thread reaches them. The CLINT, the PLIC, the console UART and
 * virtio-blk's interrupt status keep their registers in shared memory, so the hart builds its own
 * view of each and runs the register logic on its own thread under the device's lock, as QEMU's
 * multi-threaded TCG runs MMIO in the vCPU thread: a running kernel's timer, interrupt claim and
 * complete, console output and per-request virtio registers cost no round trip. virtio's
 * QueueNotify is posted to the main thread, which owns the disk file (it answers nothing, and the
 * guest learns of completion by interrupt). Everything else (device setup, the finisher, the boot
 * ROM) goes through the hart's mailbox to the main thread, which serves it in order after the
 * hart's posted writes.
 */
import { ControlSlot, DeviceStateSlot, type MemoryLayout } from "../shared-mem/layout.ts";
import { MmioMailboxClient } from "../sync/mailbox.ts";
import { setPendingInterrupts } from "../sync/hart-signals.ts";
import type { AccessWidth, MachineControl } from "./devices/device.ts";
import { Clint, CLINT_BASE, CLINT_SIZE } from "./devices/clint.ts";
import { Plic, PLIC_BASE, PLIC_SIZE } from "./devices/plic.ts";
import { Uart16550, UART_BASE, UART_IRQ, UART_SIZE } from "./devices/uart.ts";
import {
  VIRTIO_BLK_BASE,
  VIRTIO_BLK_IRQ,
  VIRTIO_BLK_SIZE,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_QUEUE_NOTIFY,
  VirtioInterruptStatus,
} from "./devices/virtio-blk.ts";

export interface HartDevicesOptions {
  layout: MemoryLayout;
  buffer: ArrayBufferLike;
  hart: number;
  /**
   * Run a call that waits for the main thread so that it blocks nothing the main thread needs (a
   * hart that owns guest memory lets go of it meanwhile: sync/owner.ts setAside).
   */
  whileWaiting: <T>(call: () => T) => T;
}

export class HartDevices {
  readonly clint: Clint;
  private readonly plic: Plic;
  private readonly uart: Uart16550;
  private readonly virtioInterrupt: VirtioInterruptStatus;
  private readonly mailbox: MmioMailboxClient;
  private readonly whileWaiting: <T>(call: () => T) => T;

  constructor(options: HartDevicesOptions) {
    const { layout, buffer, hart } = options;
    const words = new Int32Array(buffer);
    const control: MachineControl = {
      requestExit: () => {},
      setHartInterrupt: (h, bit, level) => void setPendingInterrupts(words, layout.hartOffset(h), 1 << bit, level ? 1 << bit : 0),
    };
    const state = (slot: number) => ({ buffer, offset: layout.deviceStateOffset + slot, attach: true });
    this.whileWaiting = options.whileWaiting;
    this.clint = new Clint({ harts: layout.harts, control, state: { buffer, offset: layout.controlOffset + ControlSlot.CLINT, attach: true } });
    this.plic = new Plic({ harts: layout.harts, control, state: state(DeviceStateSlot.PLIC) });
    const doorbell = (layout.controlOffset + ControlSlot.DOORBELL) >>> 2;
    this.uart = new Uart16550({
      irq: (level) => this.plic.setIrq(UART_IRQ, level),
      state: state(DeviceStateSlot.UART),
      wakeHost: () => {
        Atomics.add(words, doorbell, 1);
        Atomics.notify(words, doorbell);
      },
      blockingWait: (wait) => this.whileWaiting(wait),
    });
    this.virtioInterrupt = new VirtioInterruptStatus(state(DeviceStateSlot.VIRTIO_BLK_IRQ), (level) => this.plic.setIrq(VIRTIO_BLK_IRQ, level));
    this.mailbox = new MmioMailboxClient(buffer, layout.hartOffset(hart), layout.controlOffset);
  }

  read(addr: number, width: AccessWidth): bigint | undefined {
    if (addr >= CLINT_BASE && addr < CLINT_BASE + CLINT_SIZE) return this.clint.read(addr - CLINT_BASE, width);
    if (addr >= PLIC_BASE && addr < PLIC_BASE + PLIC_SIZE) return addr + width <= PLIC_BASE + PLIC_SIZE ? this.plic.read(addr - PLIC_BASE, width) : undefined;
    if (addr >= UART_BASE && addr + width <= UART_BASE + UART_SIZE) return this.uart.read(addr - UART_BASE, width);
    if (addr === VIRTIO_BLK_BASE + VIRTIO_MMIO_INTERRUPT_STATUS && width === 4 && this.virtioInterrupt.present) {
      return BigInt(this.virtioInterrupt.value >>> 0);
    }
    return this.whileWaiting(() => this.mailbox.read(addr, width));
  }

  write(addr: number, width: AccessWidth, value: bigint): boolean {
    if (addr >= CLINT_BASE && addr < CLINT_BASE + CLINT_SIZE) {
      this.clint.write(addr - CLINT_BASE, width, value);
      return true;
    }
    if (addr >= PLIC_BASE && addr < PLIC_BASE + PLIC_SIZE) {
      if (addr + width > PLIC_BASE + PLIC_SIZE) return false;
      this.plic.write(addr - PLIC_BASE, width, value);
      return true;
    }
    if (addr >= UART_BASE && addr + width <= UART_BASE + UART_SIZE) {
      this.uart.write(addr - UART_BASE, width, value);
      return true;
    }
    if (width === 4 && addr >= VIRTIO_BLK_BASE && addr < VIRTIO_BLK_BASE + VIRTIO_BLK_SIZE && this.virtioInterrupt.present) {
      if (addr === VIRTIO_BLK_BASE + VIRTIO_MMIO_INTERRUPT_ACK) {
        this.virtioInterrupt.acknowledge(Number(value & 0xffff_ffffn));
        return true;
      }
      if (addr === VIRTIO_BLK_BASE + VIRTIO_MMIO_QUEUE_NOTIFY && this.mailbox.tryPost(addr, width, value)) return true;
    }
    return this.whileWaiting(() => this.mailbox.write(addr, width, value));
  }
}
