// A worker thread for test/mailbox.test.ts standing in for a hart: runs a script of MMIO accesses
// through MmioMailboxClient ("post" = tryPost, "read", "write"; "put" = post, or write when the
// ring is full, as a hart does) and sends back each result; a "report" step sends the results so
// far at once (then the script goes on); ["count", addr, width, n] puts the values 0..n-1.
import { register } from "tsx/esm/api";
import { parentPort, workerData } from "node:worker_threads";

register();
const { MmioMailboxClient } = await import("../../sync/mailbox.ts");
const { memory, hartBase, controlOffset, script } = workerData;
const client = new MmioMailboxClient(memory.buffer, hartBase, controlOffset);
const results = [];
for (const [op, addr, width, value] of script) {
  if (op === "report") parentPort.postMessage([...results]);
  else if (op === "count") for (let i = 0; i < value; i++) client.tryPost(addr, width, BigInt(i)) || client.write(addr, width, BigInt(i));
  else if (op === "post") results.push(client.tryPost(addr, width, BigInt(value)));
  else if (op === "write") results.push(client.write(addr, width, BigInt(value)));
  else results.push(Number(client.read(addr, width)));
}
parentPort.postMessage(results);
