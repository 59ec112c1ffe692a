/**
 * A kernel module (.ko, ET_REL) laid out and relocated the way the module loader does before
 * module_finalize() patches it (kernel/module/main.c layout_and_allocate, arch/x86/kernel/module.c
 * apply_relocate_add): every SHF_ALLOC section gets an address in the module area, then the RELA
 * sections write S + A (R_X86_64_64, _32, _32S) or S + A - P (R_X86_64_PC32, _PLT32, _PC64).
 * This is how `.parainstructions` entries get their `instr` pointers and `.retpoline_sites` their
 * offsets: in a .ko those fields are all zero until relocated.
 *
 * Imports resolve against a vmlinux's symbols when one is given (modules may only import exported
 * symbols, and a stripped vmlinux still names those). Without one, each import gets a stand-in
 * address below the module area; the retpoline thunks keep Linux's 32-byte spacing so the
 * register of a thunk call can still be read.
 */
import {
  ElfFile, type ElfSymbol, SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, SHT_RELA, SHN_UNDEF, SHN_ABS,
  R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32, R_X86_64_32S, R_X86_64_PC64,
} from './elf64.ts';
import { ElfError } from './errors.ts';
import { KernelImage, MapSymbols, type ImageSection, type SymbolTable } from './image.ts';

/** MODULES_VADDR on x86-64 (0xffffffffc0000000), canonical signed. */
export const MODULE_BASE = -0x40000000;
/** Where stand-ins for unresolved imports go (below the module area, within rel32 reach). */
const IMPORT_BASE = -0x41000000;
/** GEN-for-each-reg.h order: __x86_indirect_thunk_<reg> sits at array + 32 * index. */
const THUNK_REGS = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

export class ModuleImage extends KernelImage {
  constructor(
    elf: ElfFile,
    sections: ImageSection[],
    symbols: SymbolTable,
    /** Imports that no vmlinux resolved, by stand-in address. */
    readonly unresolvedImports: ReadonlyMap<number, string>,
  ) {
    super('module', elf.file, elf, sections, symbols);
  }
}

function alignUp(v: number, a: number): number {
  return a > 1 ? Math.ceil(v / a) * a : v;
}

export function loadModule(elf: ElfFile, kernel?: SymbolTable): ModuleImage {
  const fail = (p: string): never => {
    throw new ElfError(elf.file, p);
  };
  const bases = new Map<number, number>();
  const byIndex = new Map<number, ImageSection>();
  const sections: ImageSection[] = [];
  let at = MODULE_BASE;
  for (const s of elf.sections) {
    if ((s.flags & SHF_ALLOC) === 0 || s.size === 0) continue;
    at = alignUp(at - MODULE_BASE, Math.min(s.addralign, 4096)) + MODULE_BASE;
    bases.set(s.index, at);
    const loaded: ImageSection = {
      name: s.name,
      addr: at,
      size: s.size,
      executable: (s.flags & SHF_EXECINSTR) !== 0,
      bytes: s.type === SHT_NOBITS ? new Uint8Array(s.size) : elf.data(s).slice(),
    };
    sections.push(loaded);
    byIndex.set(s.index, loaded);
    at += s.size;
  }

  const syms = elf.symbols();
  const symbols = new MapSymbols();
  const unresolved = new Map<number, string>();
  let nextImport = IMPORT_BASE + 32 * THUNK_REGS.length;
  const symbolAddress = (sym: ElfSymbol): number => {
    if (sym.shndx === SHN_ABS) return sym.value;
    if (sym.shndx !== SHN_UNDEF) {
      const base = bases.get(sym.shndx);
      return base === undefined ? 0 : base + sym.value;
    }
    if (sym.name === '') return 0; // the null symbol
    const known = kernel?.addressOf(sym.name) ?? symbols.addressOf(sym.name);
    if (known !== undefined) return known;
    const reg = sym.name.startsWith('__x86_indirect_thunk_') ? THUNK_REGS.indexOf(sym.name.slice(21)) : -1;
    const addr = reg >= 0 ? IMPORT_BASE + 32 * reg : (nextImport += 64);
    unresolved.set(addr, sym.name);
    symbols.add(sym.name, addr);
    return addr;
  };
  const resolved = syms.map((s) => symbolAddress(s));
  syms.forEach((s, i) => {
    if (s.shndx !== SHN_UNDEF) symbols.add(s.name, resolved[i]!);
  });
  if (kernel !== undefined) for (const s of syms) if (s.shndx === SHN_UNDEF && kernel.addressOf(s.name) !== undefined) symbols.add(s.name, kernel.addressOf(s.name)!);

  for (const rela of elf.sections) {
    if (rela.type !== SHT_RELA) continue;
    const target = byIndex.get(rela.info);
    if (target === undefined) continue; // relocations of debug info and other unloaded sections
    const v = new DataView(target.bytes.buffer, target.bytes.byteOffset, target.bytes.byteLength);
    for (const r of elf.relocations(rela)) {
      if (r.symbol >= syms.length) fail(`relocation in ${rela.name} names symbol ${r.symbol} of ${syms.length}`);
      const S = resolved[r.symbol]!;
      const P = target.addr + r.offset;
      const width = r.type === R_X86_64_64 || r.type === R_X86_64_PC64 ? 8 : 4;
      if (r.offset + width > target.size) fail(`relocation at ${rela.name}+${r.offset} lies outside ${target.name}`);
      switch (r.type) {
        case R_X86_64_64:
          v.setBigInt64(r.offset, BigInt(S + r.addend), true);
          break;
        case R_X86_64_PC64:
          v.setBigInt64(r.offset, BigInt(S + r.addend - P), true);
          break;
        case R_X86_64_32:
          v.setUint32(r.offset, (S + r.addend) >>> 0, true);
          break;
        case R_X86_64_32S:
        case R_X86_64_PC32:
        case R_X86_64_PLT32: {
          const value = r.type === R_X86_64_32S ? S + r.addend : S + r.addend - P;
          v.setInt32(r.offset, value | 0, true);
          break;
        }
        default:
          fail(`relocation type ${r.type} in ${rela.name} is not one the x86-64 module loader accepts`);
      }
    }
  }
  return new ModuleImage(elf, sections, symbols, unresolved);
}
