// Worker entry for piscina: load the TypeScript sources through tsx (workers do not inherit a
// loader registered programmatically by bin/kmemvisor.js), then hand over the task function.
import { register } from "tsx/esm/api";

register();
const { runHart } = await import("./hart-worker.ts");
export default runHart;
