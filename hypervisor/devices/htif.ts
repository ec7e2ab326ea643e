/**
 * HTIF (host-target interface) as Spike implements it: two 64-bit words in guest RAM,
 * `tohost` and `fromhost`, found through the ELF symbols of those names. It is not an
 * MMIO device: the guest writes RAM with ordinary stores, and the run loop calls
 * tick() between engine slices to poll `tohost`.
 *
 * A tohost command is  device[63:56] | cmd[55:48] | payload[47:0]:
 *   device 0 (syscall proxy), cmd 0, payload odd   exit with code payload >> 1
 *                                                  (riscv-tests: 0 = pass, else the
 *                                                  failing test number)
 *   device 0, anything else                        a pointer to a proxy-kernel syscall
 *                                                  block: unsupported, raises an Error
 *   device 1 (console), cmd 1                      putchar(payload & 0xff)
 *   device 1 (console), cmd 0                      getchar: there is no HTIF input, so
 *                                                  it answers at once with no character
 *                                                  (response bit 8, "valid", clear)
 * As in Spike, tohost is cleared as soon as a command is taken, and responses go to
 * fromhost only while fromhost is 0 (the guest zeroes it after reading), queued otherwise.
 */
import type { MachineControl } from './device.ts';

export interface HtifOptions {
  /** Guest-physical address of the `tohost` symbol. */
  tohost: number;
  /** Guest-physical address of the `fromhost` symbol. */
  fromhost: number;
  read64: (gpa: number) => bigint;
  write64: (gpa: number, value: bigint) => void;
  output: (byte: number) => void;
  control: MachineControl;
}

const DEVICE_SYSCALL = 0n;
const DEVICE_CONSOLE = 1n;
const CONSOLE_GETCHAR = 0n;
const CONSOLE_PUTCHAR = 1n;
const PAYLOAD_MASK = (1n << 48n) - 1n;

function hex(value: bigint | number): string {
  return '0x' + value.toString(16);
}

/** Build a fromhost response word for a command on a device. */
function response(device: bigint, cmd: bigint, payload: bigint): bigint {
  return (device << 56n) | (cmd << 48n) | (payload & PAYLOAD_MASK);
}

export class Htif {
  private readonly options: HtifOptions;
  private readonly responses: bigint[] = [];

  constructor(options: HtifOptions) {
    this.options = options;
  }

  /** Poll tohost once; deliver any queued response to fromhost. */
  tick(): void {
    const { tohost, read64, write64 } = this.options;
    const command = read64(tohost);
    if (command !== 0n) {
      write64(tohost, 0n);
      this.execute(command);
    }
    if (this.responses.length > 0 && read64(this.options.fromhost) === 0n) {
      write64(this.options.fromhost, this.responses.shift()!);
    }
  }

  private execute(command: bigint): void {
    const device = command >> 56n;
    const cmd = (command >> 48n) & 0xffn;
    const payload = command & PAYLOAD_MASK;
    if (device === DEVICE_SYSCALL) {
      if (cmd === 0n && (payload & 1n) === 1n) {
        this.options.control.requestExit(Number(payload >> 1n));
        return;
      }
      throw new Error(
        `HTIF: the guest wrote tohost = ${hex(command)}, a proxy-kernel (riscv-pk) syscall ` +
          `request (magic_mem at ${hex(payload)}); proxy-kernel syscalls are unsupported — ` +
          `only exit (payload with bit 0 set) and the console device work`,
      );
    }
    if (device === DEVICE_CONSOLE) {
      if (cmd === CONSOLE_PUTCHAR) {
        this.options.output(Number(payload & 0xffn));
        this.responses.push(response(DEVICE_CONSOLE, CONSOLE_PUTCHAR, 0n));
        return;
      }
      if (cmd === CONSOLE_GETCHAR) {
        // No input source is wired to HTIF: answer "no character" rather than leave
        // the guest polling fromhost forever.
        this.responses.push(response(DEVICE_CONSOLE, CONSOLE_GETCHAR, 0n));
        return;
      }
      throw new Error(`HTIF: unsupported console command ${cmd} (tohost = ${hex(command)})`);
    }
    throw new Error(`HTIF: unknown device ${device} (tohost = ${hex(command)}); only 0 (exit) and 1 (console) exist`);
  }
}
