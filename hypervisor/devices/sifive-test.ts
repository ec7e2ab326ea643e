/**
 * SiFive test finisher ("sifive,test0", QEMU virt at 0x10_0000): a guest ends the
 * emulation by writing a status word. Low 16 bits select the action, high 16 bits
 * carry the exit code for FAIL, exactly as QEMU's hw/misc/sifive_test.c.
 */
import type { AccessWidth, MachineControl, MmioDevice } from './device.ts';

export const SIFIVE_TEST_BASE = 0x10_0000;
export const SIFIVE_TEST_SIZE = 0x1000;

export const FINISHER_FAIL = 0x3333;
export const FINISHER_PASS = 0x5555;
export const FINISHER_RESET = 0x7777;

export interface SifiveTestOptions {
  base?: number;
  control: MachineControl;
}

export class SifiveTest implements MmioDevice {
  readonly name = 'sifive-test';
  readonly base: number;
  readonly size = SIFIVE_TEST_SIZE;
  private readonly control: MachineControl;

  constructor(options: SifiveTestOptions) {
    this.base = options.base ?? SIFIVE_TEST_BASE;
    this.control = options.control;
  }

  read(_offset: number, _width: AccessWidth): bigint {
    return 0n;
  }

  write(offset: number, width: AccessWidth, value: bigint): void {
    // Only the status register at offset 0 exists; byte writes cannot hold a command.
    if (offset !== 0 || width < 2) return;
    const v = Number(value & 0xffff_ffffn);
    switch (v & 0xffff) {
      case FINISHER_FAIL:
        this.control.requestExit(v >>> 16);
        return;
      case FINISHER_PASS:
        this.control.requestExit(0);
        return;
      case FINISHER_RESET:
        // A reset request (Linux `reboot`, OpenSBI system reset). Rebooting the VM is
        // not supported yet, so treat it as a clean power-off rather than ignoring it.
        this.control.requestExit(0);
        return;
      default:
        return; // unknown status words are ignored, as QEMU does (it only logs them)
    }
  }
}
