/**
 * Synchronous MMIO calls from a hart's worker thread to the main thread, for the devices whose
 * register logic stays there (virtio-blk's transport and queue, the finisher, the boot ROM). The
 * devices a running kernel touches on its hot paths (CLINT, PLIC, UART, virtio's interrupt status)
 * run in the hart's own thread over shared state instead (hypervisor/hart-devices.ts).
 *
 * Protocol (one mailbox per hart, in its shared area; only that hart posts to it):
 *   hart:  write op/address/width/value, STATE := POSTED, bump DOORBELL and notify it,
 *          then wait on STATE until it reads DONE; read the result; STATE := IDLE.
 *   main:  wake on DOORBELL, serve every mailbox whose STATE is POSTED, STATE := DONE, notify.
 * The Atomics store/load of STATE order the plain accesses to the other fields (JS memory model:
 * an Atomics write synchronizes with the Atomics read that sees it).
 *
 * Guarantees: a hart has at most one request outstanding; requests from different harts are
 * served one at a time, in the main thread, so devices need no locks.
 *
 * Posted writes. A round trip costs 0.1–0.3 ms on a loaded 2-core host (the main thread's wake-up,
 * then the hart's). For a write that answers nothing and whose effect the guest only learns of
 * later (virtio's QueueNotify: completion comes by interrupt), a hart does not wait: it appends the
 * write to its ring of posted writes (POSTED_RING_OFFSET) and runs on. The main thread drains
 * every hart's ring before it serves any synchronous request, so a hart's later read or write — or
 * another hart's, ordered after the post by the guest's own synchronisation — finds it done.
 */
import {
  ControlSlot,
  HartSlot,
  POSTED_ENTRY_SIZE,
  POSTED_RING_ENTRIES,
  POSTED_RING_HEADER,
  POSTED_RING_OFFSET,
} from "../shared-mem/layout.ts";
import type { AccessWidth } from "../shared-mem/access.ts";

const State = { Idle: 0, Posted: 1, Done: 2 } as const;
const Field = { STATE: 0, OP: 4, WIDTH: 8, OK: 12, ADDR: 16, VALUE: 24 } as const;
const Operation = { Read: 1, Write: 2 } as const;
/** Ring header: the main thread's consumer index and the hart's producer index (free-running). */
const Ring = { HEAD: 0, TAIL: 64 } as const;
/** Polls before sleeping: an MMIO round trip is often shorter than a futex wait's cost. */
const SPIN_POLLS = 2000;

export interface MmioHandler {
  read(addr: number, width: AccessWidth): bigint | undefined;
  write(addr: number, width: AccessWidth, value: bigint): boolean;
}

class MailboxView {
  protected readonly words: Int32Array;
  protected readonly view: DataView;
  constructor(buffer: ArrayBufferLike) {
    this.words = new Int32Array(buffer);
    this.view = new DataView(buffer);
  }
}

/** The hart's side: looks like the bus, blocks until the main thread answers. */
export class MmioMailboxClient extends MailboxView implements MmioHandler {
  private readonly box: number;
  private readonly ring: number;
  private readonly doorbell: number;

  constructor(buffer: ArrayBufferLike, hartBase: number, controlOffset: number) {
    super(buffer);
    this.box = hartBase + HartSlot.MAILBOX;
    this.ring = hartBase + POSTED_RING_OFFSET;
    this.doorbell = (controlOffset + ControlSlot.DOORBELL) >>> 2;
  }

  read(addr: number, width: AccessWidth): bigint | undefined {
    return this.call(Operation.Read, addr, width, 0n) ? this.view.getBigUint64(this.box + Field.VALUE, true) : undefined;
  }

  write(addr: number, width: AccessWidth, value: bigint): boolean {
    return this.call(Operation.Write, addr, width, value);
  }

  /**
   * Post a write that needs no answer: queue it and return true;
   * false when the ring is full (then write synchronously, which drains the ring first — a full
   * ring must not make a hart wait here, where it may hold memory ownership, sync/owner.ts).
   */
  tryPost(addr: number, width: AccessWidth, value: bigint): boolean {
    const ring = this.ring;
    const tail = Atomics.load(this.words, (ring + Ring.TAIL) >>> 2);
    // The indices run free and wrap at 2^32 (| 0): differences and slots stay right across the wrap.
    if (((tail - Atomics.load(this.words, (ring + Ring.HEAD) >>> 2)) | 0) >= POSTED_RING_ENTRIES) return false;
    const entry = ring + POSTED_RING_HEADER + (tail & (POSTED_RING_ENTRIES - 1)) * POSTED_ENTRY_SIZE;
    this.view.setUint32(entry, addr, true);
    this.view.setUint32(entry + 4, width, true);
    this.view.setBigUint64(entry + 8, BigInt.asUintN(64, value), true);
    Atomics.store(this.words, (ring + Ring.TAIL) >>> 2, (tail + 1) | 0);
    this.ringDoorbell();
    return true;
  }

  private ringDoorbell(): void {
    Atomics.add(this.words, this.doorbell, 1);
    Atomics.notify(this.words, this.doorbell);
  }

  private call(op: number, addr: number, width: AccessWidth, value: bigint): boolean {
    const v = this.view;
    v.setInt32(this.box + Field.OP, op, true);
    v.setInt32(this.box + Field.WIDTH, width, true);
    v.setUint32(this.box + Field.ADDR, addr, true);
    v.setBigUint64(this.box + Field.VALUE, BigInt.asUintN(64, value), true);
    const state = (this.box + Field.STATE) >>> 2;
    Atomics.store(this.words, state, State.Posted);
    this.ringDoorbell();
    for (let i = 0; i < SPIN_POLLS && Atomics.load(this.words, state) !== State.Done; i++);
    while (Atomics.load(this.words, state) !== State.Done) Atomics.wait(this.words, state, State.Posted, 1000);
    const ok = v.getInt32(this.box + Field.OK, true) === 1;
    Atomics.store(this.words, state, State.Idle);
    return ok;
  }
}

/** The main thread's side: serves every hart's mailbox. */
export class MmioMailboxServer extends MailboxView {
  private readonly doorbell: number;

  constructor(
    buffer: ArrayBufferLike,
    private readonly hartBases: readonly number[],
    controlOffset: number,
    private readonly handler: MmioHandler,
  ) {
    super(buffer);
    this.doorbell = (controlOffset + ControlSlot.DOORBELL) >>> 2;
  }

  /** Serve every posted write, then every waiting request; returns how many there were. */
  serve(): number {
    let served = this.drainPosted();
    for (const base of this.hartBases) {
      const box = base + HartSlot.MAILBOX;
      const state = (box + Field.STATE) >>> 2;
      if (Atomics.load(this.words, state) !== State.Posted) continue;
      // Again, now that the request is seen: the hart may have posted more since the drain above
      // (then found its ring full and asked instead), and those come first.
      served += this.drainPosted();
      const v = this.view;
      const width = v.getInt32(box + Field.WIDTH, true) as AccessWidth;
      const addr = v.getUint32(box + Field.ADDR, true);
      let ok = false;
      try {
        if (v.getInt32(box + Field.OP, true) === Operation.Read) {
          const value = this.handler.read(addr, width);
          ok = value !== undefined;
          v.setBigUint64(box + Field.VALUE, value ?? 0n, true);
        } else {
          ok = this.handler.write(addr, width, v.getBigUint64(box + Field.VALUE, true));
        }
      } finally {
        // Answer even when the device threw (the VM is stopping): the hart must not wait for ever.
        v.setInt32(box + Field.OK, ok ? 1 : 0, true);
        Atomics.store(this.words, state, State.Done);
        Atomics.notify(this.words, state);
      }
      served++;
    }
    return served;
  }

  /**
   * Carry out every hart's posted writes, in each hart's order. Before any synchronous request:
   * whatever a hart did after posting (another access, a store another hart synchronises with)
   * must find its posted writes done. A write that throws is dropped (a posted write has nobody to
   * report to); the others go on.
   */
  drainPosted(): number {
    let drained = 0;
    for (const base of this.hartBases) {
      const ring = base + POSTED_RING_OFFSET;
      const headIndex = (ring + Ring.HEAD) >>> 2;
      const tail = Atomics.load(this.words, (ring + Ring.TAIL) >>> 2);
      let head = Atomics.load(this.words, headIndex);
      if (head === tail) continue;
      for (; head !== tail; head = (head + 1) | 0) {
        const entry = ring + POSTED_RING_HEADER + (head & (POSTED_RING_ENTRIES - 1)) * POSTED_ENTRY_SIZE;
        const v = this.view;
        try {
          this.handler.write(v.getUint32(entry, true), v.getUint32(entry + 4, true) as AccessWidth, v.getBigUint64(entry + 8, true));
        } catch {
          // Dropped, see above.
        }
        drained++;
      }
      Atomics.store(this.words, headIndex, head);
    }
    return drained;
  }

  /** Resolve when a hart rings the doorbell (or after `timeoutMs`), without blocking the event loop. */
  async waitForRequests(timeoutMs: number): Promise<void> {
    const seen = Atomics.load(this.words, this.doorbell);
    if (this.anyPosted()) return;
    const wait = Atomics.waitAsync(this.words, this.doorbell, seen, timeoutMs);
    if (wait.async) await wait.value;
  }

  private anyPosted(): boolean {
    return this.hartBases.some(
      (base) =>
        Atomics.load(this.words, (base + HartSlot.MAILBOX + Field.STATE) >>> 2) === State.Posted ||
        Atomics.load(this.words, (base + POSTED_RING_OFFSET + Ring.HEAD) >>> 2) !== Atomics.load(this.words, (base + POSTED_RING_OFFSET + Ring.TAIL) >>> 2),
    );
  }
}
