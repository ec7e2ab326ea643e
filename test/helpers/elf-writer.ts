/**
 * An ELF64 writer for tests: program headers (any type, address, sizes) and an optional symbol
 * table, so that each path of the loader (hypervisor/elf.ts) can be produced precisely.
 */

export interface SegmentSpec {
  paddr: bigint;
  vaddr?: bigint;
  data: Uint8Array;
  memSize?: bigint;
  flags?: number;
  type?: number;
}

export interface SymbolSpec {
  name: string;
  value: bigint;
  /** STB_LOCAL = 0, STB_GLOBAL = 1 */
  bind?: number;
  /** STT_NOTYPE = 0, STT_OBJECT = 1, STT_FUNC = 2, STT_SECTION = 3 */
  type?: number;
  shndx?: number;
}

export interface ElfSpec {
  elfClass?: number;
  dataEncoding?: number;
  type?: number;
  machine?: number;
  entry?: bigint;
  segments: SegmentSpec[];
  symbols?: SymbolSpec[];
}

const align8 = (n: number): number => (n + 7) & ~7;

export function buildElf(spec: ElfSpec): Uint8Array {
  const phnum = spec.segments.length;
  let cursor = 64 + 56 * phnum;
  const dataOffsets = spec.segments.map((s) => {
    const o = cursor;
    cursor += s.data.length;
    return o;
  });

  // .strtab, .symtab, .shstrtab, then the section header table.
  const symbols = spec.symbols ?? [];
  const withSections = symbols.length > 0;
  const strtab: number[] = [0];
  const nameOffsets = symbols.map((s) => {
    const o = strtab.length;
    for (const c of Buffer.from(s.name, 'utf8')) strtab.push(c);
    strtab.push(0);
    return o;
  });
  const shstrNames = ['', '.symtab', '.strtab', '.shstrtab'];
  const shstrtab: number[] = [];
  const shNameOffsets = shstrNames.map((n) => {
    const o = shstrtab.length;
    for (const c of Buffer.from(n, 'utf8')) shstrtab.push(c);
    shstrtab.push(0);
    return o;
  });
  const strtabOff = cursor;
  const symtabOff = withSections ? align8(strtabOff + strtab.length) : cursor;
  const symtabSize = (symbols.length + 1) * 24;
  const shstrtabOff = symtabOff + symtabSize;
  const shoff = withSections ? align8(shstrtabOff + shstrtab.length) : 0;
  const total = withSections ? shoff + 4 * 64 : cursor;

  const bytes = new Uint8Array(total);
  const v = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, spec.elfClass ?? 2, spec.dataEncoding ?? 1, 1, 0]);
  v.setUint16(16, spec.type ?? 2, true);
  v.setUint16(18, spec.machine ?? 243, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(24, spec.entry ?? 0x8000_0000n, true);
  v.setBigUint64(32, 64n, true);
  v.setBigUint64(40, BigInt(shoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(54, 56, true);
  v.setUint16(56, phnum, true);
  v.setUint16(58, 64, true);
  v.setUint16(60, withSections ? 4 : 0, true);
  v.setUint16(62, withSections ? 3 : 0, true);

  spec.segments.forEach((s, i) => {
    const o = 64 + 56 * i;
    v.setUint32(o, s.type ?? 1, true);
    v.setUint32(o + 4, s.flags ?? 5, true);
    v.setBigUint64(o + 8, BigInt(dataOffsets[i]!), true);
    v.setBigUint64(o + 16, s.vaddr ?? s.paddr, true);
    v.setBigUint64(o + 24, s.paddr, true);
    v.setBigUint64(o + 32, BigInt(s.data.length), true);
    v.setBigUint64(o + 40, s.memSize ?? BigInt(s.data.length), true);
    v.setBigUint64(o + 48, 0x1000n, true);
    bytes.set(s.data, dataOffsets[i]!);
  });

  if (withSections) {
    bytes.set(strtab, strtabOff);
    symbols.forEach((s, i) => {
      const o = symtabOff + 24 * (i + 1);
      v.setUint32(o, nameOffsets[i]!, true);
      v.setUint8(o + 4, ((s.bind ?? 1) << 4) | (s.type ?? 1));
      v.setUint16(o + 6, s.shndx ?? 1, true);
      v.setBigUint64(o + 8, s.value, true);
    });
    bytes.set(shstrtab, shstrtabOff);
    const sh = (i: number, type: number, off: number, size: number, link: number, entsize: number): void => {
      const o = shoff + 64 * i;
      v.setUint32(o, shNameOffsets[i]!, true);
      v.setUint32(o + 4, type, true);
      v.setBigUint64(o + 24, BigInt(off), true);
      v.setBigUint64(o + 32, BigInt(size), true);
      v.setUint32(o + 40, link, true);
      v.setBigUint64(o + 56, BigInt(entsize), true);
    };
    sh(1, 2 /* SHT_SYMTAB */, symtabOff, symtabSize, 2, 24);
    sh(2, 3 /* SHT_STRTAB */, strtabOff, strtab.length, 0, 0);
    sh(3, 3, shstrtabOff, shstrtab.length, 0, 0);
  }
  return bytes;
}
