/** Spawn the kmemvisor CLI (and other commands) with a per-process concurrency limit. */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = join(ROOT, "bin", "kmemvisor.js");
export const GUESTS = join(ROOT, "guests", "bin");
export const EXPECTED = join(ROOT, "guests", "expected");

export interface Completed {
  /** Exit status, or null when killed by a signal. */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  milliseconds: number;
  /** True when our own kill timer ended the process. */
  killed: boolean;
}

/** At most this many child processes per test file at once (ava runs test files in parallel too). */
const LIMIT = 2;
let running = 0;
const waiting: (() => void)[] = [];

async function slot(): Promise<() => void> {
  if (running >= LIMIT) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  return () => {
    running--;
    waiting.shift()?.();
  };
}

export interface SpawnOptions {
  /** Kill the process (SIGKILL) after this long; default 60 s. */
  killAfterMs?: number;
  cwd?: string;
  /** Extra environment variables for the process. */
  env?: Record<string, string>;
}

export async function run(command: string, args: string[], options: SpawnOptions = {}): Promise<Completed> {
  const release = await slot();
  try {
    return await new Promise<Completed>((resolve, reject) => {
      const started = performance.now();
      const child = spawn(command, args, {
        cwd: options.cwd ?? ROOT,
        stdio: ["ignore", "pipe", "pipe"],
        ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        child.kill("SIGKILL");
      }, options.killAfterMs ?? 60_000);
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on("close", (status, signal) => {
        clearTimeout(timer);
        resolve({
          status,
          signal,
          stdout: Buffer.concat(out).toString("latin1"),
          stderr: Buffer.concat(err).toString("utf8"),
          milliseconds: performance.now() - started,
          killed,
        });
      });
    });
  } finally {
    release();
  }
}

/** `node bin/kmemvisor.js ARGS...` */
export function kmemvisor(args: string[], options: SpawnOptions = {}): Promise<Completed> {
  return run(process.execPath, [CLI, ...args], options);
}
