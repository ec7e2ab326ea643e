// Worker entry for piscina: hand over the task functions — the default runs a hart, `runScrubber`
// runs the memory scrubber. Run from the sources (hypervisor/), it first registers tsx to load the
// TypeScript (workers do not inherit a loader registered programmatically by bin/kmemvisor.js).
// Run from the build (dist/hypervisor/, where tsc rewrote the imports below to .js) there is no
// .ts beside it and tsx is not loaded: that would cost the start-up time the build saves.
import { existsSync } from "node:fs";

if (existsSync(new URL("./hart-worker.ts", import.meta.url))) {
  const { register } = await import("tsx/esm/api");
  register();
}
const { runHart } = await import("./hart-worker.ts");
const { runScrubber: scrub } = await import("./scrub-worker.ts");
export default runHart;
export const runScrubber = scrub;
