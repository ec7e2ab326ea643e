/**
 * The host's side of the guest console's input: bytes from stdin to the first VM's UART, with
 * flow control, and on a terminal QEMU's escape key.
 *
 * Flow control: the stream is piped from stdin, and a write completes only when the UART has room
 * for more, so Node stops reading stdin while the guest is not reading (a real serial line's
 * sender waits the same way). `yes | kmemvisor run ...` holds memory flat.
 *
 * Escape (terminal only, as QEMU's `-nographic` console): stdin is raw, so Ctrl-C goes to the
 * guest; Ctrl-A starts a command. Pipes pass every byte through, since a script may send any byte.
 */
import { Writable } from "node:stream";

/** The UART's host side (hypervisor/devices/uart.ts). */
export interface ConsoleSink {
  /** Queue bytes for the guest; false when the backlog is full and the source should wait. */
  pushInput(bytes: Uint8Array): boolean;
  /** Call back once the backlog has room again. */
  whenInputRoom(callback: () => void): void;
}

export interface EscapeActions {
  /** Ctrl-A x: end the run. */
  exit(): void;
  /** Ctrl-A c: a status line in place of QEMU's monitor, which kmemvisor has not. */
  status(): string;
  /** Where the escape commands' own output goes (stderr: the guest's console output is stdout). */
  say(text: string): void;
}

const CTRL_A = 0x01;

export const ESCAPE_HELP = [
  "C-a h    print this help",
  "C-a x    exit kmemvisor (the guest is stopped; status 0, as QEMU)",
  "C-a c    print the machine's status (kmemvisor has no monitor to switch to)",
  "C-a C-a  send C-a to the guest",
].join("\r\n");

export class ConsoleInput extends Writable {
  private escaping = false;

  /** `escapes`: undefined passes every byte through (stdin is not a terminal). */
  constructor(
    private readonly sink: ConsoleSink,
    private readonly escapes?: EscapeActions,
  ) {
    super({ decodeStrings: true });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    const bytes = this.escapes ? this.interpretEscapes(chunk) : chunk;
    if (bytes.length === 0 || this.sink.pushInput(bytes)) done();
    else this.sink.whenInputRoom(() => done());
  }

  /** The bytes of `chunk` meant for the guest, after acting on escape commands in it. */
  private interpretEscapes(chunk: Uint8Array): Uint8Array {
    const actions = this.escapes!;
    const passed: number[] = [];
    for (const byte of chunk) {
      if (!this.escaping) {
        if (byte === CTRL_A) this.escaping = true;
        else passed.push(byte);
        continue;
      }
      this.escaping = false;
      switch (byte) {
        case CTRL_A:
          passed.push(CTRL_A);
          break;
        case 0x78: // x
          actions.say("\r\nkmemvisor: terminated by C-a x\r\n");
          actions.exit();
          break;
        case 0x68: // h
        case 0x3f: // ?
          actions.say(`\r\n${ESCAPE_HELP}\r\n`);
          break;
        case 0x63: // c
          actions.say(`\r\n${actions.status()}\r\n`);
          break;
        default: // as QEMU: an unknown command is dropped
          break;
      }
    }
    return Uint8Array.from(passed);
  }
}
