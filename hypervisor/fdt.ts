/**
 * Flattened devicetree (DTB) writer, and the tree of our QEMU-virt-compatible machine.
 *
 * The blob follows the Devicetree Specification (v0.4, chapter 5), format version 17
 * (last compatible version 16):
 *
 *   header (40 bytes, big-endian u32s)
 *   memory reservation block   8-byte aligned; here only the terminating (0, 0) entry
 *   structure block            4-byte aligned; FDT_BEGIN_NODE / FDT_PROP / FDT_END_NODE / FDT_END
 *   strings block              property names, NUL-terminated, each stored once
 *
 * `buildVirtFdt` produces the tree QEMU 7.2's `virt` machine generates for the same
 * configuration, restricted to the devices we emulate (no PCI, flash, fw-cfg, RTC, PMU,
 * platform bus) and with our ISA. Property and node order may differ from QEMU's (libfdt
 * prepends), which no consumer depends on.
 */
import { RAM_BASE } from '../shared-mem/layout.ts';
import { CLINT_BASE, CLINT_SIZE, CLINT_TIMEBASE_HZ } from './devices/clint.ts';
import { PLIC_BASE, PLIC_NUM_SOURCES, PLIC_SIZE } from './devices/plic.ts';
import { SIFIVE_TEST_BASE, SIFIVE_TEST_SIZE } from './devices/sifive-test.ts';
import { UART_BASE, UART_IRQ, UART_SIZE } from './devices/uart.ts';
import { VIRTIO_BLK_BASE, VIRTIO_BLK_IRQ, VIRTIO_BLK_SIZE } from './devices/virtio-blk.ts';

export const FDT_MAGIC = 0xd00d_feed;
export const FDT_VERSION = 17;
export const FDT_LAST_COMP_VERSION = 16;
export const FDT_BEGIN_NODE = 1;
export const FDT_END_NODE = 2;
export const FDT_PROP = 3;
export const FDT_NOP = 4;
export const FDT_END = 9;
/** Size of a version-17 header. */
export const FDT_HEADER_SIZE = 40;

const TWO_32 = 0x1_0000_0000;
const textEncoder = new TextEncoder();

// ---- Property value encoders ----

/** Big-endian u32 cells. */
export function fdtCells(...cells: number[]): Uint8Array {
  const out = new Uint8Array(cells.length * 4);
  const view = new DataView(out.buffer);
  cells.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 0 || c >= TWO_32) {
      throw new RangeError(`FDT cell out of range: ${c}`);
    }
    view.setUint32(i * 4, c);
  });
  return out;
}

/** Each value as two cells (high, low): the usual encoding of 64-bit addresses and sizes. */
export function fdtU64(...values: (number | bigint)[]): Uint8Array {
  const cells: number[] = [];
  for (const v of values) {
    const big = BigInt(v);
    if (big < 0n || big >= 1n << 64n) throw new RangeError(`FDT u64 out of range: ${v}`);
    cells.push(Number(big >> 32n), Number(big & 0xffff_ffffn));
  }
  return fdtCells(...cells);
}

/** NUL-terminated string. */
export function fdtString(s: string): Uint8Array {
  return fdtStringList([s]);
}

/** Concatenated NUL-terminated strings (e.g. `compatible`). */
export function fdtStringList(list: readonly string[]): Uint8Array {
  const parts = list.map((s) => {
    if (s.includes('\0')) throw new RangeError(`FDT string contains NUL: ${JSON.stringify(s)}`);
    return textEncoder.encode(s);
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length + 1, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length + 1;
  }
  return out;
}

// ---- Tree ----

export interface FdtProperty {
  readonly name: string;
  value: Uint8Array;
}

const NODE_NAME = /^[A-Za-z0-9,._+-]{1,31}(@[A-Za-z0-9,._+-]+)?$/;
const PROP_NAME = /^[A-Za-z0-9,._+?#-]{1,31}$/;

export class FdtNode {
  readonly props: FdtProperty[] = [];
  readonly children: FdtNode[] = [];
  /** The phandle given by FdtTree.phandle(), if any. */
  phandleValue: number | undefined;

  constructor(readonly name: string) {}

  /** Add a child node (names must be unique among siblings). */
  addNode(name: string): FdtNode {
    if (!NODE_NAME.test(name)) throw new RangeError(`invalid FDT node name: ${JSON.stringify(name)}`);
    if (this.child(name)) throw new Error(`duplicate FDT node: ${name}`);
    const node = new FdtNode(name);
    this.children.push(node);
    return node;
  }

  child(name: string): FdtNode | undefined {
    return this.children.find((c) => c.name === name);
  }

  prop(name: string): Uint8Array | undefined {
    return this.props.find((p) => p.name === name)?.value;
  }

  /** Set a property to raw bytes (replacing an existing one of the same name). */
  setBytes(name: string, value: Uint8Array): this {
    if (!PROP_NAME.test(name)) throw new RangeError(`invalid FDT property name: ${JSON.stringify(name)}`);
    const existing = this.props.find((p) => p.name === name);
    if (existing) existing.value = value;
    else this.props.push({ name, value });
    return this;
  }

  /** Property with no value (e.g. `interrupt-controller`, `ranges`). */
  setEmpty(name: string): this {
    return this.setBytes(name, new Uint8Array(0));
  }

  setU32(name: string, ...cells: number[]): this {
    return this.setBytes(name, fdtCells(...cells));
  }

  setU64(name: string, ...values: (number | bigint)[]): this {
    return this.setBytes(name, fdtU64(...values));
  }

  setString(name: string, value: string): this {
    return this.setBytes(name, fdtString(value));
  }

  setStrings(name: string, values: readonly string[]): this {
    return this.setBytes(name, fdtStringList(values));
  }
}

export interface FdtSerializeOptions {
  /** Header boot_cpuid_phys (default 0). */
  bootCpuid?: number;
}

/** A tree with a root node and a phandle allocator. */
export class FdtTree {
  readonly root = new FdtNode('');
  private nextPhandle = 1;

  /** The node's phandle, allocating one (and its `phandle` property) on first use. */
  phandle(node: FdtNode): number {
    if (node.phandleValue === undefined) {
      node.phandleValue = this.nextPhandle++;
      node.setU32('phandle', node.phandleValue);
    }
    return node.phandleValue;
  }

  /** Find a node by absolute path ("/" is the root, "/cpus/cpu@0", ...). */
  find(path: string): FdtNode | undefined {
    let node: FdtNode | undefined = this.root;
    for (const part of path.split('/')) {
      if (part === '') continue;
      node = node.child(part);
      if (!node) return undefined;
    }
    return node;
  }

  toDtb(options: FdtSerializeOptions = {}): Uint8Array {
    return serializeFdt(this.root, options);
  }
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Serialize a tree rooted at `root` (whose name must be empty) to a version-17 DTB. */
export function serializeFdt(root: FdtNode, options: FdtSerializeOptions = {}): Uint8Array {
  // Strings block: each property name once, in order of first use.
  const stringOffsets = new Map<string, number>();
  const stringParts: Uint8Array[] = [];
  let stringsSize = 0;
  const nameOffset = (name: string): number => {
    let off = stringOffsets.get(name);
    if (off === undefined) {
      off = stringsSize;
      const bytes = fdtString(name);
      stringOffsets.set(name, off);
      stringParts.push(bytes);
      stringsSize += bytes.length;
    }
    return off;
  };

  // Structure block, measured first, then written.
  const structSize = (node: FdtNode): number => {
    let n = 4 + align(textEncoder.encode(node.name).length + 1, 4);
    for (const p of node.props) n += 12 + align(p.value.length, 4);
    for (const c of node.children) n += structSize(c);
    return n + 4;
  };
  const sizeDtStruct = structSize(root) + 4; // + FDT_END

  const offMemRsvmap = align(FDT_HEADER_SIZE, 8);
  const rsvmapSize = 16; // the terminating entry only
  const offDtStruct = align(offMemRsvmap + rsvmapSize, 4);

  const struct = new Uint8Array(sizeDtStruct);
  const sv = new DataView(struct.buffer);
  let at = 0;
  const emitNode = (node: FdtNode): void => {
    sv.setUint32(at, FDT_BEGIN_NODE);
    at += 4;
    const name = textEncoder.encode(node.name);
    struct.set(name, at);
    at += align(name.length + 1, 4); // NUL and padding are already zero
    for (const p of node.props) {
      sv.setUint32(at, FDT_PROP);
      sv.setUint32(at + 4, p.value.length);
      sv.setUint32(at + 8, nameOffset(p.name));
      struct.set(p.value, at + 12);
      at += 12 + align(p.value.length, 4);
    }
    for (const c of node.children) emitNode(c);
    sv.setUint32(at, FDT_END_NODE);
    at += 4;
  };
  emitNode(root);
  sv.setUint32(at, FDT_END);
  at += 4;
  if (at !== sizeDtStruct) throw new Error(`FDT structure size mismatch: ${at} != ${sizeDtStruct}`);

  const offDtStrings = offDtStruct + sizeDtStruct;
  const totalSize = offDtStrings + stringsSize;
  const blob = new Uint8Array(totalSize);
  const view = new DataView(blob.buffer);
  const header = [
    FDT_MAGIC,
    totalSize,
    offDtStruct,
    offDtStrings,
    offMemRsvmap,
    FDT_VERSION,
    FDT_LAST_COMP_VERSION,
    options.bootCpuid ?? 0,
    stringsSize,
    sizeDtStruct,
  ];
  header.forEach((v, i) => view.setUint32(i * 4, v));
  // Memory reservation block: the (0, 0) terminator is already zero.
  blob.set(struct, offDtStruct);
  let s = offDtStrings;
  for (const part of stringParts) {
    blob.set(part, s);
    s += part.length;
  }
  return blob;
}

// ---- The virt machine ----

// Addresses, sizes and interrupt numbers come from the device files themselves, so the tree
// cannot disagree with the machine it describes.
export const VIRT_UART_CLOCK_HZ = 0x38_4000; // 3.6864 MHz, as QEMU advertises
export const VIRT_ISA = 'rv64imafdc_zicsr_zifencei_sstc';
export const VIRT_ISA_EXTENSIONS: readonly string[] = ['i', 'm', 'a', 'f', 'd', 'c', 'zicsr', 'zifencei', 'zicntr', 'sstc'];

export interface VirtFdtConfig {
  harts: number;
  ramBase: number;
  ramSize: number;
  bootargs?: string;
  hasVirtioBlock: boolean;
  initrd?: { start: number; end: number };
}

/** mip bit numbers used in interrupts-extended. */
const IRQ_M_SOFT = 3;
const IRQ_M_TIMER = 7;
const IRQ_S_EXT = 9;
const IRQ_M_EXT = 11;

/** A 64-bit value as one cell when it fits in 32 bits (as QEMU 7.2 writes initrd bounds), else two. */
function addrCells(v: number): number[] {
  return v < TWO_32 ? [v] : [Math.floor(v / TWO_32), v >>> 0];
}

/** Build the device tree of our virt machine as a tree (for callers that want to amend it). */
export function buildVirtFdtTree(config: VirtFdtConfig): FdtTree {
  const { harts, ramBase, ramSize } = config;
  if (!Number.isInteger(harts) || harts < 1 || harts > 512) {
    throw new RangeError(`hart count must be 1..512, got ${harts}`);
  }
  if (!Number.isSafeInteger(ramBase) || !Number.isSafeInteger(ramSize) || ramBase < 0 || ramSize <= 0) {
    throw new RangeError(`invalid RAM range: base ${ramBase}, size ${ramSize}`);
  }

  const tree = new FdtTree();
  const root = tree.root;
  root.setU32('#address-cells', 2);
  root.setU32('#size-cells', 2);
  root.setString('compatible', 'riscv-virtio');
  root.setString('model', 'riscv-virtio,qemu');

  const chosen = root.addNode('chosen');
  chosen.setString('stdout-path', `/soc/serial@${hex(UART_BASE)}`);
  if (config.bootargs !== undefined) chosen.setString('bootargs', config.bootargs);
  if (config.initrd) {
    const { start, end } = config.initrd;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new RangeError(`invalid initrd range: ${start}..${end}`);
    }
    chosen.setU32('linux,initrd-start', ...addrCells(start));
    chosen.setU32('linux,initrd-end', ...addrCells(end));
  }

  const memory = root.addNode(`memory@${hex(ramBase)}`);
  memory.setString('device_type', 'memory');
  memory.setU64('reg', ramBase, ramSize);

  const cpus = root.addNode('cpus');
  cpus.setU32('#address-cells', 1);
  cpus.setU32('#size-cells', 0);
  cpus.setU32('timebase-frequency', CLINT_TIMEBASE_HZ);
  const cpuPhandles: number[] = [];
  const intcPhandles: number[] = [];
  for (let h = 0; h < harts; h++) {
    const cpu = cpus.addNode(`cpu@${hex(h)}`);
    cpuPhandles.push(tree.phandle(cpu));
    cpu.setString('device_type', 'cpu');
    cpu.setU32('reg', h);
    cpu.setString('status', 'okay');
    cpu.setString('compatible', 'riscv');
    cpu.setString('riscv,isa', VIRT_ISA);
    cpu.setString('riscv,isa-base', 'rv64i');
    cpu.setStrings('riscv,isa-extensions', VIRT_ISA_EXTENSIONS);
    cpu.setString('mmu-type', 'riscv,sv39');
    const intc = cpu.addNode('interrupt-controller');
    intc.setU32('#interrupt-cells', 1);
    intc.setEmpty('interrupt-controller');
    intc.setString('compatible', 'riscv,cpu-intc');
    intcPhandles.push(tree.phandle(intc));
  }
  const cluster = cpus.addNode('cpu-map').addNode('cluster0');
  for (let h = 0; h < harts; h++) cluster.addNode(`core${h}`).setU32('cpu', cpuPhandles[h]!);

  const soc = root.addNode('soc');
  soc.setU32('#address-cells', 2);
  soc.setU32('#size-cells', 2);
  soc.setString('compatible', 'simple-bus');
  soc.setEmpty('ranges');

  const clint = soc.addNode(`clint@${hex(CLINT_BASE)}`);
  clint.setStrings('compatible', ['sifive,clint0', 'riscv,clint0']);
  clint.setU64('reg', CLINT_BASE, CLINT_SIZE);
  clint.setU32('interrupts-extended', ...intcPhandles.flatMap((p) => [p, IRQ_M_SOFT, p, IRQ_M_TIMER]));

  const plic = soc.addNode(`plic@${hex(PLIC_BASE)}`);
  const plicPhandle = tree.phandle(plic);
  plic.setStrings('compatible', ['sifive,plic-1.0.0', 'riscv,plic0']);
  plic.setU64('reg', PLIC_BASE, PLIC_SIZE);
  plic.setU32('#address-cells', 0);
  plic.setU32('#interrupt-cells', 1);
  plic.setEmpty('interrupt-controller');
  plic.setU32('riscv,ndev', PLIC_NUM_SOURCES);
  plic.setU32('interrupts-extended', ...intcPhandles.flatMap((p) => [p, IRQ_M_EXT, p, IRQ_S_EXT]));

  const serial = soc.addNode(`serial@${hex(UART_BASE)}`);
  serial.setString('compatible', 'ns16550a');
  serial.setU64('reg', UART_BASE, UART_SIZE);
  serial.setU32('clock-frequency', VIRT_UART_CLOCK_HZ);
  serial.setU32('interrupt-parent', plicPhandle);
  serial.setU32('interrupts', UART_IRQ);

  if (config.hasVirtioBlock) {
    const virtio = soc.addNode(`virtio_mmio@${hex(VIRTIO_BLK_BASE)}`);
    virtio.setString('compatible', 'virtio,mmio');
    virtio.setU64('reg', VIRTIO_BLK_BASE, VIRTIO_BLK_SIZE);
    virtio.setU32('interrupt-parent', plicPhandle);
    virtio.setU32('interrupts', VIRTIO_BLK_IRQ);
  }

  const test = soc.addNode(`test@${hex(SIFIVE_TEST_BASE)}`);
  const testPhandle = tree.phandle(test);
  test.setStrings('compatible', ['sifive,test1', 'sifive,test0', 'syscon']);
  test.setU64('reg', SIFIVE_TEST_BASE, SIFIVE_TEST_SIZE);

  const poweroff = root.addNode('poweroff');
  poweroff.setString('compatible', 'syscon-poweroff');
  poweroff.setU32('regmap', testPhandle);
  poweroff.setU32('offset', 0);
  poweroff.setU32('value', 0x5555);

  const reboot = root.addNode('reboot');
  reboot.setString('compatible', 'syscon-reboot');
  reboot.setU32('regmap', testPhandle);
  reboot.setU32('offset', 0);
  reboot.setU32('value', 0x7777);

  return tree;
}

/** The DTB of our virt machine for this configuration. */
export function buildVirtFdt(config: VirtFdtConfig): Uint8Array {
  return buildVirtFdtTree(config).toDtb();
}

/**
 * The size QEMU 7.2 reserves for the FDT when placing it: its tree lives in a 1 MiB buffer
 * (FDT_MAX_SIZE) and riscv_load_fdt measures fdt_totalsize() before packing, so QEMU always
 * places (and `info roms` shows) a 0x100000-byte blob.
 */
export const QEMU_FDT_SIZE = 0x10_0000;

const MiB = 0x10_0000;
const THREE_GIB = 3 * 1024 * MiB;

/**
 * Guest-physical address where QEMU 7.2 loads the FDT (hw/riscv/boot.c, riscv_load_fdt): as
 * high as possible so a kernel or initrd will not overwrite it, yet 32-bit addressable: the end
 * of DRAM, or 3 GiB if DRAM starts below 3 GiB and ends above it, minus the size, aligned down
 * to 2 MiB. The size counted is max(fdtSize, QEMU_FDT_SIZE), as QEMU counts its unpacked 1 MiB
 * buffer, so the address matches QEMU's for any blob up to 1 MiB: e.g. 128 MiB at 0x8000_0000
 * -> 0x87e0_0000, 256 MiB -> 0x8fe0_0000, 1 GiB or more -> 0xbfe0_0000.
 */
export function fdtPlacement(ramBase: number, ramSize: number, fdtSize: number): number {
  const size = Math.max(fdtSize, QEMU_FDT_SIZE);
  const ramEnd = ramBase + ramSize;
  const top = ramBase < THREE_GIB ? Math.min(ramEnd, THREE_GIB) : ramEnd;
  const addr = Math.floor((top - size) / (2 * MiB)) * (2 * MiB);
  if (addr < ramBase || addr + fdtSize > ramEnd) {
    throw new RangeError(
      `RAM 0x${ramBase.toString(16)}+0x${ramSize.toString(16)} too small for a 0x${size.toString(16)}-byte FDT`,
    );
  }
  return addr;
}

function hex(n: number): string {
  return n.toString(16);
}
