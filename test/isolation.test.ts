/**
 * A guest can reach only its own RAM: stores just past the end of RAM, straddling it, at the
 * guest-physical address where a mirror copy would sit if guest addresses were host offsets, and
 * AMOs there, all fault; the mirror copies and the spare frames stay untouched.
 */
import test from "ava";
import { Machine } from "../hypervisor/machine.ts";
import { compareCopies } from "../mirror/copies.ts";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { Program, R, amoadd_d, sb, sd } from "./helpers/asm.ts";

const RAM = 1 << 20;

test("stores outside the guest's RAM fault and never reach a mirror copy or a spare frame", async (t) => {
  const machine = new Machine({ ramSize: RAM, harts: 1, copies: 3 });
  const targets = [
    RAM_BASE + RAM, // the first byte after RAM
    RAM_BASE + machine.layout.copyStride, // where copy 1 lies in host terms
    RAM_BASE + machine.layout.spareOffset + 0x1000, // the spare frames, in host terms
  ];
  const p = new Program();
  p.setTrapVector("trap").la(R.s10, "log").li(R.s11, 0).li(R.a1, 0x1122334455667788n);
  for (const target of targets) p.li(R.a0, target).emit(sd(R.a1, 0, R.a0), sb(R.a1, 0, R.a0));
  p.li(R.a0, RAM_BASE + RAM - 4).emit(sd(R.a1, 0, R.a0)); // an 8-byte store straddling the end
  p.li(R.a0, RAM_BASE + RAM).emit(amoadd_d(R.a2, R.a1, R.a0));
  p.li(R.a0, RAM_BASE + RAM - 8).emit(sd(R.a1, 0, R.a0)); // the last word of RAM is fine
  p.exit(0);
  p.loggingTrapHandler("trap");
  p.align(8).label("log").space(24 * 16);
  const image = machine.loadElf(p.elf(), "isolation.elf");
  machine.start(image.entry);
  const before = new Uint8Array(machine.memory.buffer, machine.layout.spareOffset, machine.layout.totalBytes - machine.layout.spareOffset).slice();
  const result = await machine.run({ timeoutMs: 10_000 });
  t.is(result.exitCode, 0);
  const hart = machine.harts[0]!;
  t.is(hart.x(R.s11), BigInt(targets.length * 2 + 2), "every out-of-RAM store and the AMO trapped");
  const log = machine.readRam(Number(p.address("log")), 24 * (targets.length * 2 + 2));
  const causes = Array.from({ length: targets.length * 2 + 2 }, (_, i) => new DataView(log.buffer).getBigUint64(24 * i, true));
  t.true(causes.every((c) => c === 7n), `store/AMO access faults, got ${causes.join(",")}`);
  t.deepEqual(compareCopies(machine.memory.buffer, machine.layout, machine.physicalMap), []);
  // Spares and everything past copy 0's RAM: only the mirror copies of the program's own stores changed.
  const after = new Uint8Array(machine.memory.buffer, machine.layout.spareOffset, machine.layout.totalBytes - machine.layout.spareOffset);
  const spareBytes = machine.layout.copyStride - machine.layout.ramSize;
  t.deepEqual(after.subarray(0, spareBytes), before.subarray(0, spareBytes), "spare frames untouched");
  t.is(machine.readRam(RAM_BASE + RAM - 8, 8)[0], 0x88);
});
