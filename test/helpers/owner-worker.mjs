// A worker thread for test/sync.test.ts that stands in for the hart of a mirrored one-hart VM: until
// the VM's STOP word is set it runs under MemoryOwner.whileRunning, and each run stores rising values to a word's
// primary and then (after a spin that widens the window) its mirror, as an engine's store does,
// until the run has made `storesPerRun` stores or a host writer kicked it (EXIT_REQUEST). Every
// tenth run it also sets the lock aside for a moment, as a hart does around a mailbox call.
import { register } from "tsx/esm/api";
import { parentPort, workerData } from "node:worker_threads";

register();
const { MemoryOwner } = await import("../../sync/owner.ts");
const { computeLayout, ControlSlot, HartSlot } = await import("../../shared-mem/layout.ts");
const { buffer, layoutOptions, word, mirrorWord, storesPerRun } = workerData;
const layout = computeLayout(layoutOptions);
const words = new Int32Array(buffer);
const quads = new BigInt64Array(buffer);
const owner = new MemoryOwner(words, layout);
const exitRequest = (layout.hartOffset(0) + HartSlot.EXIT_REQUEST) >> 2;
const stop = (layout.controlOffset + ControlSlot.STOP) >> 2;
let value = 0n;
let kicks = 0;
for (let run = 0; Atomics.load(words, stop) === 0; run++) {
  owner.whileRunning(() => {
    for (let i = 0; i < storesPerRun; i++) {
      value++;
      Atomics.store(quads, word, value);
      for (let spin = 0; spin < 100; spin++) Atomics.load(words, exitRequest);
      Atomics.store(quads, mirrorWord, value);
      if (Atomics.exchange(words, exitRequest, 0) !== 0) {
        kicks++;
        return;
      }
    }
    if (run % 10 === 0) owner.setAside(() => Atomics.wait(words, exitRequest, -1, 1));
  });
}
parentPort.postMessage({ kicks });
