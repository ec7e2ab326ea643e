/**
 * The host memory layout of one VM, inside one shared WebAssembly.Memory.
 *
 *   [0, S)                 copy 0 (the primary): native frames for guest RAM, then spare frames
 *   [k·S, (k+1)·S)         mirror copy k, for k = 1 .. nmr-1  (mirror(a) = a + k·S)
 *   p2m                    guest-physical page -> host frame table (u32 per page)
 *   poison map             one byte per host frame of every copy (DUE injection)
 *   protection map         one byte per guest page: mirrored (protected) or not
 *   code map, heat         one i32 each per host frame of copy 0 (the translator: vcpu/jit.ts)
 *   mirror locks           STRIPE_COUNT padded mutex words (sync/stripes.ts), mirrored VMs only
 *   hart areas             one HART_AREA_SIZE block per hart: registers, decode cache, TLB
 *   control block          VM-wide run state (stop flag, exit code, MMIO doorbell) and CLINT state
 *   device state           registers of the devices harts reach directly (PLIC, UART, virtio IRQ)
 *
 * RAM sits at host offset 0 so that the mirror of a host address is exactly a + k·S, as in the
 * kMemvisor paper; every other area follows the copies. The spare frames lie inside the copy
 * stride S (S = RAM + spares), so a guest page remapped to a spare still has its mirrors at
 * + k·S and every engine fast path stays valid after a recovery.
 */

export const RAM_BASE = 0x8000_0000;
export const PAGE_SIZE = 4096;
export const WASM_PAGE = 65536;
/**
 * The most host memory one VM can have: a shared WebAssembly.Memory of 65536 pages (4 GiB), which
 * Node 20 (V8 11.3) allocates; wasm32 cannot address more. Every host offset is therefore an
 * unsigned 32-bit number: index typed arrays with `>>> 2`, never `>> 2` (see docs/decisions.md).
 */
export const MAX_HOST_BYTES = 2 ** 32;

/** Values host code writes into a hart's EXIT_REQUEST slot (HartSlot) during a slow-path call. */
export const ExitRequest = {
  None: 0,
  /** The slow path raised an exception (TRAP_CAUSE/TRAP_TVAL set): abandon the instruction. */
  Trap: 1,
  /** Finish this instruction, then return (interrupts may have become pending, VM stopping). */
  Return: 2,
} as const;

/** Per-hart state: every slot is 8 bytes, little-endian, at these byte offsets from the hart base. */
export const HartSlot = {
  /** x0..x31, 8 bytes each. */
  X: 0,
  PC: 256,
  /** Instructions retired by the last engine call (written by the engine on every exit). */
  RETIRED: 264,
  /** Trap cause / value set by the engine when it exits with ExitReason.Trap. */
  TRAP_CAUSE: 272,
  TRAP_TVAL: 280,
  /** Raw instruction the engine found no decode-cache entry for (ExitReason.DecodeMiss). */
  MISS_RAW: 288,
  /** Set by host code (device, CSR write, stop request) to make the engine return at once. */
  EXIT_REQUEST: 296,
  /** Current privilege level (3 = M, 1 = S, 0 = U). */
  PRIV: 304,
  /** LR reservation: address (or -1 when none) and the value LR read. */
  RES_ADDR: 312,
  RES_VALUE: 320,
  /** Interrupt pending bits (mip) — shared, updated atomically by devices and other harts. */
  MIP: 328,
  /**
   * Byte offsets (from the hart base) of the software-TLB sets the engine uses now: fetch, and
   * data loads (data stores use the set right after it). Host code picks them from the privilege
   * level and mstatus.MPRV/MPP before every engine call (see vcpu/tlb.ts).
   */
  FETCH_TLB: 336,
  DATA_TLB: 344,
  /**
   * Set (to 1) by another thread that changed a mapping this hart may cache (the hypervisor
   * remapping a guest page): the hart flushes its TLB before it next runs guest code.
   */
  TLB_SHOOTDOWN: 352,
  /** Stores that also went to the mirror copies, counted by the engine (statistics). */
  MIRRORED_STORES: 360,
  /**
   * The TLB generation, pre-shifted (generation << 52): live entries hold vpn | this in their tag,
   * so a flush is one increment here instead of rewriting every entry (vcpu/tlb.ts).
   */
  TLB_TAG: 368,
  /**
   * 1 while the hart is inside an engine call (it may use its TLB), 0 between calls: a
   * synchronous shootdown (sync/shootdown.ts) waits for it to read 0.
   */
  ENGINE_ACTIVE: 376,
  /** MMIO mailbox of a hart running in a worker thread (see sync/mailbox.ts; 32 bytes). */
  MAILBOX: 384,
  /** fcsr (i32: frm << 5 | fflags): engines OR exception flags in, the CSR file reads it. */
  FCSR: 416,
  /**
   * mstatus.FS (i32, 0 Off .. 3 Dirty), kept here rather than in the CSR file because every FP
   * instruction tests it (Off: illegal) and every FP register write sets it (Dirty) inside the engine.
   */
  FS: 424,
} as const;

/** VM-wide words in the control block (byte offsets from controlOffset; i32 unless noted). */
export const ControlSlot = {
  /** Non-zero once the VM must stop (guest exit, timeout, a hart's crash). */
  STOP: 0,
  EXIT_CODE: 4,
  /** Bumped by a hart that posts an MMIO request; the main thread waits on it. */
  DOORBELL: 8,
  /** Harts whose worker is loaded and waiting to start (the main thread waits for all). */
  READY: 12,
  /** Set once every hart is ready: they start together, so no hart waits for a late thread. */
  GO: 16,
  /** Spare frames handed out so far (shared-mem/p2m.ts). */
  SPARES_USED: 20,
  /** Lock serialising page recoveries (mirror/recovery.ts). */
  RECOVERY_LOCK: 24,
  /** Recoveries done, and their total latency in microseconds. */
  RECOVERIES: 28,
  RECOVERY_MICROS: 32,
  /** Scrubber: passes over all of RAM, words found differing, words repaired by vote, undecidable words. */
  SCRUB_PASSES: 36,
  SCRUB_MISMATCHES: 40,
  SCRUB_REPAIRED: 44,
  SCRUB_UNDECIDABLE: 48,
  /** Pause gate (sync/pause.ts): non-zero while harts must hold still; how many do. */
  PAUSE: 52,
  PAUSED: 56,
  /** CLINT registers (hypervisor/devices/clint.ts, clintStateBytes: at most 848 bytes). */
  CLINT: 64,
  /**
   * A mirrored one-hart VM's memory-owner lock, and the host threads waiting for it (sync/owner.ts).
   * In their own host cache line: the hart takes the lock per run, host writers count themselves in.
   */
  OWNER_LOCK: 1024,
  OWNER_WAITERS: 1028,
  /**
   * Synchronous shootdown (sync/shootdown.ts): non-zero while a change to the mirror policy or
   * the p2m holds every hart out of its engine; the lock serialising those changes (and the
   * scrubber's look at a page). Each in its own host cache line: harts read the hold word at
   * every engine call.
   */
  WORLD_HOLD: 1088,
  POLICY_LOCK: 1152,
} as const;
export const CONTROL_BLOCK_SIZE = PAGE_SIZE;

/**
 * Register state of the devices whose register logic runs in whichever thread accesses them
 * (hypervisor/devices: the PLIC, the console UART, the virtio-blk interrupt status), as byte
 * offsets from deviceStateOffset. Each device's *_STATE_BYTES fits its slot (test/devices.test.ts).
 */
export const DeviceStateSlot = {
  PLIC: 0,
  UART: 4 * PAGE_SIZE,
  VIRTIO_BLK_IRQ: 10 * PAGE_SIZE,
} as const;
export const DEVICE_STATE_SIZE = 11 * PAGE_SIZE;

/** Direct-mapped decode cache, keyed by the raw instruction bits (see vcpu/decode-cache.ts). */
export const DECODE_CACHE_OFFSET = 512;
export const DECODE_CACHE_ENTRIES = 1 << 16;
export const DECODE_ENTRY_SIZE = 16;
/**
 * Software TLB: for each privilege level (U, S, M) three sets (fetch, load, store) of
 * TLB_ENTRIES direct-mapped entries {tag: i64 (virtual page number | generation << 52) or -1,
 * addend: i64}.
 */
export const TLB_OFFSET = DECODE_CACHE_OFFSET + DECODE_CACHE_ENTRIES * DECODE_ENTRY_SIZE;
export const TLB_ENTRIES = 4096;
export const TLB_ENTRY_SIZE = 16;
export const TLB_SET_SIZE = TLB_ENTRIES * TLB_ENTRY_SIZE;
export const TLB_SETS = 9;
/**
 * A hart's ring of posted MMIO writes (sync/mailbox.ts): a header (consumer index at +0, producer
 * index at +64, in separate host cache lines) and POSTED_RING_ENTRIES entries {address: u32,
 * width: u32, value: u64}.
 */
export const POSTED_RING_OFFSET = TLB_OFFSET + TLB_SETS * TLB_SET_SIZE;
export const POSTED_RING_ENTRIES = 128; // a power of two (slots are index & (entries - 1))
export const POSTED_RING_HEADER = 128;
export const POSTED_ENTRY_SIZE = 16;
/** f0..f31 (F and D), 8 bytes each; single values NaN-boxed. Byte offset from the hart base. */
export const F_REGS_OFFSET = POSTED_RING_OFFSET + POSTED_RING_HEADER + POSTED_RING_ENTRIES * POSTED_ENTRY_SIZE;
export const HART_AREA_SIZE = alignUp(F_REGS_OFFSET + 32 * 8, PAGE_SIZE);

/**
 * How the copies stay identical when harts race (see sync/strategy.ts): `none`, `atomic` (AMOs and
 * SC atomic across every copy), `striped` (a mutex per address stripe around every mirrored store),
 * `global` (one mutex).
 */
export type SyncStrategy = "none" | "atomic" | "striped" | "global";
/** The default: correct for every guest, racy or not (see sync/strategy.ts for what it costs). */
export const DEFAULT_SYNC: SyncStrategy = "striped";

/**
 * Mirror locks: one i32 mutex word per stripe, each alone in a 64-byte host cache line so that
 * harts working on different memory never share a lock line. A stripe is a 64-byte line of host
 * memory, numbered (page number · 64 + line in page) mod STRIPE_COUNT: neighbouring lines get
 * neighbouring locks, and a hart that works in a few pages touches only their locks.
 */
export const STRIPE_COUNT = 4096;
export const STRIPE_LINE_SHIFT = 6;
export const LOCK_STRIDE = 64;

export interface LayoutOptions {
  /** Guest RAM size in bytes (multiple of 4 KiB). */
  ramSize: number;
  /** Number of copies of protected memory (1 = no mirror, 2 = primary + one mirror, ... 5). */
  copies: number;
  /** Spare frames reserved for recovery. */
  spareFrames: number;
  harts: number;
  /** Multi-core consistency of the copies (default DEFAULT_SYNC; irrelevant with one copy). */
  sync?: SyncStrategy;
}

export interface MemoryLayout extends LayoutOptions {
  /** Host offset of guest RAM (always 0). */
  ramOffset: number;
  /** Distance between copies: RAM plus spare frames. mirror(a) = a + k·copyStride. */
  copyStride: number;
  mirrorOffset(k: number): number;
  /** Host offset of the first spare frame (in copy 0; its mirrors follow at + k·copyStride). */
  spareOffset: number;
  p2mOffset: number;
  /** One byte per host frame of every copy: non-zero = poisoned. */
  poisonOffset: number;
  /** One byte per guest page: non-zero = protected (stores mirrored, recoverable, scrubbed). */
  protectionOffset: number;
  /**
   * One i32 per host frame (copy 0, spares included): bit 0 set while some hart holds code
   * translated from the frame (stores to it then take the slow path, which invalidates), bits 1..
   * the frame's code generation, bumped by every invalidation (shared-mem/code-pages.ts).
   */
  codeMapOffset: number;
  /** One i32 per host frame: how often the interpreter jumped within it (hot pages get compiled). */
  heatOffset: number;
  /**
   * Two i32 per host frame: bit k set = translated instructions lie in the frame's 64-byte chunk k
   * (bits 0..31 in the first word, 32..63 in the second); both zero = not known yet, the whole
   * frame counts as code (shared-mem/code-pages.ts).
   */
  codeChunksOffset: number;
  /** First mirror-lock word (STRIPE_COUNT of them, LOCK_STRIDE apart; none when unmirrored). */
  lockOffset: number;
  /** The strategy, defaulted. */
  sync: SyncStrategy;
  hartOffset(hart: number): number;
  controlOffset: number;
  /** Shared device registers (DeviceStateSlot). */
  deviceStateOffset: number;
  /** Total bytes, rounded up to whole wasm pages. */
  totalBytes: number;
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

export function computeLayout(options: LayoutOptions): MemoryLayout {
  const { ramSize, copies, spareFrames, harts } = options;
  if (!Number.isInteger(ramSize) || ramSize <= 0 || ramSize % PAGE_SIZE !== 0) {
    throw new RangeError(`RAM size must be a positive multiple of 4 KiB, got ${ramSize}`);
  }
  if (!Number.isInteger(copies) || copies < 1 || copies > 5) {
    throw new RangeError(`number of memory copies must be 1..5, got ${copies}`);
  }
  if (!Number.isInteger(harts) || harts < 1 || harts > 64) {
    throw new RangeError(`hart count must be 1..64, got ${harts}`);
  }
  const copyStride = ramSize + spareFrames * PAGE_SIZE;
  const spareOffset = ramSize;
  const p2mOffset = copyStride * copies;
  const p2mBytes = alignUp((ramSize / PAGE_SIZE) * 4, PAGE_SIZE);
  const poisonOffset = p2mOffset + p2mBytes;
  const poisonBytes = alignUp((copyStride / PAGE_SIZE) * copies, PAGE_SIZE);
  const protectionOffset = poisonOffset + poisonBytes;
  const codeMapOffset = protectionOffset + alignUp(ramSize / PAGE_SIZE, PAGE_SIZE);
  const frameTableBytes = alignUp((copyStride / PAGE_SIZE) * 4, PAGE_SIZE);
  const heatOffset = codeMapOffset + frameTableBytes;
  const codeChunksOffset = heatOffset + frameTableBytes;
  const lockOffset = codeChunksOffset + 2 * frameTableBytes;
  const hartsOffset = lockOffset + (copies > 1 ? STRIPE_COUNT * LOCK_STRIDE : 0);
  const controlOffset = hartsOffset + harts * HART_AREA_SIZE;
  const deviceStateOffset = controlOffset + CONTROL_BLOCK_SIZE;
  const totalBytes = alignUp(deviceStateOffset + DEVICE_STATE_SIZE, WASM_PAGE);
  if (totalBytes > MAX_HOST_BYTES) {
    const mib = (bytes: number) => `${Math.ceil(bytes / 2 ** 20)} MiB`;
    const what = copies > 1 ? `${mib(ramSize)} of RAM in ${copies} copies` : `${mib(ramSize)} of RAM`;
    throw new RangeError(`${what} needs ${mib(totalBytes)} of host memory with its spares and metadata; the limit is 4 GiB (4096 MiB) per VM`);
  }
  return {
    ...options,
    ramOffset: 0,
    copyStride,
    mirrorOffset: (k) => k * copyStride,
    spareOffset,
    p2mOffset,
    poisonOffset,
    protectionOffset,
    codeMapOffset,
    heatOffset,
    codeChunksOffset,
    lockOffset,
    sync: options.sync ?? DEFAULT_SYNC,
    hartOffset: (hart) => hartsOffset + hart * HART_AREA_SIZE,
    controlOffset,
    deviceStateOffset,
    totalBytes,
  };
}

export function createSharedMemory(layout: MemoryLayout): WebAssembly.Memory {
  const pages = layout.totalBytes / WASM_PAGE;
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

/** Host distances from a primary address to its mirror copies: k·S for k = 1 .. copies−1. */
export function mirrorOffsetsOf(layout: MemoryLayout): number[] {
  return Array.from({ length: layout.copies - 1 }, (_, k) => layout.mirrorOffset(k + 1));
}
