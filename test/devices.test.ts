import test from 'ava';
import { Bus } from '../hypervisor/bus.ts';
import { Clint } from '../hypervisor/devices/clint.ts';
import type { AccessWidth, MachineControl, MmioDevice } from '../hypervisor/devices/device.ts';
import { Htif } from '../hypervisor/devices/htif.ts';
import { SifiveTest } from '../hypervisor/devices/sifive-test.ts';
import { Uart16550, UART_STATE_BYTES } from '../hypervisor/devices/uart.ts';
import { PLIC_STATE_BYTES } from '../hypervisor/devices/plic.ts';
import { VIRTIO_IRQ_STATE_BYTES } from '../hypervisor/devices/virtio-blk.ts';
import { DEVICE_STATE_SIZE, DeviceStateSlot } from '../shared-mem/layout.ts';

class FakeControl implements MachineControl {
  exits: number[] = [];
  /** Last level per "hart:bit". */
  irqs = new Map<string, boolean>();
  calls = 0;
  requestExit(code: number): void {
    this.exits.push(code);
  }
  setHartInterrupt(hart: number, bit: number, level: boolean): void {
    this.calls++;
    this.irqs.set(`${hart}:${bit}`, level);
  }
  level(hart: number, bit: number): boolean | undefined {
    return this.irqs.get(`${hart}:${bit}`);
  }
}

// ---- Bus ----

class Ram implements MmioDevice {
  readonly name: string;
  ticks = 0;
  last: [number, AccessWidth, bigint] | undefined;
  constructor(
    readonly base: number,
    readonly size: number,
    name = 'dev',
  ) {
    this.name = name;
  }
  read(offset: number, width: AccessWidth): bigint {
    return BigInt(offset * 16 + width);
  }
  write(offset: number, width: AccessWidth, value: bigint): void {
    this.last = [offset, width, value];
  }
  tick(): void {
    this.ticks++;
  }
}

test('bus routes by address, rejects overlaps, faults outside windows', (t) => {
  const bus = new Bus();
  const a = new Ram(0x1000, 0x100, 'a');
  const b = new Ram(0x1100, 0x100, 'b');
  bus.add(a);
  bus.add(b);
  t.throws(() => bus.add(new Ram(0x10f0, 0x20, 'c')), { message: /device c .* overlaps device a/ });
  t.throws(() => bus.add(new Ram(0x0f00, 0x1000, 'd')), { message: /overlaps/ });
  t.is(bus.find(0x10ff), a);
  t.is(bus.find(0x1100), b);
  t.is(bus.find(0x1200), undefined);
  t.is(bus.read(0x1004, 4), BigInt(4 * 16 + 4));
  t.is(bus.read(0x2000, 4), undefined);
  t.is(bus.read(0x10fc, 8), undefined, 'an access running off the end of a window faults');
  t.true(bus.write(0x1108, 8, 42n));
  t.deepEqual(b.last, [8, 8, 42n]);
  t.false(bus.write(0x0, 1, 1n));
  bus.tick();
  t.is(a.ticks, 1);
  t.is(b.ticks, 1);
});

// ---- UART ----

const RBR = 0;
const IER = 1;
const IIR = 2;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

/** Records the line's changes of level (`levels`) and every signal to the PLIC (`signals`). */
function lineRecorder(): { levels: boolean[]; signals: boolean[]; irq: (level: boolean) => void } {
  const levels: boolean[] = [];
  const signals: boolean[] = [];
  let last = false;
  return {
    levels,
    signals,
    irq: (level) => {
      signals.push(level);
      if (level !== last) levels.push(level);
      last = level;
    },
  };
}

function makeUart(): { uart: Uart16550; out: number[]; levels: boolean[]; signals: boolean[] } {
  const out: number[] = [];
  const line = lineRecorder();
  const uart = new Uart16550({ output: (b) => out.push(b), irq: line.irq });
  return { uart, out, levels: line.levels, signals: line.signals };
}

const rd = (u: Uart16550, reg: number): number => Number(u.read(reg, 1));
const wr = (u: Uart16550, reg: number, v: number): void => u.write(reg, 1, BigInt(v));

test('uart: transmit, LSR and reset state', (t) => {
  const { uart, out } = makeUart();
  t.is(uart.base, 0x1000_0000);
  t.is(uart.size, 0x100);
  t.is(rd(uart, LSR), 0x60, 'THRE | TEMT, no data');
  t.is(rd(uart, IIR), 0x01, 'no interrupt pending');
  t.is(rd(uart, MSR), 0xb0, 'DCD | DSR | CTS');
  for (const c of 'hi\n') wr(uart, RBR, c.charCodeAt(0));
  t.deepEqual(out, [0x68, 0x69, 0x0a]);
  t.is(rd(uart, LSR), 0x60);
  wr(uart, SCR, 0x5a);
  t.is(rd(uart, SCR), 0x5a);
  t.is(rd(uart, 8 + SCR), 0x5a, 'registers repeat every 8 bytes');
  t.is(Number(uart.read(LSR, 4)), 0x60, 'wider reads reach the byte register');
});

test('uart: DLAB selects the divisor latch', (t) => {
  const { uart, out } = makeUart();
  wr(uart, LCR, 0x83);
  wr(uart, RBR, 0x01); // DLL
  wr(uart, IER, 0x02); // DLM
  t.deepEqual(out, [], 'a DLL write does not transmit');
  t.is(rd(uart, RBR), 0x01);
  t.is(rd(uart, IER), 0x02);
  uart.pushInput(new Uint8Array([0x41]));
  t.is(rd(uart, RBR), 0x01, 'DLAB hides the receive buffer');
  wr(uart, LCR, 0x03);
  t.is(rd(uart, LCR), 0x03);
  t.is(rd(uart, IER), 0x00, 'the interrupt enable register is separate from DLM');
  t.is(rd(uart, RBR), 0x41);
  wr(uart, RBR, 0x42);
  t.deepEqual(out, [0x42]);
});

test('uart: input FIFO order and LSR.DR', (t) => {
  const { uart } = makeUart();
  uart.pushInput(new TextEncoder().encode('hello'));
  uart.pushInput(new TextEncoder().encode('!'));
  t.is(uart.inputBacklog, 6);
  let text = '';
  while (rd(uart, LSR) & 1) text += String.fromCharCode(rd(uart, RBR));
  t.is(text, 'hello!');
  t.is(rd(uart, LSR) & 1, 0);
  t.is(rd(uart, RBR), 0, 'reading an empty receiver gives 0');
});

test('uart: receive interrupt, IIR value, irq level', (t) => {
  const { uart, levels } = makeUart();
  wr(uart, IER, 0x01);
  t.false(uart.irqLevel);
  uart.pushInput(new Uint8Array([0x61, 0x62]));
  t.true(uart.irqLevel);
  t.deepEqual(levels, [true]);
  t.is(rd(uart, IIR), 0x04, 'receive data available (FIFO off)');
  t.is(rd(uart, RBR), 0x61);
  t.true(uart.irqLevel, 'still data');
  t.is(rd(uart, RBR), 0x62);
  t.false(uart.irqLevel);
  t.is(rd(uart, IIR), 0x01);
  t.deepEqual(levels, [true, false]);
});

test('uart: FIFO mode reports trigger level and timeout, FCR clears at most the FIFO', (t) => {
  const { uart } = makeUart();
  wr(uart, FCR, 0x81); // enable, trigger level 8
  wr(uart, IER, 0x01);
  uart.pushInput(new Uint8Array([1, 2, 3]));
  t.is(rd(uart, IIR), 0xcc, 'below the trigger level: character timeout');
  uart.pushInput(new Uint8Array([4, 5, 6, 7, 8]));
  t.is(rd(uart, IIR), 0xc4, 'at the trigger level: receive data available');
  // 20 bytes more: 16 fit in the FIFO, the rest wait on the host side.
  uart.pushInput(new Uint8Array(Array.from({ length: 20 }, (_, i) => 100 + i)));
  wr(uart, FCR, 0x83); // clear receive FIFO
  const got: number[] = [];
  while (rd(uart, LSR) & 1) got.push(rd(uart, RBR));
  // FIFO held bytes 1..8 and 100..107; the clear drops those, 108..119 survive.
  t.deepEqual(got, Array.from({ length: 12 }, (_, i) => 108 + i));
  t.false(uart.irqLevel);
});

test('uart: THR-empty interrupt, acknowledged by reading IIR, re-armed by transmit', (t) => {
  const { uart, out } = makeUart();
  wr(uart, IER, 0x02);
  t.true(uart.irqLevel, 'enabling THRI with an empty THR interrupts at once');
  t.is(rd(uart, IIR), 0x02);
  t.false(uart.irqLevel, 'reading IIR that reports THRE clears it');
  t.is(rd(uart, IIR), 0x01);
  wr(uart, RBR, 0x58);
  t.deepEqual(out, [0x58]);
  t.true(uart.irqLevel, 'THR empties again after the byte is sent');
  wr(uart, IER, 0x00);
  t.false(uart.irqLevel);
});

test('uart: receive data has priority over THR empty', (t) => {
  const { uart } = makeUart();
  wr(uart, FCR, 0x01);
  wr(uart, IER, 0x03);
  uart.pushInput(new Uint8Array([0x30]));
  t.is(rd(uart, IIR), 0xc4, 'FIFO enabled, trigger 1: RDA');
  t.true(uart.irqLevel);
  t.is(rd(uart, RBR), 0x30);
  t.is(rd(uart, IIR), 0xc2, 'then THR empty');
  t.is(rd(uart, IIR), 0xc1);
  t.false(uart.irqLevel);
});

test('uart: loopback', (t) => {
  const { uart, out } = makeUart();
  wr(uart, MCR, 0x10 | 0x03);
  t.is(rd(uart, MSR) & 0xf0, 0x30, 'RTS -> CTS, DTR -> DSR');
  wr(uart, RBR, 0x55);
  t.deepEqual(out, []);
  t.is(rd(uart, LSR) & 1, 1);
  t.is(rd(uart, RBR), 0x55);
  wr(uart, MCR, 0x08);
  wr(uart, RBR, 0x56);
  t.deepEqual(out, [0x56]);
});

test('uart: signals its line where QEMU does (THR, IER, FCR writes; RBR, IIR reads; input), so a driver that never reads IIR gets one THR-empty interrupt a byte', (t) => {
  const { uart, signals } = makeUart();
  wr(uart, IER, 0x02);
  t.deepEqual(signals, [true], 'enabling THRI with THR empty');
  rd(uart, LSR);
  rd(uart, LCR);
  wr(uart, SCR, 1);
  t.deepEqual(signals, [true], 'LSR, LCR and SCR accesses change nothing and signal nothing');
  wr(uart, RBR, 0x41);
  wr(uart, RBR, 0x42);
  t.deepEqual(signals, [true, true, true], 'each byte sent re-arms THRE and signals it anew');
  rd(uart, IIR);
  t.deepEqual(signals, [true, true, true, false], 'reading IIR acknowledges THRE');
  uart.pushInput(new Uint8Array([1]));
  t.deepEqual(signals, [true, true, true, false, false], 'input arrives with RDI off: the level, low, signalled');
});

test('uart: a view in another thread shares registers, FIFO and order of output with the host side', (t) => {
  const buffer = new SharedArrayBuffer(UART_STATE_BYTES);
  const out: number[] = [];
  const { levels, irq } = lineRecorder();
  const host = new Uart16550({ output: (b) => out.push(b), irq, state: { buffer, offset: 0 } });
  const hart = new Uart16550({ irq, state: { buffer, offset: 0, attach: true } });
  wr(hart, LCR, 0x03);
  wr(hart, RBR, 0x41);
  wr(hart, RBR, 0x42);
  t.deepEqual(out, [], 'a hart view leaves its bytes in the output ring');
  wr(host, RBR, 0x43);
  t.deepEqual(out, [0x41, 0x42, 0x43], 'the host side passes them on first, in order');
  host.pushInput(new Uint8Array([7, 8]));
  t.is(rd(hart, LSR) & 1, 1, 'input pushed by the host is seen by the hart view');
  t.is(rd(hart, RBR), 7);
  wr(hart, IER, 0x01);
  t.true(host.irqLevel, 'the line is shared state: receive data available');
  t.is(rd(hart, RBR), 8);
  t.false(host.irqLevel);
  t.deepEqual(levels, [true, false]);
  t.is(host.inputBacklog, 0);
});

test('uart: host input larger than the input ring waits in the host and arrives whole, in order', (t) => {
  const { uart } = makeUart();
  const input = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 7) & 0xff);
  uart.pushInput(input);
  t.is(uart.inputBacklog, input.length);
  const got: number[] = [];
  while (got.length < input.length) {
    if ((rd(uart, LSR) & 1) === 0) uart.tick();
    else got.push(rd(uart, RBR));
  }
  t.deepEqual(Uint8Array.from(got), input);
});

test('uart: a hart view whose output ring is full waits for the host to drain it, losing nothing', async (t) => {
  const buffer = new SharedArrayBuffer(UART_STATE_BYTES);
  const out: number[] = [];
  const host = new Uart16550({ output: (b) => out.push(b), state: { buffer, offset: 0 } });
  let waits = 0;
  const hart = new Uart16550({
    state: { buffer, offset: 0, attach: true },
    blockingWait: (wait) => {
      waits++;
      host.drainOutput(); // the host thread's drain, as the main loop would do meanwhile
      wait();
    },
  });
  const n = 40_000; // more than the 16 KiB ring
  for (let i = 0; i < n; i++) wr(hart, RBR, i & 0xff);
  host.drainOutput();
  t.true(waits > 0);
  t.is(out.length, n);
  t.true(out.every((b, i) => b === (i & 0xff)));
});

test('device state: each device shared with the harts fits its slot in the layout', (t) => {
  const slots = Object.entries(DeviceStateSlot).sort((a, b) => a[1] - b[1]);
  const sizes: Record<string, number> = { PLIC: PLIC_STATE_BYTES, UART: UART_STATE_BYTES, VIRTIO_BLK_IRQ: VIRTIO_IRQ_STATE_BYTES };
  slots.forEach(([name, offset], i) => {
    const end = i + 1 < slots.length ? slots[i + 1]![1] : DEVICE_STATE_SIZE;
    t.true(offset + sizes[name]! <= end, `${name}: ${sizes[name]} bytes at ${offset}, next slot at ${end}`);
  });
});

// ---- sifive_test finisher ----

test('finisher: pass, fail with code, reset, reads', (t) => {
  const control = new FakeControl();
  const dev = new SifiveTest({ control });
  t.is(dev.base, 0x10_0000);
  t.is(dev.size, 0x1000);
  t.is(dev.read(0, 4), 0n);
  dev.write(0, 4, 0x1234n);
  t.deepEqual(control.exits, [], 'unknown status is ignored');
  dev.write(0, 4, 0x5555n);
  dev.write(0, 4, (3n << 16n) | 0x3333n);
  dev.write(0, 4, 0x7777n);
  dev.write(0, 4, 0x3333n);
  t.deepEqual(control.exits, [0, 3, 0, 0]);
  const bus = new Bus();
  bus.add(dev);
  t.true(bus.write(0x10_0000, 4, (0xffffn << 16n) | 0x3333n));
  t.deepEqual(control.exits, [0, 3, 0, 0, 0xffff]);
});

// ---- CLINT ----

function makeClint(harts = 2): { clint: Clint; control: FakeControl; clock: { ns: bigint } } {
  const control = new FakeControl();
  const clock = { ns: 5_000_000_000n };
  const clint = new Clint({ harts, control, now: () => clock.ns });
  return { clint, control, clock };
}

test('clint: mtime runs at 10 MHz from the host clock, 64-bit and 32-bit reads', (t) => {
  const { clint, clock } = makeClint();
  t.is(clint.mtime(), 0n);
  clock.ns += 1_000n;
  t.is(clint.mtime(), 10n);
  t.is(clint.read(0xbff8, 8), 10n);
  clock.ns += 1_000_000_000n;
  t.is(clint.mtime(), 10_000_010n);
  t.is(clint.read(0xbff8, 4), 10_000_010n);
  t.is(clint.read(0xbffc, 4), 0n);
});

test('clint: writing mtime sets an offset, time keeps running', (t) => {
  const { clint, clock } = makeClint();
  clock.ns += 500n;
  clint.write(0xbff8, 8, 0x1_0000_0000n);
  t.is(clint.mtime(), 0x1_0000_0000n);
  clock.ns += 100n;
  t.is(clint.mtime(), 0x1_0000_0001n);
  clint.write(0xbffc, 4, 2n); // high half
  t.is(clint.mtime(), 0x2_0000_0001n);
  clint.write(0xbff8, 4, 7n); // low half
  t.is(clint.read(0xbff8, 8), 0x2_0000_0007n);
});

test('clint: mtimecmp resets to all ones and drives MTIP per hart', (t) => {
  const { clint, control, clock } = makeClint();
  t.is(clint.read(0x4000, 8), 0xffff_ffff_ffff_ffffn);
  t.is(clint.read(0x4008, 4), 0xffff_ffffn);
  clint.tick();
  t.false(control.level(0, 7));
  t.false(control.level(1, 7));
  clint.write(0x4000, 8, 100n);
  t.false(control.level(0, 7), 'a write re-evaluates at once');
  t.is(clint.nanosUntilTimer(0), 10_000n);
  clock.ns += 10_000n; // 100 ticks
  clint.tick();
  t.true(control.level(0, 7));
  t.false(control.level(1, 7));
  t.is(clint.nanosUntilTimer(0), 0n);
  // Hart 1 programmed through two 32-bit halves (the RV32 idiom: high half last).
  clint.write(0x4008, 4, 50n);
  t.false(control.level(1, 7), 'high half still all ones');
  clint.write(0x400c, 4, 0n);
  t.true(control.level(1, 7));
  t.is(clint.mtimecmp(1), 50n);
  // Moving mtimecmp into the future clears MTIP on the write itself.
  clint.write(0x4000, 8, 1_000_000n);
  t.false(control.level(0, 7));
});

test('clint: msip sets and clears MSIP per hart', (t) => {
  const { clint, control } = makeClint();
  clint.write(0x4, 4, 1n);
  t.true(control.level(1, 3));
  t.is(control.level(0, 3), undefined);
  t.is(clint.read(0x4, 4), 1n);
  clint.write(0x4, 4, 0xfffffffen);
  t.false(control.level(1, 3));
  t.is(clint.read(0x4, 4), 0n);
  clint.write(0x0, 4, 0xffffffffn);
  t.is(clint.read(0x0, 4), 1n, 'only bit 0 is writable');
  t.true(control.level(0, 3));
  const before = control.calls;
  clint.write(0x8, 4, 1n); // hart 2 does not exist
  t.is(control.calls, before);
  t.is(clint.read(0x8, 4), 0n);
});

test('clint through the bus at 0x0200_0000', (t) => {
  const { clint } = makeClint(1);
  const bus = new Bus();
  bus.add(clint);
  t.is(bus.read(0x0200_bff8, 8), 0n);
  t.true(bus.write(0x0200_4000, 8, 5n));
  t.is(bus.read(0x0200_4000, 8), 5n);
  t.is(bus.read(0x0201_0000, 4), undefined);
});

// ---- HTIF ----

function makeHtif(): { htif: Htif; mem: Map<number, bigint>; out: number[]; control: FakeControl } {
  const mem = new Map<number, bigint>();
  const out: number[] = [];
  const control = new FakeControl();
  const htif = new Htif({
    tohost: 0x8000_1000,
    fromhost: 0x8000_1040,
    read64: (a) => mem.get(a) ?? 0n,
    write64: (a, v) => void mem.set(a, v),
    output: (b) => out.push(b),
    control,
  });
  return { htif, mem, out, control };
}

const TOHOST = 0x8000_1000;
const FROMHOST = 0x8000_1040;

test('htif: putchar writes the byte, clears tohost, answers in fromhost', (t) => {
  const { htif, mem, out } = makeHtif();
  htif.tick();
  t.deepEqual(out, []);
  mem.set(TOHOST, (1n << 56n) | (1n << 48n) | 0x41n);
  htif.tick();
  t.deepEqual(out, [0x41]);
  t.is(mem.get(TOHOST), 0n);
  t.is(mem.get(FROMHOST), (1n << 56n) | (1n << 48n));
  // A second putchar before the guest cleared fromhost: its answer waits.
  mem.set(TOHOST, (1n << 56n) | (1n << 48n) | 0x42n);
  htif.tick();
  t.deepEqual(out, [0x41, 0x42]);
  t.is(mem.get(FROMHOST), (1n << 56n) | (1n << 48n));
  mem.set(FROMHOST, 0n);
  htif.tick();
  t.is(mem.get(FROMHOST), (1n << 56n) | (1n << 48n));
});

test('htif: exit codes as riscv-tests encode them', (t) => {
  const { htif, mem, control } = makeHtif();
  mem.set(TOHOST, 1n);
  htif.tick();
  t.deepEqual(control.exits, [0]);
  mem.set(TOHOST, (7n << 1n) | 1n);
  htif.tick();
  t.deepEqual(control.exits, [0, 7]);
  t.is(mem.get(TOHOST), 0n);
});

test('htif: getchar answers "no character"', (t) => {
  const { htif, mem } = makeHtif();
  mem.set(TOHOST, 1n << 56n);
  htif.tick();
  t.is(mem.get(FROMHOST), 1n << 56n);
});

test('htif: proxy-kernel syscalls and unknown devices are clear errors', (t) => {
  const { htif, mem } = makeHtif();
  mem.set(TOHOST, 0x8000_2000n);
  t.throws(() => htif.tick(), { message: /proxy-kernel syscalls are unsupported/ });
  mem.set(TOHOST, (7n << 56n) | 1n);
  t.throws(() => htif.tick(), { message: /unknown device 7/ });
  mem.set(TOHOST, (1n << 56n) | (0xffn << 48n));
  t.throws(() => htif.tick(), { message: /unsupported console command 255/ });
});
