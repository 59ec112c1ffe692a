/**
 * A small, careful ELF64 little-endian x86-64 reader: the file header, section headers, symbols and
 * RELA relocations (System V gABI, "ELF-64 Object File Format" 1.5). Every offset and size is checked
 * against the file before it is used, so a truncated or corrupt file gives one ElfError, never a
 * RangeError from deep inside.
 *
 * Addresses are returned as JS numbers in canonical signed form (0xffffffff81000000 is
 * -0x7f000000), which is exact for every canonical x86-64 address (format.ts `hexAddress` prints them).
 */
import { ElfError } from './errors.ts';

export const ET_REL = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;
const EM_X86_64 = 62;

export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_NOBITS = 8;
export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;
export const SHN_UNDEF = 0;
export const SHN_ABS = 0xfff1;
export const SHN_COMMON = 0xfff2;

/** x86-64 psABI relocation types that kernel objects use. */
export const R_X86_64_64 = 1;
export const R_X86_64_PC32 = 2;
export const R_X86_64_PLT32 = 4;
export const R_X86_64_32 = 10;
export const R_X86_64_32S = 11;
export const R_X86_64_PC64 = 24;

export interface ElfSection {
  readonly index: number;
  readonly name: string;
  readonly type: number;
  readonly flags: number;
  /** sh_addr, canonical signed. */
  readonly addr: number;
  readonly offset: number;
  readonly size: number;
  readonly link: number;
  readonly info: number;
  readonly addralign: number;
  readonly entsize: number;
}

export interface ElfSymbol {
  readonly name: string;
  /** st_value, canonical signed (for ET_REL: an offset into section `shndx`). */
  readonly value: number;
  readonly size: number;
  readonly shndx: number;
  /** STT_* (low nibble of st_info). */
  readonly type: number;
  /** STB_* (high nibble of st_info). */
  readonly bind: number;
}

export interface ElfRela {
  readonly offset: number;
  readonly type: number;
  readonly symbol: number;
  readonly addend: number;
}

/** u64 → canonical signed JS number; exact for canonical addresses. */
function signed64(view: DataView, at: number): number {
  return Number(view.getBigInt64(at, true));
}

/**
 * The largest SHT_NOBITS section (.bss, .brk) an image may have: loading zero-fills it, so a size
 * field is all it takes to ask for gigabytes. Debian 6.1's vmlinux has a .bss of a few MiB.
 */
export const MAX_NOBITS_BYTES = 256 * 1024 * 1024;

/** A u64 size/offset; anything beyond 2^53 cannot lie inside a file and is reported as such. */
function size64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

function cString(bytes: Uint8Array, start: number, end: number): string | undefined {
  if (start < 0 || start >= end) return undefined;
  let i = start;
  while (i < end && bytes[i] !== 0) i++;
  if (i >= end) return undefined;
  return new TextDecoder('latin1').decode(bytes.subarray(start, i));
}

export class ElfFile {
  readonly type: number;
  readonly sections: readonly ElfSection[];
  private readonly view: DataView;
  private readonly byName = new Map<string, ElfSection>();

  private constructor(
    readonly file: string,
    readonly bytes: Uint8Array,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const fail = (problem: string): never => {
      throw new ElfError(file, problem);
    };
    if (bytes.length < 64) fail(`only ${bytes.length} bytes, shorter than an ELF64 header (64)`);
    if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) fail('no ELF magic (7f 45 4c 46)');
    if (bytes[4] !== 2) fail(`ELF class ${bytes[4]} is not ELFCLASS64 (2)`);
    if (bytes[5] !== 1) fail(`data encoding ${bytes[5]} is not little-endian (ELFDATA2LSB = 1)`);
    const v = this.view;
    this.type = v.getUint16(16, true);
    const machine = v.getUint16(18, true);
    if (machine !== EM_X86_64) fail(`machine ${machine} is not x86-64 (EM_X86_64 = 62)`);
    if (this.type !== ET_REL && this.type !== ET_EXEC && this.type !== ET_DYN) fail(`file type ${this.type} is not relocatable, executable or shared`);
    const shoff = size64(v, 0x28);
    const shentsize = v.getUint16(0x3a, true);
    let shnum = v.getUint16(0x3c, true);
    let shstrndx = v.getUint16(0x3e, true);
    if (shoff === 0) fail('no section header table (e_shoff = 0)');
    if (shentsize !== 64) fail(`section header size ${shentsize} is not 64`);
    if (shoff > bytes.length - 64) fail(`section header table at ${shoff} lies outside the ${bytes.length}-byte file`);
    // gABI extended numbering: e_shnum = 0 / e_shstrndx = SHN_XINDEX keep the real values in section 0.
    if (shnum === 0) shnum = size64(v, shoff + 0x20);
    if (shstrndx === 0xffff) shstrndx = v.getUint32(shoff + 0x28, true);
    if (shnum > (bytes.length - shoff) / 64) fail(`${shnum} section headers at ${shoff} run past the end of the file (truncated?)`);
    if (shstrndx >= shnum) fail(`section name table index ${shstrndx} >= section count ${shnum}`);

    const raw: Omit<ElfSection, 'name'>[] = [];
    const nameOffsets: number[] = [];
    for (let i = 0; i < shnum; i++) {
      const at = shoff + i * 64;
      const s = {
        index: i,
        type: v.getUint32(at + 4, true),
        flags: size64(v, at + 8),
        addr: signed64(v, at + 16),
        offset: size64(v, at + 24),
        size: size64(v, at + 32),
        link: v.getUint32(at + 40, true),
        info: v.getUint32(at + 44, true),
        addralign: size64(v, at + 48),
        entsize: size64(v, at + 56),
      };
      if (s.type !== SHT_NOBITS && i !== 0 && (s.offset > bytes.length || s.size > bytes.length - s.offset)) {
        fail(`section ${i} (offset ${s.offset}, size ${s.size}) lies outside the ${bytes.length}-byte file (truncated?)`);
      }
      if (s.type === SHT_NOBITS && s.size > MAX_NOBITS_BYTES) {
        fail(`section ${i} is ${s.size} bytes of zero-filled memory (SHT_NOBITS), more than the ${MAX_NOBITS_BYTES / (1024 * 1024)} MiB a loaded image may hold`);
      }
      nameOffsets.push(v.getUint32(at, true));
      raw.push(s);
    }
    const strtab = raw[shstrndx]!;
    if (strtab.type === SHT_NOBITS) fail('section name table has no bytes');
    const sections: ElfSection[] = [];
    for (let i = 0; i < raw.length; i++) {
      const name = cString(bytes, strtab.offset + nameOffsets[i]!, strtab.offset + strtab.size);
      if (name === undefined) fail(`section ${i} name offset ${nameOffsets[i]} is outside the section name table`);
      const s = { ...raw[i]!, name: name! };
      sections.push(s);
      if (!this.byName.has(s.name)) this.byName.set(s.name, s);
    }
    this.sections = sections;
  }

  /** Parse `bytes` (the whole file) as an x86-64 ELF64 object; `file` names it in errors. */
  static parse(bytes: Uint8Array, file = 'input'): ElfFile {
    // A plain Uint8Array view: a Node Buffer's slice() would share memory instead of copying.
    return new ElfFile(file, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  /** The first section with this name. */
  section(name: string): ElfSection | undefined {
    return this.byName.get(name);
  }

  /** A section's bytes (a view, not a copy); NOBITS sections have none. */
  data(s: ElfSection): Uint8Array {
    if (s.type === SHT_NOBITS || s.index === 0) return new Uint8Array(0);
    return this.bytes.subarray(s.offset, s.offset + s.size);
  }

  /** The symbol table (.symtab), or [] when the file is stripped. Symbol 0 (the null symbol) is included. */
  symbols(): ElfSymbol[] {
    const symtab = this.sections.find((s) => s.type === SHT_SYMTAB);
    if (symtab === undefined) return [];
    if (symtab.link >= this.sections.length) throw new ElfError(this.file, `symbol table's string table index ${symtab.link} does not exist`);
    const strs = this.sections[symtab.link]!;
    const v = this.view;
    const out: ElfSymbol[] = [];
    const n = Math.floor(symtab.size / 24);
    for (let i = 0; i < n; i++) {
      const at = symtab.offset + i * 24;
      const nameOff = v.getUint32(at, true);
      const name = nameOff === 0 ? '' : cString(this.bytes, strs.offset + nameOff, strs.offset + strs.size);
      if (name === undefined) throw new ElfError(this.file, `symbol ${i} name offset ${nameOff} is outside its string table`);
      const info = this.bytes[at + 4]!;
      out.push({
        name,
        value: signed64(v, at + 8),
        size: size64(v, at + 16),
        shndx: v.getUint16(at + 6, true),
        type: info & 0xf,
        bind: info >> 4,
      });
    }
    return out;
  }

  /** The RELA sections that apply to `target` (sh_info = its index). */
  relaSectionsFor(target: ElfSection): ElfSection[] {
    return this.sections.filter((s) => s.type === SHT_RELA && s.info === target.index);
  }

  /** The entries of one SHT_RELA section. */
  relocations(rela: ElfSection): ElfRela[] {
    if (rela.type !== SHT_RELA) throw new ElfError(this.file, `section ${rela.name} is not SHT_RELA`);
    const v = this.view;
    const out: ElfRela[] = [];
    const n = Math.floor(rela.size / 24);
    for (let i = 0; i < n; i++) {
      const at = rela.offset + i * 24;
      out.push({
        offset: size64(v, at),
        type: v.getUint32(at + 8, true),
        symbol: v.getUint32(at + 12, true),
        addend: signed64(v, at + 16),
      });
    }
    return out;
  }
}
