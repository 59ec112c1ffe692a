/**
 * A kernel image as the boot patcher sees it: its allocated sections laid out at their virtual
 * addresses, and the symbols it can name. A vmlinux is already linked (sh_addr is the address);
 * a module is laid out and relocated by module.ts first. Debian's vmlinux is stripped, so names
 * come from the export table (`__ksymtab`, `__ksymtab_gpl`), which still names the few symbols
 * boot patching needs (pv_ops, __x86_return_thunk, its_return_thunk, the retpoline thunks).
 */
import { ElfFile, type ElfSection, SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, ET_REL } from './elf64.ts';

export interface ImageSection {
  readonly name: string;
  readonly addr: number;
  readonly size: number;
  readonly executable: boolean;
  /** The section's bytes as loaded (zeros for NOBITS). */
  readonly bytes: Uint8Array;
}

export interface SymbolTable {
  /** Address of a symbol, if the image names it. */
  addressOf(name: string): number | undefined;
  /** The symbol that starts exactly at `addr`, if any. */
  nameAt(addr: number): string | undefined;
  readonly size: number;
}

export class MapSymbols implements SymbolTable {
  private readonly byName = new Map<string, number>();
  private readonly byAddr = new Map<number, string>();
  private readonly all: [string, number][] = [];
  add(name: string, addr: number): void {
    if (name === '') return;
    this.all.push([name, addr]);
    // Static functions share names (two native_wbinvd): the first keeps the name, each address its own.
    if (!this.byAddr.has(addr)) this.byAddr.set(addr, name);
    if (!this.byName.has(name)) this.byName.set(name, addr);
  }
  addressOf(name: string): number | undefined {
    return this.byName.get(name);
  }
  nameAt(addr: number): string | undefined {
    return this.byAddr.get(addr);
  }
  get size(): number {
    return this.byName.size;
  }
  /** Every (name, address) added, duplicates of a name included. */
  entries(): IterableIterator<[string, number]> {
    return this.all.values();
  }
}

export class KernelImage {
  /** Sorted by address; only sections with a non-zero address. */
  readonly sections: readonly ImageSection[];

  constructor(
    readonly kind: 'vmlinux' | 'module',
    readonly file: string,
    readonly elf: ElfFile,
    sections: ImageSection[],
    readonly symbols: SymbolTable,
  ) {
    this.sections = [...sections].sort((a, b) => a.addr - b.addr);
  }

  /** The loaded section holding `addr`. */
  sectionAt(addr: number): ImageSection | undefined {
    const s = this.sections;
    let lo = 0;
    let hi = s.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = s[mid]!;
      if (addr < m.addr) hi = mid - 1;
      else if (addr >= m.addr + m.size) lo = mid + 1;
      else return m;
    }
    return undefined;
  }

  section(name: string): ImageSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** `len` bytes at `addr` (a view), or undefined when they are not all inside one loaded section. */
  read(addr: number, len: number): Uint8Array | undefined {
    const s = this.sectionAt(addr);
    if (s === undefined || addr + len > s.addr + s.size) return undefined;
    const off = addr - s.addr;
    return s.bytes.subarray(off, off + len);
  }

  /** Whether `addr` lies in executable text. */
  isText(addr: number): boolean {
    return this.sectionAt(addr)?.executable === true;
  }
}

function loaded(elf: ElfFile, s: ElfSection, addr: number): ImageSection {
  return {
    name: s.name,
    addr,
    size: s.size,
    executable: (s.flags & SHF_EXECINSTR) !== 0,
    bytes: s.type === SHT_NOBITS ? new Uint8Array(s.size) : elf.data(s),
  };
}

/**
 * Names from the export tables. Linux 6.1 x86-64 (CONFIG_HAVE_ARCH_PREL32_RELOCATIONS):
 * `struct kernel_symbol { int value_offset; int name_offset; int namespace_offset; }`, each offset
 * relative to its own field (include/linux/export.h).
 */
export function readKsymtab(image: KernelImage, into: MapSymbols): void {
  for (const name of ['__ksymtab', '__ksymtab_gpl']) {
    const s = image.section(name);
    if (s === undefined) continue;
    const v = new DataView(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength);
    for (let off = 0; off + 12 <= s.size; off += 12) {
      const field = s.addr + off;
      const value = field + v.getInt32(off, true);
      const nameAddr = field + 4 + v.getInt32(off + 4, true);
      const strs = image.sectionAt(nameAddr);
      if (strs === undefined) continue;
      const start = nameAddr - strs.addr;
      const end = strs.bytes.indexOf(0, start);
      if (end < 0) continue;
      into.add(new TextDecoder('latin1').decode(strs.bytes.subarray(start, end)), value);
    }
  }
}

/**
 * Load a linked kernel (vmlinux): sections at their own addresses, names from .symtab, then
 * `extra` (a System.map for a stripped image), then the export tables.
 */
export function loadVmlinux(elf: ElfFile, extra?: MapSymbols): KernelImage {
  const sections = elf.sections.filter((s) => (s.flags & SHF_ALLOC) !== 0 && s.addr !== 0 && s.size > 0).map((s) => loaded(elf, s, s.addr));
  const own = elf.symbols().filter((s) => s.shndx !== 0);
  // A stripped image with a System.map: the map is the table (copying 190k names costs a second).
  const symbols = own.length === 0 && extra !== undefined ? extra : new MapSymbols();
  const image = new KernelImage('vmlinux', elf.file, elf, sections, symbols);
  for (const sym of own) symbols.add(sym.name, sym.value);
  if (extra !== undefined && symbols !== extra) for (const [n, a] of extra.entries()) symbols.add(n, a);
  readKsymtab(image, symbols);
  return image;
}

/** True for relocatable objects (kernel modules). */
export function isModule(elf: ElfFile): boolean {
  return elf.type === ET_REL;
}
