#!/usr/bin/env node
// Entry point for `npx kmemvisor`. Runs the compiled JavaScript in dist/ (`npm run build`, which
// `npm install` runs) while it was built from the sources as they are now; otherwise, or with
// KMEMVISOR_NO_DIST=1, loads the TypeScript sources through tsx (~0.6 s more start-up). An edited
// source file therefore never runs stale: see scripts/dist-manifest.js.
import { fileURLToPath } from "node:url";
import { staleReason } from "../scripts/dist-manifest.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const noDist = (process.env.KMEMVISOR_NO_DIST ?? "") !== "" && process.env.KMEMVISOR_NO_DIST !== "0";
let main;
if (!noDist && staleReason(root) === null) {
  ({ main } = await import("../dist/host/cli.js"));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../host/cli.ts"));
}
const status = await main(process.argv.slice(2));
// Exit explicitly: stdin listeners must not keep a finished VM's process alive.
process.exit(status);
