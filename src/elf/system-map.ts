/**
 * Symbol names for a stripped image from elsewhere: a System.map (`ffffffff81000000 T _stext`, the
 * format `nm -n vmlinux` writes and Debian ships for its kernels) or the .symtab of an unstripped
 * vmlinux (Debian's linux-image-*-dbg). Platforms other than bare metal need them: the functions
 * KVM and Xen put into pv_ops (kvm_wait, xen_save_fl_direct, ...) are static and never exported.
 */
import { ElfFile } from './elf64.ts';
import { ElfError } from './errors.ts';
import { MapSymbols } from './image.ts';

/** Symbols from System.map text. Lines that do not parse are skipped; an empty result is an error. */
export function parseSystemMap(text: string, file = 'System.map'): MapSymbols {
  const out = new MapSymbols();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{1,16})\s+\S\s+(\S+)/.exec(line);
    if (m === null) continue;
    out.add(m[2]!, Number(BigInt.asIntN(64, BigInt(`0x${m[1]}`))));
  }
  if (out.size === 0) throw new ElfError(file, 'no symbols (expected System.map lines or an ELF file with .symtab)');
  return out;
}

/** Symbols from a System.map or an unstripped ELF (defined symbols only). */
export function readSymbolFile(bytes: Uint8Array, file: string): MapSymbols {
  if (bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) {
    const out = new MapSymbols();
    for (const s of ElfFile.parse(bytes, file).symbols()) if (s.shndx !== 0 && s.name !== '') out.add(s.name, s.value);
    if (out.size === 0) throw new ElfError(file, 'has no .symtab (stripped)');
    return out;
  }
  return parseSystemMap(new TextDecoder('latin1').decode(bytes), file);
}

/** System.map text for a symbol list, sorted by address (for writing a compact cache). */
export function formatSystemMap(symbols: Iterable<readonly [string, number]>): string {
  const rows = [...symbols].sort((a, b) => a[1] - b[1]);
  return rows.map(([n, a]) => `${BigInt.asUintN(64, BigInt(a)).toString(16).padStart(16, '0')} t ${n}`).join('\n') + '\n';
}
