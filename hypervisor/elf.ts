/**
 * ELF64 loader for RISC-V guest kernels and bare-metal tests.
 *
 * Segments are placed by p_paddr, as QEMU's `-kernel` loader does (load_elf with
 * the physical address): a kernel linked to run high in virtual memory but loaded
 * low must still land in RAM. Symbols come from the SHT_SYMTAB section (`.symtab`,
 * whose sh_link names its `.strtab`); the run loop needs `tohost`/`fromhost` to
 * enable HTIF as Spike does.
 *
 * Everything is validated up front, so a bad file fails with a message that names
 * the file and the field, never with a RangeError from a DataView deep inside boot.
 */

export class ElfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ElfError';
  }
}

export interface ElfSegment {
  /** Physical load address (p_paddr): where the bytes go in guest-physical memory. */
  paddr: bigint;
  /** Link-time virtual address (p_vaddr), kept for diagnostics. */
  vaddr: bigint;
  /** The p_filesz bytes from the file (a view into the input, not a copy). */
  fileData: Uint8Array;
  /** p_memsz: bytes [fileData.length, memSize) are zero (.bss). */
  memSize: bigint;
  /** p_flags: PF_X = 1, PF_W = 2, PF_R = 4. */
  flags: number;
}

export interface ElfImage {
  entry: bigint;
  segments: ElfSegment[];
  /** Symbol name -> st_value. A global definition wins over a local one of the same name. */
  symbols: Map<string, bigint>;
  /** The name used in error messages (set by parseElf). */
  fileName?: string;
}

// e_ident and header constants (System V gABI; RISC-V psABI for EM_RISCV).
const ELFCLASS32 = 1;
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const ELFDATA2MSB = 2;
const ET_EXEC = 2;
const EM_RISCV = 243;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;
const STT_SECTION = 3;
const STT_FILE = 4;
const STB_LOCAL = 0;
const SHN_UNDEF = 0;

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
const U64_LIMIT = 1n << 64n;

const MACHINE_NAMES: Record<number, string> = {
  0: 'none',
  2: 'SPARC',
  3: 'x86 (i386)',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC64',
  22: 'S/390',
  40: 'ARM (32-bit)',
  43: 'SPARC V9',
  50: 'IA-64',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
  247: 'BPF',
  258: 'LoongArch',
};

const TYPE_NAMES: Record<number, string> = {
  0: 'ET_NONE (no file type)',
  1: 'ET_REL (relocatable object: link it first)',
  2: 'ET_EXEC (executable)',
  3: 'ET_DYN (position-independent/shared object)',
  4: 'ET_CORE (core dump)',
};

function hex(value: bigint | number): string {
  return '0x' + value.toString(16);
}

/** Reads with bounds checks that turn "beyond end of file" into an ElfError. */
class Reader {
  readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly file: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(offset: bigint, length: bigint, what: string): number {
    if (offset < 0n || length < 0n || offset + length > BigInt(this.bytes.length)) {
      throw new ElfError(
        `${this.file}: truncated ELF file: ${what} at file offset ${hex(offset)}, ` +
          `${length} bytes, lies beyond the end of the file (${this.bytes.length} bytes)`,
      );
    }
    return Number(offset);
  }

  u8(o: number): number {
    return this.view.getUint8(o);
  }
  u16(o: number): number {
    return this.view.getUint16(o, true);
  }
  u32(o: number): number {
    return this.view.getUint32(o, true);
  }
  u64(o: number): bigint {
    return this.view.getBigUint64(o, true);
  }
}

/** Parse and validate an ELF64 little-endian RISC-V executable. */
export function parseElf(bytes: Uint8Array, fileName = '<elf>'): ElfImage {
  const r = new Reader(bytes, fileName);
  const f = fileName;

  if (
    bytes.length < 4 ||
    bytes[0] !== 0x7f ||
    bytes[1] !== 0x45 /* E */ ||
    bytes[2] !== 0x4c /* L */ ||
    bytes[3] !== 0x46 /* F */
  ) {
    throw new ElfError(`${f}: not an ELF file (bad magic; expected 7f 45 4c 46 "\\x7fELF")`);
  }
  if (bytes.length < EHDR_SIZE) {
    throw new ElfError(
      `${f}: truncated ELF file: the ELF64 header needs ${EHDR_SIZE} bytes, the file has ${bytes.length}`,
    );
  }
  const elfClass = r.u8(4);
  if (elfClass === ELFCLASS32) {
    throw new ElfError(`${f}: ELF32 file; kmemvisor runs RV64 guests and needs an ELF64 (ELFCLASS64) file`);
  }
  if (elfClass !== ELFCLASS64) {
    throw new ElfError(`${f}: unknown ELF class ${elfClass} (expected 2 = ELFCLASS64)`);
  }
  const data = r.u8(5);
  if (data === ELFDATA2MSB) {
    throw new ElfError(`${f}: big-endian ELF file; RISC-V guests must be little-endian (ELFDATA2LSB)`);
  }
  if (data !== ELFDATA2LSB) {
    throw new ElfError(`${f}: unknown ELF data encoding ${data} (expected 1 = little-endian)`);
  }
  const machine = r.u16(18);
  if (machine !== EM_RISCV) {
    const name = MACHINE_NAMES[machine] ?? 'unknown';
    throw new ElfError(`${f}: ELF file is for machine ${machine} (${name}), not RISC-V (EM_RISCV = 243)`);
  }
  const type = r.u16(16);
  if (type !== ET_EXEC) {
    // ET_DYN would need a load bias and relocation, which QEMU's -kernel path does not do
    // for ELF either; refusing is clearer than loading at a guessed address.
    const name = TYPE_NAMES[type] ?? `unknown type ${type}`;
    throw new ElfError(`${f}: not an executable: e_type is ${name}; link a static executable (ET_EXEC)`);
  }

  const entry = r.u64(24);
  const phoff = r.u64(32);
  const shoff = r.u64(40);
  const phentsize = r.u16(54);
  const phnum = r.u16(56);
  const shentsize = r.u16(58);
  const shnum = r.u16(60);

  if (phnum > 0 && phentsize < PHDR_SIZE) {
    throw new ElfError(`${f}: e_phentsize is ${phentsize}, smaller than an ELF64 program header (${PHDR_SIZE})`);
  }
  const phBase =
    phnum === 0 ? 0 : r.need(phoff, BigInt(phnum) * BigInt(phentsize), `program header table (${phnum} entries)`);

  const segments: ElfSegment[] = [];
  // Program header index of each segment, for messages.
  const phIndex: number[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phBase + i * phentsize;
    if (r.u32(o) !== PT_LOAD) continue;
    const flags = r.u32(o + 4);
    const offset = r.u64(o + 8);
    const vaddr = r.u64(o + 16);
    const paddr = r.u64(o + 24);
    const filesz = r.u64(o + 32);
    const memsz = r.u64(o + 40);
    // An empty segment occupies nothing and loads nothing, wherever it claims to be (linkers emit
    // them, e.g. for an empty .bss): skipped, as QEMU's loader does.
    if (memsz === 0n) continue;
    const where = `PT_LOAD program header ${i} (paddr ${hex(paddr)})`;
    if (filesz > memsz) {
      throw new ElfError(`${f}: ${where} has p_filesz ${hex(filesz)} > p_memsz ${hex(memsz)}`);
    }
    if (paddr + memsz > U64_LIMIT) {
      throw new ElfError(`${f}: ${where} with p_memsz ${hex(memsz)} wraps past the end of the address space`);
    }
    const start = r.need(offset, filesz, `segment data of ${where}`);
    segments.push({
      paddr,
      vaddr,
      fileData: bytes.subarray(start, start + Number(filesz)),
      memSize: memsz,
      flags,
    });
    phIndex.push(i);
  }
  if (segments.length === 0) {
    throw new ElfError(`${f}: no PT_LOAD segments: nothing to load`);
  }

  // A pc is 2-byte aligned (IALIGN = 16 with the C extension): an odd entry cannot be jumped to.
  if ((entry & 1n) !== 0n) {
    throw new ElfError(`${f}: entry point ${hex(entry)} is odd: a RISC-V instruction address is at least 2-byte aligned`);
  }

  // Overlap check by physical range.
  const order = segments.map((_, k) => k);
  order.sort((a, b) => (segments[a]!.paddr < segments[b]!.paddr ? -1 : segments[a]!.paddr > segments[b]!.paddr ? 1 : 0));
  for (let k = 1; k < order.length; k++) {
    const prev = segments[order[k - 1]!]!;
    const cur = segments[order[k]!]!;
    if (cur.paddr < prev.paddr + prev.memSize) {
      throw new ElfError(
        `${f}: PT_LOAD program headers ${phIndex[order[k - 1]!]} ` +
          `[${hex(prev.paddr)}, ${hex(prev.paddr + prev.memSize)}) and ${phIndex[order[k]!]} ` +
          `[${hex(cur.paddr)}, ${hex(cur.paddr + cur.memSize)}) overlap in physical memory`,
      );
    }
  }

  const symbols = shnum > 0 && shoff !== 0n ? readSymbols(r, shoff, shnum, shentsize) : new Map<string, bigint>();
  return { entry, segments, symbols, fileName };
}

function readSymbols(r: Reader, shoff: bigint, shnum: number, shentsize: number): Map<string, bigint> {
  const f = r.file;
  if (shentsize < SHDR_SIZE) {
    throw new ElfError(`${f}: e_shentsize is ${shentsize}, smaller than an ELF64 section header (${SHDR_SIZE})`);
  }
  const shBase = r.need(shoff, BigInt(shnum) * BigInt(shentsize), `section header table (${shnum} entries)`);
  const symbols = new Map<string, bigint>();
  // Names that so far only have a local definition: a later global one replaces them.
  const localOnly = new Set<string>();
  const decoder = new TextDecoder('utf-8');

  for (let i = 0; i < shnum; i++) {
    const sh = shBase + i * shentsize;
    if (r.u32(sh + 4) !== SHT_SYMTAB) continue;
    const symOff = r.u64(sh + 24);
    const symSize = r.u64(sh + 32);
    const link = r.u32(sh + 40);
    const entsize = r.u64(sh + 56) || BigInt(SYM_SIZE);
    if (entsize < BigInt(SYM_SIZE)) {
      throw new ElfError(`${f}: symbol table (section ${i}) has sh_entsize ${entsize}, smaller than ${SYM_SIZE}`);
    }
    if (link >= shnum) {
      throw new ElfError(`${f}: symbol table (section ${i}) links to string table section ${link}, which does not exist`);
    }
    const symBase = r.need(symOff, symSize, `symbol table (section ${i})`);
    const strSh = shBase + link * shentsize;
    const strOff = r.u64(strSh + 24);
    const strSize = r.u64(strSh + 32);
    const strBase = r.need(strOff, strSize, `string table (section ${link})`);
    const strEnd = strBase + Number(strSize);

    const count = Number(symSize / entsize);
    const step = Number(entsize);
    for (let s = 1; s < count; s++) {
      // Entry 0 is the reserved null symbol.
      const o = symBase + s * step;
      const nameOff = r.u32(o);
      const info = r.u8(o + 4);
      const shndx = r.u16(o + 6);
      const value = r.u64(o + 8);
      const symType = info & 0xf;
      if (nameOff === 0 || shndx === SHN_UNDEF || symType === STT_SECTION || symType === STT_FILE) continue;
      const nameStart = strBase + nameOff;
      if (nameStart >= strEnd) {
        throw new ElfError(`${f}: symbol ${s} has a name offset ${nameOff} beyond its string table`);
      }
      let nameEnd = nameStart;
      while (nameEnd < strEnd && r.bytes[nameEnd] !== 0) nameEnd++;
      const name = decoder.decode(r.bytes.subarray(nameStart, nameEnd));
      const local = info >> 4 === STB_LOCAL;
      if (!symbols.has(name)) {
        symbols.set(name, value);
        if (local) localOnly.add(name);
      } else if (!local && localOnly.has(name)) {
        symbols.set(name, value);
        localOnly.delete(name);
      }
    }
  }
  return symbols;
}

/**
 * Bytes of a segment that may hang below RAM: GNU ld with `-Ttext=ADDR` puts the ELF and program
 * headers in front of .text, in the same segment, below ADDR. QEMU drops those bytes; so do we.
 */
export const HEADER_PREFIX_LIMIT = 4096n;

/**
 * Check that every non-empty segment lies inside [ramBase, ramBase + ramSize), allowing a header
 * prefix of at most HEADER_PREFIX_LIMIT bytes below ramBase (the loader skips it).
 */
export function checkSegmentsFit(image: ElfImage, ramBase: number, ramSize: number): void {
  const base = BigInt(ramBase);
  const end = base + BigInt(ramSize);
  const f = image.fileName ?? '<elf>';
  image.segments.forEach((seg, k) => {
    if (seg.memSize === 0n) return;
    const segEnd = seg.paddr + seg.memSize;
    const headerPrefix = seg.paddr < base && base - seg.paddr <= HEADER_PREFIX_LIMIT && segEnd > base;
    if ((seg.paddr < base && !headerPrefix) || segEnd > end) {
      throw new ElfError(
        `${f}: PT_LOAD segment ${k} [${hex(seg.paddr)}, ${hex(segEnd)}) (vaddr ${hex(seg.vaddr)}) ` +
          `does not lie in RAM [${hex(base)}, ${hex(end)}); link the program for RAM at ${hex(base)} ` +
          `or give the VM more memory`,
      );
    }
  });
}
