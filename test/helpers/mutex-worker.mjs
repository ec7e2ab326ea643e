// A worker thread for test/sync.test.ts: increments a plain (non-atomic) 64-bit counter in
// shared memory `rounds` times, each time holding the mutex at `lockIndex`, with a read, a short
// spin and a write in between so that unprotected increments would be lost.
import { register } from "tsx/esm/api";
import { parentPort, workerData } from "node:worker_threads";

register();
const { lockWord, unlockWord } = await import("../../sync/mutex.ts");
const { buffer, lockIndex, counterIndex, rounds, useLock } = workerData;
const words = new Int32Array(buffer);
const counter = new Float64Array(buffer);
for (let i = 0; i < rounds; i++) {
  if (useLock) lockWord(words, lockIndex);
  const seen = counter[counterIndex];
  for (let spin = 0; spin < 20; spin++) Atomics.load(words, lockIndex); // widen the window
  counter[counterIndex] = seen + 1;
  if (useLock) unlockWord(words, lockIndex);
}
parentPort.postMessage("done");
