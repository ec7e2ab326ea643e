/**
 * Zicntr counters and mcountinhibit (read by riscv-tests' rv64mi instret tests): minstret counts
 * retired instructions exactly, stops while mcountinhibit.IR is set and runs on from there.
 */
import test from "ava";
import { CSR, Program, R, csrr, csrw, csrrwi, nop } from "./helpers/asm.ts";
import { runProgram } from "./helpers/machine.ts";

const MCOUNTINHIBIT = 0x320;

test("minstret counts each instruction; mcountinhibit.IR freezes it and release resumes", async (t) => {
  const p = new Program();
  p.emit(
    csrr(R.s1, CSR.minstret),
    nop(),
    nop(),
    csrr(R.s2, CSR.minstret), // s1 + 3: the csrr of s1 and two nops retired in between
    csrrwi(0, MCOUNTINHIBIT, 4), // inhibit IR
    csrr(R.s3, CSR.minstret),
    nop(),
    nop(),
    csrr(R.s4, CSR.minstret), // frozen: equal to s3
    csrrwi(0, MCOUNTINHIBIT, 0), // release (this write counts again)
    csrr(R.s5, CSR.minstret), // s4 + 1
    csrw(CSR.minstret, R.zero), // write 0: the next instruction reads 0
    csrr(R.s6, CSR.minstret),
  ).exit(0);
  const o = await runProgram(p);
  t.is(o.result.exitCode, 0);
  t.is(o.x(R.s2) - o.x(R.s1), 3n);
  t.is(o.x(R.s4), o.x(R.s3));
  t.is(o.x(R.s5), o.x(R.s4) + 1n);
  t.is(o.x(R.s6), 0n);
});
