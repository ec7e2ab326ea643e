#!/usr/bin/env node
// Entry point for `npx kmemvisor`: load the TypeScript sources through tsx, then run the CLI.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../host/cli.ts");
const status = await main(process.argv.slice(2));
// Exit explicitly: stdin listeners must not keep a finished VM's process alive.
process.exit(status);
