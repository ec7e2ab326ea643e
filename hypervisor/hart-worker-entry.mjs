// Worker entry for piscina: load the TypeScript sources through tsx (workers do not inherit a
// loader registered programmatically by bin/kmemvisor.js), then hand over the task functions:
// the default runs a hart, `runScrubber` runs the memory scrubber.
import { register } from "tsx/esm/api";

register();
const { runHart } = await import("./hart-worker.ts");
const { runScrubber: scrub } = await import("./scrub-worker.ts");
export default runHart;
export const runScrubber = scrub;
