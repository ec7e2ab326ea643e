/**
 * The control and status registers of one hart (privileged spec 1.12), M, S and U modes.
 * Only this hart's thread touches them, except mip, which devices and other harts update
 * atomically in shared memory (see Hart).
 *
 * Registers whose meaningful bits fit in 32 bits are plain numbers (fast to test on every
 * interrupt check); the full-width ones are bigint.
 */

export const CsrNumber = {
  fflags: 0x001, frm: 0x002, fcsr: 0x003,
  sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
  stimecmp: 0x14d, sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144, satp: 0x180,
  mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304, mtvec: 0x305, mcounteren: 0x306,
  menvcfg: 0x30a, mcountinhibit: 0x320, mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
  pmpcfg0: 0x3a0, pmpaddr0: 0x3b0, mcycle: 0xb00, minstret: 0xb02, mhpmcounter3: 0xb03, mhpmevent3: 0x323,
  cycle: 0xc00, time: 0xc01, instret: 0xc02, hpmcounter3: 0xc03,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
  tselect: 0x7a0, tdata1: 0x7a1,
} as const;

export const Priv = { U: 0, S: 1, M: 3 } as const;
export type Priv = (typeof Priv)[keyof typeof Priv];

/** mstatus bits. */
export const MStatus = {
  SIE: 1 << 1, MIE: 1 << 3, SPIE: 1 << 5, MPIE: 1 << 7, SPP: 1 << 8,
  MPP_SHIFT: 11, MPP: 3 << 11, FS_SHIFT: 13, FS: 3 << 13, MPRV: 1 << 17, SUM: 1 << 18, MXR: 1 << 19, TVM: 1 << 20, TW: 1 << 21, TSR: 1 << 22,
} as const;
/**
 * Writable mstatus bits held here (VS/XS stay 0: no V; UBE/SBE/MBE little-endian only). FS is
 * writable too but lives in the hart's shared slot (CsrContext.fs), where the engines reach it.
 */
const MSTATUS_WRITABLE = MStatus.SIE | MStatus.MIE | MStatus.SPIE | MStatus.MPIE | MStatus.SPP | MStatus.MPP |
  MStatus.MPRV | MStatus.SUM | MStatus.MXR | MStatus.TVM | MStatus.TW | MStatus.TSR;
const SSTATUS_VISIBLE = MStatus.SIE | MStatus.SPIE | MStatus.SPP | MStatus.SUM | MStatus.MXR;
/** mstatus.SD (bit 63): some extension state is Dirty; with FS the only one, FS = Dirty. */
const STATUS_SD = 1n << 63n;
const FS_DIRTY = 3;
/** UXL = SXL = 2 (64-bit), read-only. */
const MSTATUS_HIGH = (2n << 32n) | (2n << 34n);
const SSTATUS_HIGH = 2n << 32n;

/** Interrupt bit numbers in mip/mie. */
export const Irq = { SSI: 1, MSI: 3, STI: 5, MTI: 7, SEI: 9, MEI: 11 } as const;
const S_INTERRUPTS = (1 << Irq.SSI) | (1 << Irq.STI) | (1 << Irq.SEI);
const ALL_INTERRUPTS = S_INTERRUPTS | (1 << Irq.MSI) | (1 << Irq.MTI) | (1 << Irq.MEI);
/** mip bits software may write through mip (the rest are driven by devices). */
const MIP_WRITABLE = S_INTERRUPTS;
/** Exceptions that may be delegated (everything but ecall-from-M). */
const MEDELEG_WRITABLE = 0xb3ff;

/** RV64 with A, C, D, F, I, M, S, U. */
export const MISA = (2n << 62n) | BigInt((1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20));

export class IllegalCsrAccess extends Error {}

/** mcountinhibit bits: CY stops mcycle, IR stops minstret. */
const INHIBIT_CY = 1;
const INHIBIT_IR = 4;

/** menvcfg.STCE (bit 63): enables the Sstc extension's stimecmp. */
export const MENVCFG_STCE = 1n << 63n;

export interface CsrContext {
  priv(): Priv;
  hartId: number;
  instret(): bigint;
  mtime(): bigint;
  /** Atomically read / update the shared mip word. */
  readMip(): number;
  updateMip(mask: number, value: number): void;
  /** stimecmp or menvcfg.STCE changed: re-evaluate STIP. */
  timerChanged(): void;
  /** mstatus.FS (0..3) and fcsr (frm << 5 | fflags), kept in the hart's shared slots. */
  fs(): number;
  setFs(value: number): void;
  fcsr(): number;
  setFcsr(value: number): void;
}

const MASK64 = (1n << 64n) - 1n;
const u64 = (v: bigint) => v & MASK64;

export class CsrFile {
  mstatus = 0;
  medeleg = 0;
  mideleg = 0;
  mie = 0;
  mtvec = 0n;
  mcounteren = 0;
  mscratch = 0n;
  mepc = 0n;
  mcause = 0n;
  mtval = 0n;
  menvcfg = 0n;
  mcountinhibit = 0;
  stvec = 0n;
  scounteren = 0;
  senvcfg = 0n;
  /** Sstc: supervisor timer compare; STIP follows time >= stimecmp while menvcfg.STCE is set. */
  stimecmp = (1n << 64n) - 1n;
  sscratch = 0n;
  sepc = 0n;
  scause = 0n;
  stval = 0n;
  satp = 0n;
  readonly pmpcfg = new Array<bigint>(16).fill(0n);
  readonly pmpaddr = new Array<bigint>(64).fill(0n);
  /** Offsets making mcycle/minstret writable while counting on from the retired total. */
  private cycleOffset = 0n;
  private instretOffset = 0n;
  /** Counter values frozen while mcountinhibit.CY / .IR are set. */
  private frozenCycle = 0n;
  private frozenInstret = 0n;

  constructor(private readonly ctx: CsrContext) {}

  /** The value of a CSR, or throws IllegalCsrAccess (privilege, existence, counter enable). */
  read(csr: number): bigint {
    this.checkPrivilege(csr, false);
    const c = CsrNumber;
    switch (csr) {
      case c.mstatus: return BigInt(this.mstatus) | MSTATUS_HIGH | this.fsBits();
      case c.sstatus: return BigInt(this.mstatus & SSTATUS_VISIBLE) | SSTATUS_HIGH | this.fsBits();
      case c.fflags: return BigInt(this.fpCsr() & 0x1f);
      case c.frm: return BigInt((this.fpCsr() >>> 5) & 7);
      case c.fcsr: return BigInt(this.fpCsr() & 0xff);
      case c.misa: return MISA;
      case c.medeleg: return BigInt(this.medeleg);
      case c.mideleg: return BigInt(this.mideleg);
      case c.mie: return BigInt(this.mie);
      case c.sie: return BigInt(this.mie & this.mideleg);
      case c.mip: return BigInt(this.ctx.readMip());
      case c.sip: return BigInt(this.ctx.readMip() & this.mideleg);
      case c.mtvec: return this.mtvec;
      case c.stvec: return this.stvec;
      case c.mcounteren: return BigInt(this.mcounteren);
      case c.scounteren: return BigInt(this.scounteren);
      case c.menvcfg: return this.menvcfg;
      case c.senvcfg: return this.senvcfg;
      case c.stimecmp:
        this.checkStimecmpAccess();
        return this.stimecmp;
      case c.mcountinhibit: return BigInt(this.mcountinhibit);
      case c.mscratch: return this.mscratch;
      case c.sscratch: return this.sscratch;
      case c.mepc: return this.mepc;
      case c.sepc: return this.sepc;
      case c.mcause: return this.mcause;
      case c.scause: return this.scause;
      case c.mtval: return this.mtval;
      case c.stval: return this.stval;
      case c.satp:
        if (this.ctx.priv() === Priv.S && this.mstatus & MStatus.TVM) throw new IllegalCsrAccess();
        return this.satp;
      case c.mcycle: case c.cycle: return this.mcountinhibit & INHIBIT_CY ? this.frozenCycle : u64(this.ctx.instret() + this.cycleOffset);
      case c.minstret: case c.instret: return this.mcountinhibit & INHIBIT_IR ? this.frozenInstret : u64(this.ctx.instret() + this.instretOffset);
      case c.time: return this.ctx.mtime();
      case c.mvendorid: case c.marchid: case c.mimpid: case c.mconfigptr: return 0n;
      case c.mhartid: return BigInt(this.ctx.hartId);
      case c.tselect: return 0n;
      case c.tdata1: return 0n;
    }
    if (csr >= c.pmpcfg0 && csr < c.pmpcfg0 + 16) {
      if (csr & 1) throw new IllegalCsrAccess(); // odd pmpcfg registers do not exist on RV64
      return this.pmpcfg[csr - c.pmpcfg0]!;
    }
    if (csr >= c.pmpaddr0 && csr < c.pmpaddr0 + 64) return this.pmpaddr[csr - c.pmpaddr0]!;
    // Unimplemented hardware performance counters and events read as zero.
    if ((csr >= c.mhpmcounter3 && csr <= 0xb1f) || (csr >= c.mhpmevent3 && csr <= 0x33f)) return 0n;
    if (csr >= c.hpmcounter3 && csr <= 0xc1f) return 0n;
    throw new IllegalCsrAccess();
  }

  write(csr: number, value: bigint): void {
    this.checkPrivilege(csr, true);
    const c = CsrNumber;
    const low = Number(value & 0xffffffffn);
    switch (csr) {
      case c.mstatus: {
        let v = (this.mstatus & ~MSTATUS_WRITABLE) | (low & MSTATUS_WRITABLE);
        if (((v & MStatus.MPP) >>> MStatus.MPP_SHIFT) === 2) v &= ~MStatus.MPP; // reserved MPP → U (WARL)
        this.mstatus = v;
        this.ctx.setFs((low & MStatus.FS) >>> MStatus.FS_SHIFT);
        return;
      }
      case c.sstatus:
        this.mstatus = (this.mstatus & ~SSTATUS_VISIBLE) | (low & SSTATUS_VISIBLE);
        this.ctx.setFs((low & MStatus.FS) >>> MStatus.FS_SHIFT);
        return;
      case c.fflags: this.setFpCsr((this.fpCsr() & ~0x1f) | (low & 0x1f)); return;
      case c.frm: this.setFpCsr((this.fpCsr() & 0x1f) | ((low & 7) << 5)); return;
      case c.fcsr: this.setFpCsr(low & 0xff); return;
      case c.misa: return; // WARL, fixed
      case c.medeleg: this.medeleg = low & MEDELEG_WRITABLE; return;
      case c.mideleg: this.mideleg = low & S_INTERRUPTS; return;
      case c.mie: this.mie = low & ALL_INTERRUPTS; return;
      case c.sie: this.mie = (this.mie & ~this.mideleg) | (low & this.mideleg); return;
      case c.mip: this.ctx.updateMip(this.sstcEnabled ? MIP_WRITABLE & ~(1 << Irq.STI) : MIP_WRITABLE, low); return;
      case c.sip: this.ctx.updateMip(MIP_WRITABLE & this.mideleg & (1 << Irq.SSI), low); return;
      case c.mtvec: this.mtvec = value & ~2n; return; // modes 0 (direct) and 1 (vectored)
      case c.stvec: this.stvec = value & ~2n; return;
      case c.mcounteren: this.mcounteren = low & 7; return;
      case c.scounteren: this.scounteren = low & 7; return;
      case c.menvcfg: this.menvcfg = value & MENVCFG_STCE; this.ctx.timerChanged(); return;
      case c.stimecmp:
        this.checkStimecmpAccess();
        this.stimecmp = value;
        this.ctx.timerChanged();
        return;
      case c.senvcfg: this.senvcfg = 0n; return;
      case c.mcountinhibit: {
        // Freeze a counter when it becomes inhibited (this write itself no longer counts, as in
        // Spike); when released it runs on from the frozen value, counting the releasing write.
        const retired = this.ctx.instret();
        const next = low & (INHIBIT_CY | INHIBIT_IR);
        if (next & INHIBIT_CY && !(this.mcountinhibit & INHIBIT_CY)) this.frozenCycle = u64(retired + this.cycleOffset);
        if (!(next & INHIBIT_CY) && this.mcountinhibit & INHIBIT_CY) this.cycleOffset = this.frozenCycle - retired;
        if (next & INHIBIT_IR && !(this.mcountinhibit & INHIBIT_IR)) this.frozenInstret = u64(retired + this.instretOffset);
        if (!(next & INHIBIT_IR) && this.mcountinhibit & INHIBIT_IR) this.instretOffset = this.frozenInstret - retired;
        this.mcountinhibit = next;
        return;
      }
      case c.mscratch: this.mscratch = value; return;
      case c.sscratch: this.sscratch = value; return;
      case c.mepc: this.mepc = value & ~1n; return;
      case c.sepc: this.sepc = value & ~1n; return;
      case c.mcause: this.mcause = value; return;
      case c.scause: this.scause = value; return;
      case c.mtval: this.mtval = value; return;
      case c.stval: this.stval = value; return;
      case c.satp: {
        if (this.ctx.priv() === Priv.S && this.mstatus & MStatus.TVM) throw new IllegalCsrAccess();
        const mode = value >> 60n;
        // Only Bare (0) and Sv39 (8) are supported; writing another mode leaves satp unchanged (WARL).
        if (mode === 0n || mode === 8n) this.satp = value & ((0xfn << 60n) | 0xffffn << 44n | ((1n << 44n) - 1n));
        return;
      }
      case c.mcycle:
        if (this.mcountinhibit & INHIBIT_CY) this.frozenCycle = value;
        else this.cycleOffset = value - this.ctx.instret() - 1n; // as minstret: we count cycle = instret
        return;
      case c.minstret:
        if (this.mcountinhibit & INHIBIT_IR) this.frozenInstret = value;
        else this.instretOffset = value - this.ctx.instret() - 1n; // the csr write itself retires
        return;
      case c.tselect: case c.tdata1: return;
    }
    if (csr >= c.pmpcfg0 && csr < c.pmpcfg0 + 16) {
      if (csr & 1) throw new IllegalCsrAccess();
      this.pmpcfg[csr - c.pmpcfg0] = value;
      return;
    }
    if (csr >= c.pmpaddr0 && csr < c.pmpaddr0 + 64) {
      this.pmpaddr[csr - c.pmpaddr0] = value & ((1n << 54n) - 1n);
      return;
    }
    if ((csr >= c.mhpmcounter3 && csr <= 0xb1f) || (csr >= c.mhpmevent3 && csr <= 0x33f)) return;
    throw new IllegalCsrAccess();
  }

  /** mstatus.FS and SD as they read in mstatus/sstatus. */
  private fsBits(): bigint {
    const fs = this.ctx.fs();
    return (BigInt(fs) << BigInt(MStatus.FS_SHIFT)) | (fs === FS_DIRTY ? STATUS_SD : 0n);
  }

  /** fcsr, through which fflags and frm are reached: illegal while FS is Off. */
  private fpCsr(): number {
    if (this.ctx.fs() === 0) throw new IllegalCsrAccess();
    return this.ctx.fcsr();
  }
  private setFpCsr(value: number): void {
    if (this.ctx.fs() === 0) throw new IllegalCsrAccess();
    this.ctx.setFcsr(value);
    this.ctx.setFs(FS_DIRTY);
  }

  /** Sstc enabled: menvcfg.STCE. */
  get sstcEnabled(): boolean {
    return (this.menvcfg & MENVCFG_STCE) !== 0n;
  }

  /** S-mode reaches stimecmp only when M-mode enabled Sstc and lets it read time (mcounteren.TM). */
  private checkStimecmpAccess(): void {
    if (this.ctx.priv() === Priv.S && (!this.sstcEnabled || (this.mcounteren & 2) === 0)) throw new IllegalCsrAccess();
  }

  /** Privilege bits 9:8 give the lowest mode allowed; bits 11:10 = 3 mean read-only. */
  private checkPrivilege(csr: number, writing: boolean): void {
    const priv = this.ctx.priv();
    if (priv < ((csr >>> 8) & 3)) throw new IllegalCsrAccess();
    if (writing && (csr >>> 10) === 3) throw new IllegalCsrAccess();
    if (csr >= CsrNumber.cycle && csr <= 0xc1f && priv < Priv.M) {
      const bit = 1 << (csr - CsrNumber.cycle);
      if (!(this.mcounteren & bit)) throw new IllegalCsrAccess();
      if (priv === Priv.U && !(this.scounteren & bit)) throw new IllegalCsrAccess();
    }
  }
}
