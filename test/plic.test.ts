import test from 'ava';
import type { MachineControl } from '../hypervisor/devices/device.ts';
import { PLIC_BASE, PLIC_SIZE, Plic } from '../hypervisor/devices/plic.ts';

class FakeControl implements MachineControl {
  /** Last level per "hart:bit". */
  irqs = new Map<string, boolean>();
  log: string[] = [];
  requestExit(_code: number): void {}
  setHartInterrupt(hart: number, bit: number, level: boolean): void {
    this.irqs.set(`${hart}:${bit}`, level);
    this.log.push(`${hart}:${bit}=${level ? 1 : 0}`);
  }
  level(hart: number, bit: number): boolean {
    return this.irqs.get(`${hart}:${bit}`) ?? false;
  }
}

const MEIP = 11;
const SEIP = 9;

const priorityReg = (src: number): number => 4 * src;
const pendingReg = (word: number): number => 0x1000 + 4 * word;
const enableReg = (ctx: number, word: number): number => 0x2000 + 0x80 * ctx + 4 * word;
const thresholdReg = (ctx: number): number => 0x20_0000 + 0x1000 * ctx;
const claimReg = (ctx: number): number => 0x20_0004 + 0x1000 * ctx;

function setup(harts = 2): { plic: Plic; ctl: FakeControl; r: (o: number) => number; w: (o: number, v: number) => void } {
  const ctl = new FakeControl();
  const plic = new Plic({ harts, control: ctl });
  const r = (o: number): number => Number(plic.read(o, 4));
  const w = (o: number, v: number): void => plic.write(o, 4, BigInt(v));
  return { plic, ctl, r, w };
}

/** Enable a source in a context (read-modify-write, as a driver does). */
function enable(r: (o: number) => number, w: (o: number, v: number) => void, ctx: number, src: number): void {
  const reg = enableReg(ctx, src >> 5);
  w(reg, r(reg) | (1 << (src & 31)));
}

test('window and defaults', (t) => {
  const { plic, r } = setup();
  t.is(plic.base, PLIC_BASE);
  t.is(PLIC_BASE, 0x0c00_0000);
  t.is(plic.size, PLIC_SIZE);
  t.is(PLIC_SIZE, 0x60_0000);
  t.is(plic.contexts, 4);
  t.is(r(priorityReg(10)), 0);
  t.is(r(thresholdReg(0)), 0);
  t.is(r(claimReg(0)), 0);
  t.is(new Plic({ harts: 1, control: new FakeControl(), base: 0x1234_0000 }).base, 0x1234_0000);
  t.throws(() => new Plic({ harts: 0, control: new FakeControl() }), { instanceOf: RangeError });
  t.throws(() => new Plic({ harts: 513, control: new FakeControl() }), { instanceOf: RangeError });
});

test('priority registers hold 3 bits; source 0 and sources above 95 do not exist', (t) => {
  const { r, w } = setup();
  w(priorityReg(1), 0xffff_ffff);
  t.is(r(priorityReg(1)), 7);
  w(priorityReg(95), 5);
  t.is(r(priorityReg(95)), 5);
  w(priorityReg(0), 7);
  t.is(r(priorityReg(0)), 0);
  w(priorityReg(96), 7);
  t.is(r(priorityReg(96)), 0);
  w(thresholdReg(1), 0xff);
  t.is(r(thresholdReg(1)), 7);
});

test('enable bits: per context, source 0 and bits beyond 95 hard-wired to 0', (t) => {
  const { r, w } = setup();
  w(enableReg(0, 0), 0xffff_ffff);
  t.is(r(enableReg(0, 0)), 0xffff_fffe);
  w(enableReg(0, 2), 0xffff_ffff);
  t.is(r(enableReg(0, 2)), 0xffff_ffff); // sources 64..95
  w(enableReg(0, 3), 0xffff_ffff);
  t.is(r(enableReg(0, 3)), 0);
  t.is(r(enableReg(1, 0)), 0);
  t.is(r(enableReg(3, 0)), 0);
  // Context 4 does not exist with 2 harts.
  w(enableReg(4, 0), 0xffff_ffff);
  t.is(r(enableReg(4, 0)), 0);
});

test('non-32-bit and misaligned accesses read 0 and are ignored', (t) => {
  const { plic, r } = setup();
  plic.write(priorityReg(3), 1, 5n);
  plic.write(priorityReg(3), 8, 5n);
  plic.write(priorityReg(3) + 2, 4, 5n);
  t.is(r(priorityReg(3)), 0);
  plic.write(priorityReg(3), 4, 5n);
  t.is(plic.read(priorityReg(3), 1), 0n);
  t.is(plic.read(priorityReg(3), 2), 0n);
  t.is(plic.read(priorityReg(3), 8), 0n);
  t.is(plic.read(priorityReg(3), 4), 5n);
});

test('pending bits follow a level-triggered line and are read-only', (t) => {
  const { plic, r, w } = setup();
  plic.setIrq(10, true);
  t.is(r(pendingReg(0)), 1 << 10);
  t.true(plic.isPending(10));
  plic.setIrq(33, true);
  t.is(r(pendingReg(1)), 1 << 1);
  w(pendingReg(0), 0);
  t.is(r(pendingReg(0)), 1 << 10);
  plic.setIrq(10, false);
  t.is(r(pendingReg(0)), 0);
  plic.setIrq(0, true);
  plic.setIrq(96, true);
  t.is(r(pendingReg(0)), 0);
  t.is(r(pendingReg(3)), 0);
});

test('claim returns the highest priority; ties go to the lowest id', (t) => {
  const { plic, ctl, r, w } = setup(1);
  for (const [src, prio] of [
    [5, 2],
    [7, 6],
    [9, 6],
    [40, 3],
  ] as const) {
    w(priorityReg(src), prio);
    enable(r, w, 0, src);
    plic.setIrq(src, true);
  }
  t.true(ctl.level(0, MEIP));
  t.is(r(claimReg(0)), 7);
  t.is(r(claimReg(0)), 9);
  t.is(r(claimReg(0)), 40);
  t.is(r(claimReg(0)), 5);
  t.false(ctl.level(0, MEIP));
  t.is(r(claimReg(0)), 0);
  // Claimed sources are no longer pending.
  t.is(r(pendingReg(0)), 0);
  t.is(r(pendingReg(1)), 0);
});

test('priority 0 never interrupts; threshold masks priorities at or below it', (t) => {
  const { plic, ctl, r, w } = setup(1);
  enable(r, w, 0, 3);
  plic.setIrq(3, true);
  t.false(ctl.level(0, MEIP));
  t.is(r(claimReg(0)), 0);
  w(priorityReg(3), 4);
  t.true(ctl.level(0, MEIP));
  w(thresholdReg(0), 4);
  t.false(ctl.level(0, MEIP));
  t.is(r(claimReg(0)), 0);
  t.true(plic.isPending(3));
  w(thresholdReg(0), 3);
  t.true(ctl.level(0, MEIP));
  t.is(r(claimReg(0)), 3);
  // Claim with a threshold skips masked sources but takes qualifying ones.
  w(priorityReg(4), 2);
  w(priorityReg(6), 5);
  enable(r, w, 0, 4);
  enable(r, w, 0, 6);
  plic.setIrq(4, true);
  plic.setIrq(6, true);
  t.is(r(claimReg(0)), 6);
  t.is(r(claimReg(0)), 0); // source 4 (priority 2) is below threshold 3
  t.false(ctl.level(0, MEIP));
});

test('enable is per context; disabled sources are not claimed', (t) => {
  const { plic, ctl, r, w } = setup(2);
  w(priorityReg(10), 1);
  w(priorityReg(1), 1);
  enable(r, w, 3, 10); // hart 1 S-mode only
  enable(r, w, 0, 1); // hart 0 M-mode only
  plic.setIrq(10, true);
  t.false(ctl.level(0, MEIP));
  t.false(ctl.level(0, SEIP));
  t.false(ctl.level(1, MEIP));
  t.true(ctl.level(1, SEIP));
  t.is(r(claimReg(0)), 0);
  t.is(r(claimReg(2)), 0);
  plic.setIrq(1, true);
  t.true(ctl.level(0, MEIP));
  t.is(r(claimReg(0)), 1);
  t.is(r(claimReg(3)), 10);
  t.false(ctl.level(1, SEIP));
  t.false(ctl.level(0, MEIP));
});

test('M and S contexts route to mip bits 11 and 9 of the right hart', (t) => {
  const { plic, ctl, r, w } = setup(2);
  w(priorityReg(10), 1);
  for (let ctx = 0; ctx < 4; ctx++) {
    w(enableReg(ctx, 0), 0);
  }
  const cases: [number, number, number][] = [
    [0, 0, MEIP],
    [1, 0, SEIP],
    [2, 1, MEIP],
    [3, 1, SEIP],
  ];
  for (const [ctx, hart, bit] of cases) {
    ctl.log = [];
    enable(r, w, ctx, 10);
    plic.setIrq(10, true);
    t.deepEqual(ctl.log, [`${hart}:${bit}=1`], `context ${ctx}`);
    t.true(plic.contextOutput(ctx));
    ctl.log = [];
    plic.setIrq(10, false);
    t.deepEqual(ctl.log, [`${hart}:${bit}=0`], `context ${ctx}`);
    w(enableReg(ctx, 0), 0);
  }
});

test('a source enabled in several contexts: the first claim wins, others see nothing', (t) => {
  const { plic, ctl, r, w } = setup(2);
  w(priorityReg(10), 1);
  for (let ctx = 0; ctx < 4; ctx++) enable(r, w, ctx, 10);
  plic.setIrq(10, true);
  for (const [h, b] of [
    [0, MEIP],
    [0, SEIP],
    [1, MEIP],
    [1, SEIP],
  ] as const) {
    t.true(ctl.level(h, b));
  }
  t.is(r(claimReg(3)), 10);
  for (let ctx = 0; ctx < 4; ctx++) t.false(plic.contextOutput(ctx));
  t.is(r(claimReg(0)), 0);
});

test('as QEMU: each signal sets pending, even while claimed; a completion only ends the claim', (t) => {
  const { plic, ctl, r, w } = setup(1);
  w(priorityReg(10), 1);
  enable(r, w, 1, 10); // hart 0 S-mode
  plic.setIrq(10, true);
  t.true(ctl.level(0, SEIP));
  t.is(r(claimReg(1)), 10);
  t.true(plic.isClaimed(10));
  t.false(plic.isPending(10));
  t.false(ctl.level(0, SEIP));
  // Completed with the line still high but not signalled again: no new request (a driver that
  // never reads the UART's IIR takes one interrupt per byte, not a storm).
  w(claimReg(1), 10);
  t.false(plic.isClaimed(10));
  t.false(plic.isPending(10));
  t.false(ctl.level(0, SEIP));
  t.is(r(claimReg(1)), 0);
  // Signalled again at the same level: a new request.
  plic.setIrq(10, true);
  t.true(plic.isPending(10));
  t.is(r(claimReg(1)), 10);
  // Signalled while claimed: pending, but held back until the completion.
  plic.setIrq(10, true);
  t.true(plic.isPending(10));
  t.false(ctl.level(0, SEIP));
  t.is(r(claimReg(1)), 0, 'a claimed source is not claimed twice');
  w(claimReg(1), 10);
  t.true(ctl.level(0, SEIP));
  // The device is serviced (line low) before the claim: nothing left pending.
  plic.setIrq(10, false);
  t.false(plic.isPending(10));
  t.false(ctl.level(0, SEIP));
  t.is(r(claimReg(1)), 0);
});

test('completing a source that is not claimed, or does not exist, is ignored', (t) => {
  const { plic, ctl, r, w } = setup(1);
  w(priorityReg(10), 1);
  enable(r, w, 0, 10);
  w(claimReg(0), 10);
  w(claimReg(0), 0);
  w(claimReg(0), 1000);
  t.false(plic.isPending(10));
  plic.setIrq(10, true);
  t.is(r(claimReg(0)), 10);
  plic.setIrq(10, false);
  w(claimReg(0), 11); // wrong id
  t.true(plic.isClaimed(10));
  w(claimReg(0), 10);
  t.false(plic.isClaimed(10));
  t.false(ctl.level(0, MEIP));
});

test('changing priority, enable or threshold updates outputs at once', (t) => {
  const { plic, ctl, r, w } = setup(1);
  plic.setIrq(20, true);
  w(priorityReg(20), 3);
  t.false(ctl.level(0, MEIP));
  enable(r, w, 0, 20);
  t.true(ctl.level(0, MEIP));
  w(priorityReg(20), 0);
  t.false(ctl.level(0, MEIP));
  w(priorityReg(20), 3);
  t.true(ctl.level(0, MEIP));
  w(enableReg(0, 0), 0);
  t.false(ctl.level(0, MEIP));
  enable(r, w, 0, 20);
  w(thresholdReg(0), 7);
  t.false(ctl.level(0, MEIP));
  w(thresholdReg(0), 0);
  t.true(ctl.level(0, MEIP));
});

test('setHartInterrupt is called only when a context output changes', (t) => {
  const { plic, ctl, r, w } = setup(2);
  w(priorityReg(10), 1);
  w(priorityReg(11), 1);
  enable(r, w, 0, 10);
  enable(r, w, 0, 11);
  t.deepEqual(ctl.log, []);
  plic.setIrq(10, true);
  plic.setIrq(11, true);
  plic.setIrq(10, true);
  t.deepEqual(ctl.log, ['0:11=1']);
  t.is(r(claimReg(0)), 10);
  t.deepEqual(ctl.log, ['0:11=1']); // 11 still pending
  t.is(r(claimReg(0)), 11);
  t.deepEqual(ctl.log, ['0:11=1', '0:11=0']);
});

test('holes and non-existent context registers read 0', (t) => {
  const { r, w } = setup(1);
  t.is(r(0x20_0008), 0);
  t.is(r(thresholdReg(2)), 0);
  w(thresholdReg(2), 5);
  t.is(r(thresholdReg(2)), 0);
  t.is(r(claimReg(5)), 0);
  t.is(r(0x1080), 0);
  t.is(r(PLIC_SIZE - 4), 0);
});
