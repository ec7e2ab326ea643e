/**
 * hypervisor/hart-devices.ts: a hart's worker thread runs a kernel's whole interrupt path (PLIC
 * claim and complete, UART registers, virtio's interrupt status and acknowledge) itself. The main
 * thread stays blocked in Atomics.wait throughout, so any access that needed it would hang the
 * worker and the test would fail on the wait's timeout.
 */
import test from "ava";
import { Worker } from "node:worker_threads";
import { computeLayout, createSharedMemory, DeviceStateSlot, HartSlot } from "../shared-mem/layout.ts";
import { setPendingInterrupts } from "../sync/hart-signals.ts";
import type { MachineControl } from "../hypervisor/devices/device.ts";
import { Plic, PLIC_BASE } from "../hypervisor/devices/plic.ts";
import { Uart16550, UART_BASE, UART_IRQ } from "../hypervisor/devices/uart.ts";
import { VirtioInterruptStatus, VIRTIO_BLK_BASE, VIRTIO_BLK_IRQ } from "../hypervisor/devices/virtio-blk.ts";

const SEIP = 1 << 9;

test("a hart's worker claims, completes and drives the UART and virtio interrupt without the main thread", async (t) => {
  const layout = computeLayout({ ramSize: 1 << 20, copies: 1, spareFrames: 0, harts: 2 });
  const memory = createSharedMemory(layout);
  const words = new Int32Array(memory.buffer);
  const control: MachineControl = {
    requestExit: () => {},
    setHartInterrupt: (h, bit, level) => void setPendingInterrupts(words, layout.hartOffset(h), 1 << bit, level ? 1 << bit : 0),
  };
  const state = (slot: number) => ({ buffer: memory.buffer, offset: layout.deviceStateOffset + slot });
  const plic = new Plic({ harts: 2, control, state: state(DeviceStateSlot.PLIC) });
  const out: number[] = [];
  const uart = new Uart16550({ output: (b) => out.push(b), irq: (l) => plic.setIrq(UART_IRQ, l), state: state(DeviceStateSlot.UART) });
  const virtio = new VirtioInterruptStatus(state(DeviceStateSlot.VIRTIO_BLK_IRQ), (l) => plic.setIrq(VIRTIO_BLK_IRQ, l));
  virtio.raise(1); // a used buffer, as the device raises it on the main thread
  uart.pushInput(new TextEncoder().encode("k"));

  const sClaim = PLIC_BASE + 0x20_0000 + 0x1000 * 1 + 4; // hart 0, S-mode context
  const script = [
    ["write", PLIC_BASE + 4 * UART_IRQ, 4, 2],
    ["write", PLIC_BASE + 4 * VIRTIO_BLK_IRQ, 4, 1],
    ["write", PLIC_BASE + 0x2000 + 0x80 * 1, 4, (1 << UART_IRQ) | (1 << VIRTIO_BLK_IRQ)],
    ["mip"], // virtio is pending and now enabled: SEIP
    ["write", UART_BASE + 1, 1, 0x03], // IER: receive data and THR empty
    ["read", sClaim, 4], // the UART first (priority 2)
    ["read", UART_BASE + 2, 1], // IIR: received data
    ["read", UART_BASE + 0, 1], // RBR: "k"
    ["write", UART_BASE + 0, 1, 0x68], // "h"
    ["write", UART_BASE + 0, 1, 0x69], // "i"
    ["write", sClaim, 4, UART_IRQ], // complete: THRE still asserted, so pending again at once
    ["read", sClaim, 4], // the UART again
    ["read", UART_BASE + 2, 1], // IIR: THR empty, which reading acknowledges
    ["write", sClaim, 4, UART_IRQ],
    ["read", sClaim, 4], // now virtio
    ["read", VIRTIO_BLK_BASE + 0x60, 4], // InterruptStatus
    ["write", VIRTIO_BLK_BASE + 0x64, 4, 1], // InterruptACK
    ["write", sClaim, 4, VIRTIO_BLK_IRQ],
    ["read", sClaim, 4], // nothing left
    ["mip"],
  ];
  const doneIndex = (layout.controlOffset + 2048) >> 2;
  const worker = new Worker(new URL("./helpers/hart-devices-worker.mjs", import.meta.url), {
    workerData: { layout: { ramSize: layout.ramSize, copies: 1, spareFrames: 0, harts: 2 }, memory, doneIndex, script },
  });
  const results = new Promise<number[]>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  // Blocked: no event loop, no mailbox serving, until the worker is done.
  const waited = Atomics.wait(words, doneIndex, 0, 30_000);
  t.not(waited, "timed-out", "the hart's accesses needed the main thread");
  t.deepEqual(await results, [SEIP, UART_IRQ, 0x04, 0x6b, UART_IRQ, 0x02, VIRTIO_BLK_IRQ, 1, 0, 0]);
  uart.drainOutput();
  t.is(new TextDecoder().decode(Uint8Array.from(out)), "hi");
  t.is(Atomics.load(words, (layout.hartOffset(0) + HartSlot.MIP) >> 2) & SEIP, 0);
  t.false(virtio.level);
  await worker.terminate();
});
