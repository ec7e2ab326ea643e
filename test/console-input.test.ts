/**
 * Console input: flow control from stdin to the guest's UART (memory stays flat whatever the
 * source sends), and QEMU's escape key on a terminal (C-a x exits, C-a C-a sends C-a, C-a h helps).
 * The terminal cases run kmemvisor under a real pseudo-terminal made by util-linux's `script`.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { ConsoleInput, type EscapeActions } from "../host/console-input.ts";
import { HOST_INPUT_LIMIT, Uart16550 } from "../hypervisor/devices/uart.ts";
import { Program, R, addi, andi, beq, lbu, or, sb, slli, sw } from "./helpers/asm.ts";
import { CLI, ROOT } from "./helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "kmemvisor-console-test-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const UART = 0x1000_0000;
const FINISHER = 0x10_0000;

/** Prints "ready\n", then exits with the first byte it receives as its exit code. */
function echoFirstByteGuest(): string {
  const p = new Program();
  p.li(R.t0, UART);
  for (const c of "ready\n") p.li(R.t1, c.charCodeAt(0)).emit(sb(R.t1, 0, R.t0));
  p.label("poll").emit(lbu(R.t1, 5, R.t0), andi(R.t1, R.t1, 1)).branch(beq, R.t1, R.zero, "poll");
  p.emit(lbu(R.a0, 0, R.t0), slli(R.a0, R.a0, 16));
  p.li(R.t2, 0x3333).emit(or(R.a0, R.a0, R.t2));
  p.li(R.t6, FINISHER).emit(sw(R.a0, 0, R.t6));
  p.label("spin").j("spin");
  const path = join(dir, "echo-first-byte.elf");
  writeFileSync(path, p.elf());
  return path;
}

/** Prints "ready\n" and then loops for ever, never reading its console. */
function deafGuest(): string {
  const p = new Program();
  p.li(R.t0, UART);
  for (const c of "ready\n") p.li(R.t1, c.charCodeAt(0)).emit(sb(R.t1, 0, R.t0));
  p.label("forever").emit(addi(R.t2, R.t2, 1)).j("forever");
  const path = join(dir, "deaf.elf");
  writeFileSync(path, p.elf());
  return path;
}

function recordingActions(): EscapeActions & { exits: number; said: string[] } {
  const actions = {
    exits: 0,
    said: [] as string[],
    exit: () => actions.exits++,
    status: () => "status line",
    say: (text: string) => actions.said.push(text),
  };
  return actions;
}

async function feed(input: ConsoleInput, bytes: number[]): Promise<void> {
  await new Promise<void>((resolve, reject) => input.write(Buffer.from(bytes), (e) => (e ? reject(e) : resolve())));
}

// --- escape commands, in-process -----------------------------------------------------------------

test("terminal: C-a x exits and sends the guest nothing; C-a C-a sends one C-a", async (t) => {
  const uart = new Uart16550({});
  const actions = recordingActions();
  const input = new ConsoleInput(uart, actions);
  await feed(input, [0x61, 0x01, 0x01, 0x62]);
  t.is(uart.inputBacklog, 3); // a, C-a, b
  t.is(actions.exits, 0);
  await feed(input, [0x01]); // the command byte may come in the next chunk
  await feed(input, [0x78]);
  t.is(actions.exits, 1);
  t.is(uart.inputBacklog, 3);
  t.regex(actions.said.join(""), /terminated by C-a x/);
});

test("terminal: C-a h prints the commands, C-a c a status line, unknown commands are dropped", async (t) => {
  const uart = new Uart16550({});
  const actions = recordingActions();
  const input = new ConsoleInput(uart, actions);
  await feed(input, [0x01, 0x68, 0x01, 0x63, 0x01, 0x7a, 0x41]);
  const said = actions.said.join("");
  t.regex(said, /C-a x +exit/);
  t.regex(said, /C-a C-a +send C-a/);
  t.regex(said, /status line/);
  t.is(actions.exits, 0);
  t.is(uart.inputBacklog, 1); // only the A
});

test("a pipe passes every byte, C-a included", async (t) => {
  const uart = new Uart16550({});
  const input = new ConsoleInput(uart);
  await feed(input, [0x01, 0x78, 0x01]);
  t.is(uart.inputBacklog, 3);
});

test("flow control: a source faster than the guest is held at the UART's limit, nothing dropped", async (t) => {
  const uart = new Uart16550({});
  const input = new ConsoleInput(uart);
  const source = new PassThrough();
  source.pipe(input);
  const chunk = Buffer.alloc(16 * 1024, 0x79);
  let accepted = 0;
  // Write until the pipe pushes back, as `yes` blocks on a full pipe.
  for (let i = 0; i < 1000 && source.write(chunk); i++) accepted += chunk.length;
  accepted += chunk.length;
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.true(accepted < 1024 * 1024, `the source could queue ${accepted} bytes`);
  t.true(uart.inputBacklog <= HOST_INPUT_LIMIT + 4096 + chunk.length, `backlog ${uart.inputBacklog}`);
  const backlog = uart.inputBacklog;
  // The guest reads everything: the source goes on, and every byte arrives in order.
  let read = 0;
  const drained = new Promise<void>((resolve) => source.once("drain", resolve));
  while (read < backlog) {
    if ((uart.read(5, 1) & 1n) === 0n) {
      uart.tick();
      continue;
    }
    t.is(uart.read(0, 1), 0x79n);
    read++;
    uart.tick();
  }
  await drained;
  t.pass();
});

// --- whole process ------------------------------------------------------------------------------

interface Spawned {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Bytes the child's stdin pipe accepted from us. */
  written: number;
}

/**
 * Run `args` with stdin a pipe; once the guest prints "ready", either send `keys` (then keep
 * stdin open) or, when `flood` is set, write as fast as the pipe takes.
 */
function spawnWithInput(command: string, args: string[], input: { keys?: string; flood?: boolean }, killAfterMs = 60_000): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let written = 0;
    let started = false;
    const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    const chunk = Buffer.alloc(64 * 1024, 0x79);
    const flood = () => {
      while (child.stdin.writable) {
        written += chunk.length;
        if (!child.stdin.write(chunk)) {
          child.stdin.once("drain", flood);
          return;
        }
      }
    };
    child.stdin.on("error", () => {});
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString("latin1");
      if (!started && stdout.includes("ready")) {
        started = true;
        if (input.keys !== undefined) child.stdin.write(input.keys);
        if (input.flood) flood();
      }
    });
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, written });
    });
  });
}

/** kmemvisor's command line run under a pseudo-terminal (stdin a TTY, as a user's shell gives). */
function underTerminal(args: string[]): [string, string[]] {
  const quoted = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  return ["script", ["-qfec", quoted, "/dev/null"]];
}

test("`yes | kmemvisor run` on a guest that never reads: the host stops reading, memory stays flat", async (t) => {
  const r = await spawnWithInput(process.execPath, [CLI, "run", deafGuest(), "--timeout", "3"], { flood: true });
  t.is(r.status, 124, r.stderr);
  // Pipe buffers (64 KiB each side), Node's stream buffers and the UART's limit: well under 1 MiB.
  // Without flow control the process reads everything it is sent, hundreds of MB in 3 s.
  t.true(r.written < 1024 * 1024, `the process took ${r.written} bytes of input`);
});

test("on a terminal, C-a x ends the run: status 0 at once", async (t) => {
  const [command, args] = underTerminal(["run", deafGuest(), "--timeout", "60"]);
  const r = await spawnWithInput(command, args, { keys: "\x01x" });
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(r.stdout + r.stderr, /terminated by C-a x/);
});

test("on a terminal, C-a C-a reaches the guest as one C-a", async (t) => {
  const [command, args] = underTerminal(["run", echoFirstByteGuest(), "--timeout", "60"]);
  const r = await spawnWithInput(command, args, { keys: "\x01\x01" });
  t.is(r.status, 1, r.stdout + r.stderr);
});

test("through a pipe, C-a is an ordinary byte for the guest", async (t) => {
  const r = await spawnWithInput(process.execPath, [CLI, "run", echoFirstByteGuest(), "--timeout", "60"], { keys: "\x01x" });
  t.is(r.status, 1, r.stderr);
});
