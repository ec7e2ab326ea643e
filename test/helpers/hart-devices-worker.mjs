// A worker thread for test/hart-devices.test.ts standing in for hart 0's worker: it runs a kernel's
// interrupt path through HartDevices (PLIC claim/complete, UART registers, virtio's interrupt
// status) while the main thread is blocked, then sets DONE and sends what each access returned.
import { register } from "tsx/esm/api";
import { parentPort, workerData } from "node:worker_threads";

register();
const { HartDevices } = await import("../../hypervisor/hart-devices.ts");
const { computeLayout } = await import("../../shared-mem/layout.ts");
const { memory, doneIndex, script } = workerData;
const layout = computeLayout(workerData.layout);
const devices = new HartDevices({ layout, buffer: memory.buffer, hart: 0, whileWaiting: (call) => call() });
const words = new Int32Array(memory.buffer);
const results = [];
for (const [op, addr, width, value] of script) {
  if (op === "read") results.push(Number(devices.read(addr, width)));
  else if (op === "mip") results.push(Atomics.load(words, (layout.hartOffset(0) + 328) >> 2));
  else devices.write(addr, width, BigInt(value));
}
Atomics.store(words, doneIndex, 1);
Atomics.notify(words, doneIndex);
parentPort.postMessage(results);
