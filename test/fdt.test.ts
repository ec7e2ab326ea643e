import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FdtTree,
  QEMU_FDT_SIZE,
  buildVirtFdt,
  fdtPlacement,
  serializeFdt,
  type VirtFdtConfig,
} from '../hypervisor/fdt.ts';

// ---- A small independent DTB reader ----

interface Header {
  magic: number;
  totalsize: number;
  offDtStruct: number;
  offDtStrings: number;
  offMemRsvmap: number;
  version: number;
  lastCompVersion: number;
  bootCpuid: number;
  sizeDtStrings: number;
  sizeDtStruct: number;
}

interface Node {
  name: string;
  path: string;
  props: Map<string, Uint8Array>;
  children: Node[];
}

interface Parsed {
  header: Header;
  root: Node;
  /** Every node by absolute path. */
  nodes: Map<string, Node>;
  /** The NUL-terminated strings of the strings block, in order. */
  strings: string[];
  /** Distinct name offsets referenced by FDT_PROP tokens. */
  nameOffsets: Set<number>;
  rsvEntries: [bigint, bigint][];
}

const decoder = new TextDecoder();

function parseDtb(blob: Uint8Array): Parsed {
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const u32 = (o: number): number => view.getUint32(o);
  const header: Header = {
    magic: u32(0),
    totalsize: u32(4),
    offDtStruct: u32(8),
    offDtStrings: u32(12),
    offMemRsvmap: u32(16),
    version: u32(20),
    lastCompVersion: u32(24),
    bootCpuid: u32(28),
    sizeDtStrings: u32(32),
    sizeDtStruct: u32(36),
  };
  const rsvEntries: [bigint, bigint][] = [];
  for (let o = header.offMemRsvmap; ; o += 16) {
    const addr = view.getBigUint64(o);
    const size = view.getBigUint64(o + 8);
    if (addr === 0n && size === 0n) break;
    rsvEntries.push([addr, size]);
  }
  const strBlock = blob.subarray(header.offDtStrings, header.offDtStrings + header.sizeDtStrings);
  const strAt = (off: number): string => {
    const end = strBlock.indexOf(0, off);
    if (end < 0) throw new Error(`unterminated string at ${off}`);
    return decoder.decode(strBlock.subarray(off, end));
  };
  const strings: string[] = [];
  for (let o = 0; o < strBlock.length; ) {
    const s = strAt(o);
    strings.push(s);
    o += s.length + 1;
  }
  const nameOffsets = new Set<number>();
  const nodes = new Map<string, Node>();
  let p = header.offDtStruct;
  const end = header.offDtStruct + header.sizeDtStruct;
  const stack: Node[] = [];
  let root: Node | undefined;
  for (;;) {
    if (p >= end) throw new Error('structure block overrun');
    const token = u32(p);
    p += 4;
    if (token === 1) {
      const nul = blob.indexOf(0, p);
      const name = decoder.decode(blob.subarray(p, nul));
      p = (nul + 1 + 3) & ~3;
      const parent = stack[stack.length - 1];
      const path = parent ? (parent.path === '/' ? `/${name}` : `${parent.path}/${name}`) : '/';
      const node: Node = { name, path, props: new Map(), children: [] };
      if (parent) parent.children.push(node);
      else root = node;
      nodes.set(path, node);
      stack.push(node);
    } else if (token === 3) {
      const len = u32(p);
      const nameoff = u32(p + 4);
      nameOffsets.add(nameoff);
      const value = blob.slice(p + 8, p + 8 + len);
      p = (p + 8 + len + 3) & ~3;
      stack[stack.length - 1]!.props.set(strAt(nameoff), value);
    } else if (token === 2) {
      stack.pop();
    } else if (token === 4) {
      // NOP
    } else if (token === 9) {
      break;
    } else {
      throw new Error(`bad token ${token} at ${p - 4}`);
    }
  }
  if (stack.length !== 0 || !root) throw new Error('unbalanced structure block');
  if (p !== end) throw new Error(`FDT_END at ${p}, structure block ends at ${end}`);
  return { header, root, nodes, strings, nameOffsets, rsvEntries };
}

const cells = (v: Uint8Array | undefined): number[] => {
  if (!v) throw new Error('missing property');
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  return Array.from({ length: v.length / 4 }, (_, i) => dv.getUint32(i * 4));
};
const strs = (v: Uint8Array | undefined): string[] => {
  if (!v) throw new Error('missing property');
  return decoder.decode(v).split('\0').slice(0, -1);
};
const str = (v: Uint8Array | undefined): string => {
  const list = strs(v);
  if (list.length !== 1) throw new Error(`not a single string: ${JSON.stringify(list)}`);
  return list[0]!;
};

function node(parsed: Parsed, path: string): Node {
  const n = parsed.nodes.get(path);
  if (!n) throw new Error(`no node ${path}; have ${[...parsed.nodes.keys()].join(', ')}`);
  return n;
}

function phandleOf(parsed: Parsed, path: string): number {
  return cells(node(parsed, path).props.get('phandle'))[0]!;
}

const MiB = 1024 * 1024;
const baseConfig: VirtFdtConfig = {
  harts: 2,
  ramBase: 0x8000_0000,
  ramSize: 256 * MiB,
  hasVirtioBlock: true,
};

// ---- dtc ----

function haveTool(tool: string): boolean {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  return !r.error;
}

function withTemp<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'kmv-fdt-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Decompile with dtc; fails the test if dtc is missing or reports an error. */
function decompile(t: ExecutionContext, blob: Uint8Array): string | undefined {
  if (!haveTool('dtc')) {
    t.fail('dtc not found: install device-tree-compiler (apt-get install device-tree-compiler)');
    return undefined;
  }
  return withTemp((dir) => {
    const file = join(dir, 'k.dtb');
    writeFileSync(file, blob);
    const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', file], { encoding: 'utf8' });
    t.is(r.status, 0, `dtc failed: ${r.stderr}`);
    t.notRegex(r.stderr, /error|fatal/i, r.stderr);
    // QEMU's own tree draws exactly these warnings (the cpu-intc nodes have no #address-cells).
    const warnings = r.stderr.split('\n').filter((l) => l.trim() !== '');
    for (const w of warnings) t.regex(w, /Warning \(interrupt_provider\).*cpu@[0-9a-f]+\/interrupt-controller/);
    return r.stdout;
  });
}

// ---- Tests ----

test('header, blocks and alignment', (t) => {
  const blob = buildVirtFdt(baseConfig);
  const { header: h, rsvEntries } = parseDtb(blob);
  t.is(h.magic, 0xd00d_feed);
  t.is(h.totalsize, blob.length);
  t.is(h.version, 17);
  t.is(h.lastCompVersion, 16);
  t.is(h.bootCpuid, 0);
  t.is(h.offMemRsvmap % 8, 0);
  t.true(h.offMemRsvmap >= 40);
  t.deepEqual(rsvEntries, []);
  t.is(h.offDtStruct % 4, 0);
  t.true(h.offDtStruct >= h.offMemRsvmap + 16);
  t.is(h.sizeDtStruct % 4, 0);
  t.true(h.offDtStrings >= h.offDtStruct + h.sizeDtStruct);
  t.true(h.offDtStrings + h.sizeDtStrings <= h.totalsize);
  t.is(blob[h.offDtStrings + h.sizeDtStrings - 1], 0);
});

test('strings block is deduplicated and every string is used', (t) => {
  const parsed = parseDtb(buildVirtFdt({ ...baseConfig, harts: 4 }));
  t.is(new Set(parsed.strings).size, parsed.strings.length, `duplicates in ${parsed.strings.join(',')}`);
  t.is(parsed.nameOffsets.size, parsed.strings.length);
  // A name used by many nodes appears once.
  t.is(parsed.strings.filter((s) => s === 'compatible').length, 1);
  t.is(parsed.strings.filter((s) => s === 'reg').length, 1);
});

test('decompiles with dtc without errors', (t) => {
  const dts = decompile(t, buildVirtFdt({ ...baseConfig, bootargs: 'console=ttyS0', initrd: { start: 0x8400_0000, end: 0x8420_0000 } }));
  if (dts === undefined) return;
  t.regex(dts, /cpu@1 \{/);
  t.regex(dts, /plic@c000000 \{/);
  t.regex(dts, /bootargs = "console=ttyS0";/);
});

test('dtc re-encodes the blob to the same tree', (t) => {
  if (!haveTool('dtc')) {
    t.fail('dtc not found: install device-tree-compiler');
    return;
  }
  const blob = buildVirtFdt({ ...baseConfig, harts: 3 });
  const again = withTemp((dir) => {
    const file = join(dir, 'k.dtb');
    writeFileSync(file, blob);
    return new Uint8Array(execFileSync('dtc', ['-q', '-I', 'dtb', '-O', 'dtb', file]));
  });
  const a = parseDtb(blob);
  const b = parseDtb(again);
  t.deepEqual([...a.nodes.keys()], [...b.nodes.keys()]);
  for (const [path, n] of a.nodes) {
    const m = b.nodes.get(path)!;
    t.deepEqual([...n.props.keys()], [...m.props.keys()], path);
    for (const [k, v] of n.props) t.deepEqual(Array.from(v), Array.from(m.props.get(k)!), `${path}:${k}`);
  }
});

test('root, chosen and memory', (t) => {
  const parsed = parseDtb(
    buildVirtFdt({
      ...baseConfig,
      ramSize: 128 * MiB,
      bootargs: 'console=ttyS0 root=/dev/vda',
      initrd: { start: 0x8400_0000, end: 0x8401_2345 },
    }),
  );
  const root = node(parsed, '/');
  t.deepEqual(cells(root.props.get('#address-cells')), [2]);
  t.deepEqual(cells(root.props.get('#size-cells')), [2]);
  t.is(str(root.props.get('compatible')), 'riscv-virtio');
  t.is(str(root.props.get('model')), 'riscv-virtio,qemu');
  const chosen = node(parsed, '/chosen');
  t.is(str(chosen.props.get('stdout-path')), '/soc/serial@10000000');
  t.is(str(chosen.props.get('bootargs')), 'console=ttyS0 root=/dev/vda');
  t.deepEqual(cells(chosen.props.get('linux,initrd-start')), [0x8400_0000]);
  t.deepEqual(cells(chosen.props.get('linux,initrd-end')), [0x8401_2345]);
  const mem = node(parsed, '/memory@80000000');
  t.is(str(mem.props.get('device_type')), 'memory');
  t.deepEqual(cells(mem.props.get('reg')), [0, 0x8000_0000, 0, 128 * MiB]);

  const bare = parseDtb(buildVirtFdt(baseConfig));
  const bareChosen = node(bare, '/chosen');
  t.false(bareChosen.props.has('bootargs'));
  t.false(bareChosen.props.has('linux,initrd-start'));
  t.false(bareChosen.props.has('linux,initrd-end'));
});

test('memory above 4 GiB and large initrd addresses use two cells', (t) => {
  const parsed = parseDtb(
    buildVirtFdt({
      ...baseConfig,
      ramSize: 6 * 1024 * MiB,
      initrd: { start: 0x1_2000_0000, end: 0x1_2100_0000 },
    }),
  );
  t.deepEqual(cells(node(parsed, '/memory@80000000').props.get('reg')), [0, 0x8000_0000, 1, 0x8000_0000]);
  t.deepEqual(cells(node(parsed, '/chosen').props.get('linux,initrd-start')), [1, 0x2000_0000]);
  t.deepEqual(cells(node(parsed, '/chosen').props.get('linux,initrd-end')), [1, 0x2100_0000]);
});

test('cpus, per-hart interrupt controllers and cpu-map', (t) => {
  const parsed = parseDtb(buildVirtFdt({ ...baseConfig, harts: 3 }));
  const cpus = node(parsed, '/cpus');
  t.deepEqual(cells(cpus.props.get('timebase-frequency')), [10_000_000]);
  t.deepEqual(cells(cpus.props.get('#address-cells')), [1]);
  t.deepEqual(cells(cpus.props.get('#size-cells')), [0]);
  const phandles = new Set<number>();
  for (let h = 0; h < 3; h++) {
    const cpu = node(parsed, `/cpus/cpu@${h}`);
    t.deepEqual(cells(cpu.props.get('reg')), [h]);
    t.is(str(cpu.props.get('device_type')), 'cpu');
    t.is(str(cpu.props.get('status')), 'okay');
    t.is(str(cpu.props.get('compatible')), 'riscv');
    t.is(str(cpu.props.get('riscv,isa')), 'rv64imafdc_zicsr_zifencei_sstc');
    t.is(str(cpu.props.get('riscv,isa-base')), 'rv64i');
    t.deepEqual(strs(cpu.props.get('riscv,isa-extensions')), ['i', 'm', 'a', 'f', 'd', 'c', 'zicsr', 'zifencei', 'zicntr', 'sstc']);
    t.is(str(cpu.props.get('mmu-type')), 'riscv,sv39');
    const intc = node(parsed, `/cpus/cpu@${h}/interrupt-controller`);
    t.deepEqual(cells(intc.props.get('#interrupt-cells')), [1]);
    t.is(intc.props.get('interrupt-controller')?.length, 0);
    t.is(str(intc.props.get('compatible')), 'riscv,cpu-intc');
    phandles.add(phandleOf(parsed, `/cpus/cpu@${h}`));
    phandles.add(phandleOf(parsed, `/cpus/cpu@${h}/interrupt-controller`));
    t.deepEqual(
      cells(node(parsed, `/cpus/cpu-map/cluster0/core${h}`).props.get('cpu')),
      [phandleOf(parsed, `/cpus/cpu@${h}`)],
    );
  }
  t.is(phandles.size, 6);
  t.false(parsed.nodes.has('/cpus/cpu@3'));
});

test('soc devices and their interrupt wiring', (t) => {
  const parsed = parseDtb(buildVirtFdt(baseConfig));
  const soc = node(parsed, '/soc');
  t.is(str(soc.props.get('compatible')), 'simple-bus');
  t.is(soc.props.get('ranges')?.length, 0);
  t.deepEqual(cells(soc.props.get('#address-cells')), [2]);
  t.deepEqual(cells(soc.props.get('#size-cells')), [2]);
  const intc = [0, 1].map((h) => phandleOf(parsed, `/cpus/cpu@${h}/interrupt-controller`));

  const clint = node(parsed, '/soc/clint@2000000');
  t.deepEqual(strs(clint.props.get('compatible')), ['sifive,clint0', 'riscv,clint0']);
  t.deepEqual(cells(clint.props.get('reg')), [0, 0x200_0000, 0, 0x1_0000]);
  t.deepEqual(cells(clint.props.get('interrupts-extended')), [intc[0], 3, intc[0], 7, intc[1], 3, intc[1], 7]);

  const plic = node(parsed, '/soc/plic@c000000');
  const plicPh = phandleOf(parsed, '/soc/plic@c000000');
  t.deepEqual(strs(plic.props.get('compatible')), ['sifive,plic-1.0.0', 'riscv,plic0']);
  t.deepEqual(cells(plic.props.get('reg')), [0, 0xc00_0000, 0, 0x60_0000]);
  t.deepEqual(cells(plic.props.get('#address-cells')), [0]);
  t.deepEqual(cells(plic.props.get('#interrupt-cells')), [1]);
  t.is(plic.props.get('interrupt-controller')?.length, 0);
  t.deepEqual(cells(plic.props.get('riscv,ndev')), [95]);
  t.deepEqual(cells(plic.props.get('interrupts-extended')), [intc[0], 11, intc[0], 9, intc[1], 11, intc[1], 9]);

  const serial = node(parsed, '/soc/serial@10000000');
  t.is(str(serial.props.get('compatible')), 'ns16550a');
  t.deepEqual(cells(serial.props.get('reg')), [0, 0x1000_0000, 0, 0x100]);
  t.deepEqual(cells(serial.props.get('clock-frequency')), [0x38_4000]);
  t.deepEqual(cells(serial.props.get('interrupts')), [10]);
  t.deepEqual(cells(serial.props.get('interrupt-parent')), [plicPh]);

  const virtio = node(parsed, '/soc/virtio_mmio@10001000');
  t.is(str(virtio.props.get('compatible')), 'virtio,mmio');
  t.deepEqual(cells(virtio.props.get('reg')), [0, 0x1000_1000, 0, 0x1000]);
  t.deepEqual(cells(virtio.props.get('interrupts')), [1]);
  t.deepEqual(cells(virtio.props.get('interrupt-parent')), [plicPh]);

  const testDev = node(parsed, '/soc/test@100000');
  const testPh = phandleOf(parsed, '/soc/test@100000');
  t.deepEqual(strs(testDev.props.get('compatible')), ['sifive,test1', 'sifive,test0', 'syscon']);
  t.deepEqual(cells(testDev.props.get('reg')), [0, 0x10_0000, 0, 0x1000]);

  for (const [path, compat, value] of [
    ['/poweroff', 'syscon-poweroff', 0x5555],
    ['/reboot', 'syscon-reboot', 0x7777],
  ] as const) {
    const n = node(parsed, path);
    t.is(str(n.props.get('compatible')), compat);
    t.deepEqual(cells(n.props.get('regmap')), [testPh]);
    t.deepEqual(cells(n.props.get('offset')), [0]);
    t.deepEqual(cells(n.props.get('value')), [value]);
  }

  // Every phandle is unique.
  const all = [...parsed.nodes.values()].filter((n) => n.props.has('phandle')).map((n) => cells(n.props.get('phandle'))[0]);
  t.is(new Set(all).size, all.length);
});

test('virtio node only with a block device', (t) => {
  const without = parseDtb(buildVirtFdt({ ...baseConfig, hasVirtioBlock: false }));
  t.false([...without.nodes.keys()].some((p) => p.includes('virtio')));
  t.true(without.nodes.has('/soc/serial@10000000'));
});

test('config validation', (t) => {
  t.throws(() => buildVirtFdt({ ...baseConfig, harts: 0 }), { instanceOf: RangeError });
  t.throws(() => buildVirtFdt({ ...baseConfig, ramSize: 0 }), { instanceOf: RangeError });
  t.throws(() => buildVirtFdt({ ...baseConfig, initrd: { start: 10, end: 5 } }), { instanceOf: RangeError });
});

test('generic builder: property kinds, phandles, replacement, padding', (t) => {
  const tree = new FdtTree();
  tree.root.setU32('#address-cells', 1);
  tree.root.setU32('#size-cells', 0);
  const a = tree.root.addNode('a@1');
  a.setU32('reg', 1);
  a.setU64('big', 0x1_2345_6789n, 7);
  a.setString('s', 'xyz');
  a.setStrings('l', ['p', 'qq', '']);
  a.setBytes('raw', new Uint8Array([1, 2, 3]));
  a.setEmpty('flag');
  a.setU32('x', 1);
  a.setU32('x', 2); // replaces
  const b = a.addNode('b');
  t.is(tree.phandle(b), 1);
  t.is(tree.phandle(b), 1);
  t.is(tree.phandle(a), 2);
  t.is(tree.find('/a@1/b'), b);
  t.is(tree.find('/nope'), undefined);
  t.throws(() => a.addNode('b'));
  t.throws(() => a.addNode('bad name'));
  t.throws(() => a.setU32('c', -1));
  t.throws(() => a.setU32('c', 2 ** 32));
  t.throws(() => a.setString('c', 'a\0b'));

  const blob = tree.toDtb({ bootCpuid: 3 });
  const parsed = parseDtb(blob);
  t.is(parsed.header.bootCpuid, 3);
  const n = node(parsed, '/a@1');
  t.deepEqual(cells(n.props.get('big')), [1, 0x2345_6789, 0, 7]);
  t.is(str(n.props.get('s')), 'xyz');
  t.deepEqual(strs(n.props.get('l')), ['p', 'qq', '']);
  t.deepEqual(Array.from(n.props.get('raw')!), [1, 2, 3]);
  t.is(n.props.get('flag')!.length, 0);
  t.deepEqual(cells(n.props.get('x')), [2]);
  t.deepEqual(cells(n.props.get('phandle')), [2]);
  t.deepEqual(cells(node(parsed, '/a@1/b').props.get('phandle')), [1]);
  t.deepEqual(serializeFdt(tree.root, { bootCpuid: 3 }), blob);
  if (haveTool('dtc')) decompile(t, blob);
});

test('fdtPlacement matches QEMU 7.2 (values measured with `info roms`)', (t) => {
  const base = 0x8000_0000;
  const small = 4096;
  t.is(fdtPlacement(base, 128 * MiB, small), 0x87e0_0000);
  t.is(fdtPlacement(base, 256 * MiB, small), 0x8fe0_0000);
  t.is(fdtPlacement(base, 100 * MiB, small), 0x8620_0000);
  t.is(fdtPlacement(base, 129 * MiB, small), 0x8800_0000);
  t.is(fdtPlacement(base, 1024 * MiB, small), 0xbfe0_0000);
  t.is(fdtPlacement(base, 2048 * MiB, small), 0xbfe0_0000);
  t.is(fdtPlacement(base, 4096 * MiB, small), 0xbfe0_0000);
  t.is(fdtPlacement(base, 128 * MiB, QEMU_FDT_SIZE), 0x87e0_0000);
  // Larger than QEMU's 1 MiB buffer: still below the top and 2 MiB aligned.
  t.is(fdtPlacement(base, 128 * MiB, 3 * MiB), 0x87c0_0000);
  // DRAM starting at or above 3 GiB is not capped.
  t.is(fdtPlacement(0x1_0000_0000, 512 * MiB, small), 0x1_1fe0_0000);
  t.throws(() => fdtPlacement(base, MiB / 2, small), { instanceOf: RangeError });
});

// ---- Cross-check against QEMU's own tree, when QEMU is installed ----

/** Property values with phandles replaced by the target node's path. */
function normalized(parsed: Parsed, n: Node, prop: string): unknown {
  const v = n.props.get(prop)!;
  const byPhandle = new Map<number, string>();
  for (const m of parsed.nodes.values()) {
    if (m.props.has('phandle')) byPhandle.set(cells(m.props.get('phandle'))[0]!, m.path);
  }
  const ph = (c: number): string => byPhandle.get(c) ?? `?${c}`;
  if (prop === 'interrupt-parent' || prop === 'regmap' || prop === 'cpu') return cells(v).map(ph);
  if (prop === 'interrupts-extended') return cells(v).map((c, i) => (i % 2 === 0 ? ph(c) : c));
  return Array.from(v);
}

test('equivalent to QEMU 7.2 virt tree for the devices we model', (t) => {
  // Required, as in qemu-diff.test.ts: CI installs QEMU, and a missing one must not pass silently.
  if (!haveTool('qemu-system-riscv64')) {
    t.fail('qemu-system-riscv64 is not installed or not runnable: install it (Debian/Ubuntu: apt-get install qemu-system-misc) to cross-check the device tree');
    return;
  }
  const qemu = withTemp((dir) => {
    const file = join(dir, 'q.dtb');
    execFileSync(
      'qemu-system-riscv64',
      ['-machine', `virt,dumpdtb=${file}`, '-m', '256M', '-smp', '2', '-bios', 'none', '-nographic'],
      { stdio: 'ignore', timeout: 30_000 },
    );
    return parseDtb(new Uint8Array(readFileSync(file)));
  });
  const ours = parseDtb(buildVirtFdt(baseConfig));
  // Where we deliberately differ: our ISA and MMU, riscv,ndev (QEMU 7.2 says 96 though source 96
  // does not exist), and phandle numbering (compared through the paths they point to).
  const ourOwn = new Set(['riscv,isa', 'riscv,isa-base', 'riscv,isa-extensions', 'mmu-type', 'riscv,ndev', 'phandle']);
  for (const [path, n] of ours.nodes) {
    const q = qemu.nodes.get(path);
    if (!q) {
      t.fail(`QEMU has no node ${path}`);
      continue;
    }
    for (const prop of n.props.keys()) {
      if (ourOwn.has(prop)) continue;
      t.true(q.props.has(prop), `QEMU's ${path} has no ${prop}`);
      if (!q.props.has(prop)) continue;
      t.deepEqual(normalized(ours, n, prop), normalized(qemu, q, prop), `${path}:${prop}`);
    }
    // QEMU properties we leave out: only the random seed.
    for (const prop of q.props.keys()) {
      if (!n.props.has(prop)) t.is(`${path}:${prop}`, '/chosen:rng-seed');
    }
  }
  // QEMU nodes we leave out: devices we do not emulate.
  const notModelled = /^\/(pmu|fw-cfg@|flash@|platform-bus@|soc\/rtc@|soc\/pci@|soc\/virtio_mmio@1000[2-8]000)/;
  for (const path of qemu.nodes.keys()) {
    if (!ours.nodes.has(path)) t.regex(path, notModelled);
  }
});
