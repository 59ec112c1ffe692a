/**
 * `node --import tsx scripts/extract-symbols.ts <vmlinux-dbg> <System.map>`: writes the function and
 * object symbols of an unstripped vmlinux as a System.map (written to a temporary name, then renamed).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { ElfFile } from '../src/elf/elf64.ts';
import { formatSystemMap } from '../src/elf/system-map.ts';

const [input, output] = process.argv.slice(2);
if (input === undefined || output === undefined) {
  console.error('usage: extract-symbols.ts <vmlinux-dbg> <System.map>');
  process.exit(2);
}
try {
  const elf = ElfFile.parse(readFileSync(input), input);
  const syms = elf.symbols().filter((s) => s.shndx !== 0 && s.name !== '' && s.type <= 2).map((s) => [s.name, s.value] as const);
  writeFileSync(`${output}.tmp`, formatSystemMap(syms));
  renameSync(`${output}.tmp`, output);
  console.error(`extract-symbols: ${syms.length} symbols -> ${output}`);
} catch (err) {
  console.error(`extract-symbols: ${(err as Error).message}`);
  process.exit(1);
}
