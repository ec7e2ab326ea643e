/**
 * System-wide mirroring (--mirror vm): after a guest has run, every mirror copy of RAM must equal
 * the primary, byte for byte. The guests cover every path a write can take: stores of each width
 * (aligned, misaligned, page-crossing), AMOs, LR/SC, page-table A/D updates by the MMU, virtio DMA
 * and the host's own writes (boot images, HTIF), on one hart and on several in worker threads.
 */
import test from "ava";
import { compareCopies } from "../mirror/copies.ts";
import { RAM_BASE } from "../shared-mem/layout.ts";
import { copiesComparedAtPauses } from "./helpers/copies.ts";
import { assertTranslated, BOTH_ENGINES } from "./helpers/engines.ts";
import { runGuest as runGuestWithin } from "./helpers/machine.ts";

/** 16 MiB of RAM is plenty for these guests, and keeps each comparison of the copies short. */
const RAM = 16 << 20;
const runGuest = (name: string, options: { copies: number; harts?: number; disk?: boolean }) => runGuestWithin(name, { ramSize: RAM, ...options });

const cases: [string, { copies: number; harts?: number; disk?: boolean }, RegExp][] = [
  ["isa-test", { copies: 2 }, /isa-test: \d+ checks, 0 failures/],
  ["isa-test", { copies: 3, harts: 2 }, /isa-test: \d+ checks, 0 failures/],
  ["memstress-small", { copies: 2 }, /memstress: OK/],
  ["seqwrite-small", { copies: 5 }, /seqwrite: OK/],
  ["minikernel", { copies: 2, disk: true }, /minikernel: \d+ checks, 0 failures/],
  ["htif-hello", { copies: 2 }, /Hello over HTIF/],
  ["parallel-fill-small", { copies: 2, harts: 2 }, /parallel-fill: OK/],
];

// On both engines (the translator as soon as a page is hot); the copies are compared at pauses
// while the guest runs as well as at its end: a missed mirror store later overwritten by a
// mirrored one would leave no trace at the end.
for (const [name, options, success] of cases) {
  for (const [engineName, engine] of BOTH_ENGINES) {
    test(`${name} with ${options.copies} copies on ${options.harts ?? 1} hart(s), ${engineName}: every copy equals the primary, during the run and after`, async (t) => {
      let compared: ReturnType<typeof copiesComparedAtPauses> | undefined;
      const run = await runGuestWithin(name, {
        ramSize: RAM,
        ...options,
        engine,
        run: (machine) => ({ pauses: (compared = copiesComparedAtPauses(machine, 20)).pauses }),
      });
      t.regex(run.output, success);
      assertTranslated(t, run.result, engine, 100_000);
      compared!.assert(t, 0); // a guest may finish before the first pause; the end is compared below
      t.deepEqual(compareCopies(run.machine.memory.buffer, run.machine.layout, run.machine.physicalMap), []);
    });
  }
}

test("the copy comparison finds a write that bypassed mirroring, and mirrored host writes do not", async (t) => {
  const run = await runGuest("hello", { copies: 3 });
  const { buffer } = run.machine.memory;
  const { layout } = run.machine;
  run.machine.writeRam(RAM_BASE + 0x10_0000, Uint8Array.from([1, 2, 3]));
  t.deepEqual(compareCopies(buffer, layout, run.machine.physicalMap), []);
  // A write to the primary alone, as an unmirrored store would make.
  new Uint8Array(buffer, layout.ramOffset + 0x20_0005, 1)[0] ^= 0x40;
  t.deepEqual(compareCopies(buffer, layout, run.machine.physicalMap), [
    { page: RAM_BASE + 0x20_0000, copy: 1, firstAddress: RAM_BASE + 0x20_0005 },
    { page: RAM_BASE + 0x20_0000, copy: 2, firstAddress: RAM_BASE + 0x20_0005 },
  ]);
});

test("an unmirrored VM keeps no copies", async (t) => {
  const run = await runGuest("hello", { copies: 1 });
  t.is(run.machine.layout.copies, 1);
  t.is(run.machine.layout.spareFrames, 0);
  t.is(run.machine.layout.p2mOffset, run.machine.layout.ramSize, "nothing but the primary before the p2m table");
  t.deepEqual(compareCopies(run.machine.memory.buffer, run.machine.layout, run.machine.physicalMap), []);
});
