/**
 * A tiny kernel module (ET_REL) whose sites exist only through relocations: .text holds
 * `call *pv_ops+0x280(%rip)` at 0 and `jmp __x86_return_thunk` at 8 with zero displacements,
 * .parainstructions an `instr` of 0, .return_sites an offset of 0; RELA entries fill them in.
 */
import { R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32 } from '../../src/elf/elf64.ts';
import { buildElf, Packer, SHF, SHT, concat, rela, sym } from './elf-builder.ts';

const STB_GLOBAL = 1;
const STT_SECTION = 3;

export function tinyModule(): Uint8Array {
  const text = new Uint8Array(16).fill(0xcc);
  text.set([0xff, 0x15, 0, 0, 0, 0], 0);
  text.set([0xe9, 0, 0, 0, 0], 8);
  const strtab = '\0pv_ops\0__x86_return_thunk\0';
  const symtab = concat([
    sym(0, 0, 0, 0n),
    sym(0, STT_SECTION, 1, 0n),
    sym(1, STB_GLOBAL << 4, 0, 0n),
    sym(8, STB_GLOBAL << 4, 0, 0n),
  ]);
  // indices: 1 .text, 2 .rela.text, 3 .parainstructions, 4 .rela.parainstructions, 5 .return_sites, 6 .rela.return_sites, 7 .symtab, 8 .strtab
  return buildElf(1, [
    { name: '.text', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.EXEC, data: text, align: 16 },
    { name: '.rela.text', type: SHT.RELA, data: concat([rela(2, 2, R_X86_64_PC32, 0x280n - 4n), rela(9, 3, R_X86_64_PLT32, -4n)]), link: 7, info: 1, entsize: 24 },
    { name: '.parainstructions', type: SHT.PROGBITS, flags: SHF.ALLOC, data: new Packer().u64(0n).u8(80).u8(6).raw([0, 0, 0, 0, 0, 0]).done(), align: 8 },
    { name: '.rela.parainstructions', type: SHT.RELA, data: rela(0, 1, R_X86_64_64, 0n), link: 7, info: 3, entsize: 24 },
    { name: '.return_sites', type: SHT.PROGBITS, flags: SHF.ALLOC, data: new Uint8Array(4) },
    { name: '.rela.return_sites', type: SHT.RELA, data: rela(0, 1, R_X86_64_PC32, 8n), link: 7, info: 5, entsize: 24 },
    { name: '.symtab', type: SHT.SYMTAB, data: symtab, link: 8, info: 2, entsize: 24, align: 8 },
    { name: '.strtab', type: SHT.STRTAB, data: new TextEncoder().encode(strtab) },
    { name: '.modinfo', type: SHT.PROGBITS, flags: SHF.ALLOC, data: new TextEncoder().encode('license=GPL\0vermagic=6.1.0-tiny-amd64 SMP preempt mod_unload modversions \0') },
  ]);
}
