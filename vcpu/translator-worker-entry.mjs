// Worker entry for the translator thread (vcpu/jit.ts): load the TypeScript sources through tsx,
// as hypervisor/hart-worker-entry.mjs does, then serve translation requests.
import { register } from "tsx/esm/api";

register();
await import("./translator-worker.ts");
