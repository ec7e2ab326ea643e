import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ElfError, checkSegmentsFit, parseElf } from '../hypervisor/elf.ts';
import { buildElf, type ElfSpec } from './helpers/elf-writer.ts';


const code = new Uint8Array([0x13, 0x00, 0x00, 0x00, 0x6f, 0x00, 0x00, 0x00]); // nop; j .
const good: ElfSpec = {
  entry: 0x8000_0000n,
  segments: [
    { paddr: 0x8000_0000n, data: code, flags: 5 },
    { paddr: 0x8000_1000n, vaddr: 0xffff_ffff_8000_1000n, data: new Uint8Array([1, 2, 3, 4]), memSize: 0x100n, flags: 6 },
  ],
  symbols: [
    { name: 'tohost', value: 0x8000_1000n },
    { name: 'fromhost', value: 0x8000_1040n },
    { name: 'helper', value: 0x8000_0010n, bind: 0 },
    { name: 'helper', value: 0x8000_0020n, bind: 1 },
    { name: 'first', value: 0x1n, bind: 1 },
    { name: 'first', value: 0x2n, bind: 0 },
    { name: '.text', value: 0x8000_0000n, type: 3 },
    { name: 'undefined_ref', value: 0n, shndx: 0 },
  ],
};

function expectElfError(t: import('ava').ExecutionContext, bytes: Uint8Array, pattern: RegExp): void {
  const err = t.throws(() => parseElf(bytes, 'guest.elf'), { instanceOf: ElfError });
  t.regex(err?.message ?? '', /guest\.elf/);
  t.regex(err?.message ?? '', pattern);
}

test('parses a good image: entry, segments by paddr, symbols', (t) => {
  const img = parseElf(buildElf(good), 'guest.elf');
  t.is(img.entry, 0x8000_0000n);
  t.is(img.segments.length, 2);
  t.is(img.segments[0]!.paddr, 0x8000_0000n);
  t.deepEqual([...img.segments[0]!.fileData], [...code]);
  t.is(img.segments[0]!.memSize, 8n);
  t.is(img.segments[0]!.flags, 5);
  t.is(img.segments[1]!.paddr, 0x8000_1000n);
  t.is(img.segments[1]!.vaddr, 0xffff_ffff_8000_1000n);
  t.deepEqual([...img.segments[1]!.fileData], [1, 2, 3, 4]);
  t.is(img.segments[1]!.memSize, 0x100n);
  t.is(img.symbols.get('tohost'), 0x8000_1000n);
  t.is(img.symbols.get('fromhost'), 0x8000_1040n);
  t.is(img.symbols.get('helper'), 0x8000_0020n, 'a global definition wins over a local one');
  t.is(img.symbols.get('first'), 0x1n, 'a later local does not replace a global');
  t.false(img.symbols.has('.text'), 'section symbols are skipped');
  t.false(img.symbols.has('undefined_ref'), 'undefined symbols are skipped');
  t.notThrows(() => checkSegmentsFit(img, 0x8000_0000, 128 * 1024 * 1024));
});

test('an image without section headers has no symbols', (t) => {
  const img = parseElf(buildElf({ ...good, symbols: [] }));
  t.is(img.symbols.size, 0);
});

test('PT_LOAD only: other program headers are ignored', (t) => {
  const img = parseElf(
    buildElf({ segments: [{ paddr: 0x8000_0000n, data: code }, { paddr: 0x8000_0000n, data: code, type: 4 /* PT_NOTE */ }] }),
  );
  t.is(img.segments.length, 1);
});

test('rejects a file that is not ELF', (t) => {
  expectElfError(t, new TextEncoder().encode('#!/bin/sh\necho hi\n'), /not an ELF/);
  expectElfError(t, new Uint8Array(0), /not an ELF/);
});

test('rejects ELF32', (t) => {
  expectElfError(t, buildElf({ ...good, elfClass: 1 }), /ELF32/);
});

test('rejects big-endian', (t) => {
  expectElfError(t, buildElf({ ...good, dataEncoding: 2 }), /big-endian/);
});

test('rejects another machine, naming it', (t) => {
  expectElfError(t, buildElf({ ...good, machine: 62 }), /machine 62 \(x86-64\)/);
  expectElfError(t, buildElf({ ...good, machine: 183 }), /AArch64/);
});

test('rejects ET_DYN and ET_REL', (t) => {
  expectElfError(t, buildElf({ ...good, type: 3 }), /not an executable.*ET_DYN/);
  expectElfError(t, buildElf({ ...good, type: 1 }), /not an executable.*ET_REL/);
});

test('rejects truncated files', (t) => {
  const bytes = buildElf(good);
  expectElfError(t, bytes.subarray(0, 40), /truncated.*header/);
  expectElfError(t, bytes.subarray(0, 64 + 60), /truncated.*program header table/);
  // Segment data runs past the end of the file.
  const noSyms = buildElf({ ...good, symbols: [] });
  expectElfError(t, noSyms.subarray(0, noSyms.length - 2), /truncated.*segment data.*program header 1/);
  // Section header table beyond the end of the file.
  expectElfError(t, bytes.subarray(0, bytes.length - 10), /truncated.*section header table/);
});

test('rejects p_filesz > p_memsz', (t) => {
  const spec: ElfSpec = { segments: [{ paddr: 0x8000_0000n, data: code, memSize: 4n }] };
  expectElfError(t, buildElf(spec), /p_filesz 0x8 > p_memsz 0x4/);
});

test('rejects overlapping PT_LOAD segments', (t) => {
  const spec: ElfSpec = {
    segments: [
      { paddr: 0x8000_1000n, data: code },
      { paddr: 0x8000_0000n, data: code, memSize: 0x1001n },
    ],
  };
  expectElfError(t, buildElf(spec), /program headers 1 .* and 0 .* overlap/);
  // Adjacent is fine.
  const adjacent: ElfSpec = {
    segments: [
      { paddr: 0x8000_1000n, data: code },
      { paddr: 0x8000_0000n, data: code, memSize: 0x1000n },
    ],
  };
  t.notThrows(() => parseElf(buildElf(adjacent)));
});

test('rejects an image with no PT_LOAD segments', (t) => {
  expectElfError(t, buildElf({ segments: [] }), /no PT_LOAD/);
  expectElfError(t, buildElf({ segments: [{ paddr: 0n, data: code, type: 4 }] }), /no PT_LOAD/);
});

test('checkSegmentsFit names the segment outside RAM', (t) => {
  const img = parseElf(buildElf(good), 'guest.elf');
  const err = t.throws(() => checkSegmentsFit(img, 0x8000_0000, 0x1000), { instanceOf: ElfError });
  t.regex(err?.message ?? '', /guest\.elf: PT_LOAD segment 1 \[0x80001000, 0x80001100\).*does not lie in RAM \[0x80000000, 0x80001000\)/);
  const low = parseElf(buildElf({ segments: [{ paddr: 0x1000n, data: code }] }), 'low.elf');
  t.throws(() => checkSegmentsFit(low, 0x8000_0000, 0x800_0000), { message: /low\.elf: PT_LOAD segment 0/ });
});

// ---- A real ELF from the cross compiler. ----

function have(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('parses a real riscv64-unknown-elf-gcc executable like readelf/nm do', (t) => {
  // Required, as QEMU is in qemu-diff.test.ts: CI installs the cross compiler (it builds guests/),
  // and a missing one must not pass silently.
  if (!have('riscv64-unknown-elf-gcc')) {
    t.fail('riscv64-unknown-elf-gcc is not installed: install it (Debian/Ubuntu: apt-get install gcc-riscv64-unknown-elf) to check the loader against a real executable');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'kmemvisor-elf-'));
  try {
    const src = join(dir, 'start.S');
    const elf = join(dir, 'start.elf');
    writeFileSync(
      src,
      `
        .section .text
        .globl _start
      _start:
        la t0, tohost
        li t1, 1
        sd t1, 0(t0)
      1: j 1b
        .section .tohost, "aw", @progbits
        .balign 64
        .globl tohost
      tohost: .dword 0
        .balign 64
        .globl fromhost
      fromhost: .dword 0
        .bss
      buffer: .space 8192
      `,
    );
    // A linker script like riscv-tests' env/p/link.ld. With only -Ttext=0x80000000, ld
    // puts the ELF headers in the first PT_LOAD at 0x7ffff000, below RAM (tested below).
    const script = join(dir, 'link.ld');
    writeFileSync(
      script,
      `OUTPUT_ARCH("riscv")
      ENTRY(_start)
      SECTIONS {
        . = 0x80000000;
        .text : { *(.text) }
        . = ALIGN(0x1000);
        .tohost : { *(.tohost) }
        .bss : { *(.bss) }
      }
      `,
    );
    execFileSync('riscv64-unknown-elf-gcc', [
      '-nostdlib', '-march=rv64imac', '-mabi=lp64', '-T', script, '-o', elf, src,
    ]);
    const img = parseElf(readFileSync(elf), elf);

    const nm = new Map<string, bigint>();
    for (const line of execFileSync('riscv64-unknown-elf-nm', [elf], { encoding: 'utf8' }).split('\n')) {
      const m = /^([0-9a-f]+) \w (\S+)$/.exec(line);
      if (m) nm.set(m[2]!, BigInt('0x' + m[1]));
    }
    t.is(img.symbols.get('_start'), nm.get('_start'));
    t.is(img.entry, 0x8000_0000n);
    for (const name of ['_start', 'tohost', 'fromhost', 'buffer']) t.is(img.symbols.get(name), nm.get(name), name);

    const readelf = execFileSync('riscv64-unknown-elf-readelf', ['-lW', elf], { encoding: 'utf8' });
    const loads = readelf
      .split('\n')
      .filter((l) => /^\s*LOAD\s/.test(l))
      .map((l) => l.trim().split(/\s+/));
    t.is(img.segments.length, loads.length);
    loads.forEach((cols, i) => {
      const seg = img.segments[i]!;
      t.is(seg.vaddr, BigInt(cols[2]!));
      t.is(seg.paddr, BigInt(cols[3]!));
      t.is(BigInt(seg.fileData.length), BigInt(cols[4]!));
      t.is(seg.memSize, BigInt(cols[5]!));
    });
    // The first instruction is `auipc t0, ...` (opcode 0x17, rd = t0 = x5).
    const text = img.segments.find((s) => s.paddr <= img.entry && img.entry < s.paddr + s.memSize)!;
    const at = Number(img.entry - text.paddr);
    t.is(text.fileData[at]! & 0x7f, 0x17);
    t.is((text.fileData[at]! >> 7) | ((text.fileData[at + 1]! & 0xf) << 1), 5);
    t.notThrows(() => checkSegmentsFit(img, 0x8000_0000, 128 * 1024 * 1024));

    // With -Ttext alone the headers' page becomes part of the text segment, below RAM. QEMU drops
    // those header bytes and loads the rest; checkSegmentsFit allows exactly that prefix.
    const plain = join(dir, 'plain.elf');
    execFileSync('riscv64-unknown-elf-gcc', [
      '-nostdlib', '-march=rv64imac', '-mabi=lp64', '-Ttext=0x80000000', '-o', plain, src,
    ]);
    const plainImg = parseElf(readFileSync(plain), plain);
    t.is(plainImg.entry, 0x8000_0000n);
    t.is(plainImg.segments[0]!.paddr, 0x7fff_f000n);
    t.notThrows(() => checkSegmentsFit(plainImg, 0x8000_0000, 128 * 1024 * 1024));
    // ...but not a segment reaching further below RAM than a header page.
    t.throws(() => checkSegmentsFit(plainImg, 0x8000_2000, 128 * 1024 * 1024), {
      instanceOf: ElfError,
      message: /PT_LOAD segment 0 \[0x7ffff000, .*does not lie in RAM/,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- Issue 16, item 11: empty segments, segments outside RAM, odd entry points. ----

test('a PT_LOAD with p_memsz 0 is skipped wherever it claims to be', (t) => {
  for (const paddr of [0n, 0x1000n, 0x7fff_f000n, 0xffff_ffff_ffff_f000n, 0x8000_0000n]) {
    const spec: ElfSpec = { segments: [{ paddr, data: new Uint8Array(0), memSize: 0n }, { paddr: 0x8000_0000n, data: code }] };
    const img = parseElf(buildElf(spec), 'guest.elf');
    t.is(img.segments.length, 1, `the empty segment at 0x${paddr.toString(16)} is dropped`);
    t.notThrows(() => checkSegmentsFit(img, 0x8000_0000, 0x1000));
  }
  expectElfError(t, buildElf({ segments: [{ paddr: 0x1000n, data: new Uint8Array(0), memSize: 0n }] }), /no PT_LOAD/);
});

test('an entry point with bit 0 set is refused', (t) => {
  expectElfError(t, buildElf({ ...good, entry: 0x8000_0001n }), /entry point 0x80000001 is odd/);
  t.notThrows(() => parseElf(buildElf({ ...good, entry: 0x8000_0002n })), 'a 2-byte aligned entry is a valid pc (RVC)');
});
