/**
 * sync/mailbox.ts: a hart's synchronous MMIO requests and its posted writes, with the hart's side in a worker thread as in a VM (the main thread serves).
 */
import test from "ava";
import { Worker } from "node:worker_threads";
import { computeLayout, POSTED_RING_ENTRIES, POSTED_RING_OFFSET } from "../shared-mem/layout.ts";
import { MmioMailboxServer, type MmioHandler } from "../sync/mailbox.ts";
import type { AccessWidth } from "../hypervisor/devices/device.ts";

const layout = computeLayout({ ramSize: 1 << 20, copies: 1, spareFrames: 0, harts: 2 });
const newMemory = () => new WebAssembly.Memory({ initial: layout.totalBytes / 65536, maximum: layout.totalBytes / 65536, shared: true });

/** A device that records every access in order; reads return how many writes it has seen. */
class RecordingDevice implements MmioHandler {
  readonly log: string[] = [];
  /** Busy time per write, so that a hart posting fast fills its ring. */
  constructor(private readonly writeMicros = 0) {}
  read(addr: number, width: AccessWidth): bigint {
    this.log.push(`r ${addr.toString(16)}/${width}`);
    return BigInt(this.log.filter((entry) => entry.startsWith("w")).length);
  }
  write(addr: number, width: AccessWidth, value: bigint): boolean {
    for (const start = performance.now(); performance.now() - start < this.writeMicros / 1000; );
    this.log.push(`w ${addr.toString(16)}/${width}=${value}`);
    return true;
  }
}

/**
 * Run `script` (a list of accesses) as hart `hart` in a worker thread; serve until it is done (with
 * `holdUntilReport`, not before its first "report" step). Returns the results of every step.
 */
async function runHart(memory: WebAssembly.Memory, server: MmioMailboxServer, hart: number, script: unknown[], holdUntilReport = false): Promise<unknown[]> {
  const worker = new Worker(new URL("./helpers/mailbox-worker.mjs", import.meta.url), {
    workerData: { memory, hartBase: layout.hartOffset(hart), controlOffset: layout.controlOffset, script },
  });
  let result: unknown[] | undefined;
  let failure: unknown;
  if (holdUntilReport) await new Promise((resolve) => worker.once("message", resolve));
  worker.on("message", (message: unknown[]) => (result = message));
  worker.on("error", (e) => (failure = e));
  const exited = new Promise((resolve) => worker.on("exit", resolve));
  let done = false;
  void exited.then(() => (done = true));
  // Atomics.waitAsync does not keep Node's event loop alive (nor does an exited worker): this does.
  const keepAlive = setInterval(() => {}, 1000);
  while (!done) {
    server.serve();
    await server.waitForRequests(1);
  }
  clearInterval(keepAlive);
  if (failure) throw failure;
  return result!;
}

test("posted writes are carried out in order, before the hart's next synchronous request", async (t) => {
  const memory = newMemory();
  const device = new RecordingDevice();
  const server = new MmioMailboxServer(memory.buffer, [layout.hartOffset(0)], layout.controlOffset, device);
  const results = await runHart(memory, server, 0, [
    ["post", 0x10, 1, 7], ["post", 0x10, 1, 8], ["read", 0x14, 1], ["post", 0x10, 1, 9], ["write", 0x18, 4, 1], ["read", 0x14, 1],
  ]);
  t.deepEqual(device.log, ["w 10/1=7", "w 10/1=8", "r 14/1", "w 10/1=9", "w 18/4=1", "r 14/1"]);
  t.deepEqual(results, [true, true, 2, true, true, 4], "each read saw every earlier write done");
});

test("a full ring refuses the post; the synchronous write that follows drains it first", async (t) => {
  const memory = newMemory();
  const device = new RecordingDevice();
  const server = new MmioMailboxServer(memory.buffer, [layout.hartOffset(0)], layout.controlOffset, device);
  const script: unknown[] = [];
  // The main thread serves nothing until the worker reports, so the ring fills up.
  for (let i = 0; i < POSTED_RING_ENTRIES + 5; i++) script.push(["post", 0x10, 1, i]);
  script.push(["report"], ["write", 0x18, 4, 99]);
  const results = await runHart(memory, server, 0, script, true);
  t.is(results.indexOf(false), POSTED_RING_ENTRIES, "the first refused post is the one past the ring's size");
  t.is(results.filter((r) => r === false).length, 5, "and every one after it");
  const expected = Array.from({ length: POSTED_RING_ENTRIES }, (_, i) => `w 10/1=${i}`);
  t.deepEqual(device.log, [...expected, "w 18/4=99"], "the accepted posts were carried out, in order, before the write");
});

for (const start of [0, 0x7fff_ff00]) {
  test(`a hart posting faster than the device takes writes: posts and the writes of a full ring keep their order (ring indices from 0x${start.toString(16)})`, async (t) => {
    const memory = newMemory();
    // From just below 2^31 the indices wrap (to negative i32) half-way through.
    const ring = new Int32Array(memory.buffer, layout.hartOffset(0) + POSTED_RING_OFFSET, 32);
    ring[0] = ring[16] = start; // head (+0) and tail (+64)
    const device = new RecordingDevice(5);
    const server = new MmioMailboxServer(memory.buffer, [layout.hartOffset(0)], layout.controlOffset, device);
    const n = 5000;
    await runHart(memory, server, 0, [["count", 0x10, 1, n]]);
    const values = device.log.map((entry) => Number(entry.split("=")[1]));
    t.is(values.length, n);
    const firstOutOfOrder = values.findIndex((v, i) => v !== i);
    t.is(firstOutOfOrder, -1, `value ${values[firstOutOfOrder]} came at position ${firstOutOfOrder}`);
  });
}
