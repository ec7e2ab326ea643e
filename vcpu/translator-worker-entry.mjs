// Worker entry for the translator thread (vcpu/jit.ts): from the sources, load the TypeScript
// through tsx (as hypervisor/hart-worker-entry.mjs does: workers do not inherit a loader registered
// programmatically); from the build (dist/vcpu/, imports rewritten to .js) load no tsx. Then serve
// translation requests.
import { existsSync } from "node:fs";

if (existsSync(new URL("./translator-worker.ts", import.meta.url))) {
  const { register } = await import("tsx/esm/api");
  register();
}
await import("./translator-worker.ts");
