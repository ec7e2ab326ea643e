/**
 * Why an engine call returned to the host. The engine leaves pc at the instruction named
 * (not yet executed) for every reason except Budget, where pc is the next instruction to run.
 */
export const Exit = {
  /** The instruction budget ran out (or host code asked for an early return): nothing pending. */
  Budget: 0,
  /** A synchronous exception: cause and tval are in the hart's TRAP_CAUSE/TRAP_TVAL slots. */
  Trap: 1,
  /** No decode-cache entry for the raw bits in MISS_RAW: decode them and call again. */
  DecodeMiss: 2,
  Ecall: 3,
  Ebreak: 4,
  Mret: 5,
  Sret: 6,
  Wfi: 7,
  SfenceVma: 8,
  /** FENCE.I: the host checks the hart's translated pages against memory (vcpu/jit.ts). */
  FenceI: 9,
  /** Translated code reached pc, an address it holds no translation for: interpret from there. */
  NotTranslated: 10,
} as const;
export type Exit = (typeof Exit)[keyof typeof Exit];

export { ExitRequest } from "../shared-mem/layout.ts";

/** Exception causes (privileged spec, mcause values with interrupt bit clear). */
export const Cause = {
  InstructionMisaligned: 0,
  InstructionAccessFault: 1,
  IllegalInstruction: 2,
  Breakpoint: 3,
  LoadMisaligned: 4,
  LoadAccessFault: 5,
  StoreMisaligned: 6,
  StoreAccessFault: 7,
  EcallFromU: 8,
  EcallFromS: 9,
  EcallFromM: 11,
  InstructionPageFault: 12,
  LoadPageFault: 13,
  StorePageFault: 15,
} as const;
