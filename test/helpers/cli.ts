/** Spawn the kmemvisor CLI (and other commands) with a per-process concurrency limit. */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ProgramOptions } from "../../host/cli.ts";

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

/**
 * `kmemvisor ARGS...` in this process, through host/cli.ts's main, with stdout and stderr
 * captured: for the paths that end before a guest runs (flag and input-file errors), which cost a
 * process start-up each otherwise. Call it from `test.serial` tests: it swaps process.stdout and
 * process.stderr's write while it runs. `options.checkOnly`: parse and read inputs, boot nothing.
 */
export async function kmemvisorInProcess(args: string[], options: ProgramOptions = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  const { main } = await import("../../host/cli.ts");
  const captured = { stdout: "", stderr: "" };
  const streams = { stdout: process.stdout, stderr: process.stderr } as const;
  const originals = { stdout: process.stdout.write, stderr: process.stderr.write };
  for (const name of ["stdout", "stderr"] as const) {
    streams[name].write = ((chunk: string | Uint8Array) => {
      captured[name] += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
      return true;
    }) as typeof process.stdout.write;
  }
  const exitCode = process.exitCode; // main's commands set it, as the CLI does for bin/kmemvisor.js
  try {
    const status = await main(args, options);
    return { status, ...captured };
  } finally {
    streams.stdout.write = originals.stdout;
    streams.stderr.write = originals.stderr;
    process.exitCode = exitCode;
  }
}

/** A temporary directory for a test file's inputs, and a writer of files in it. */
export function scratchDirectory(prefix: string): { dir: string; file(name: string, bytes: Uint8Array | string): string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    file(name, bytes) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      return path;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
