/**
 * `node --import tsx scripts/extract-vmlinux.ts <vmlinuz> <vmlinux>`: writes the ELF kernel found
 * inside a bzImage (src/elf/bzimage.ts). Writes to a temporary name and renames, so a failed run
 * never leaves a half-written vmlinux.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { extractVmlinux, findPayload } from '../src/elf/bzimage.ts';
import { ElfFile } from '../src/elf/elf64.ts';

const [input, output] = process.argv.slice(2);
if (input === undefined || output === undefined) {
  console.error('usage: extract-vmlinux.ts <vmlinuz> <vmlinux>');
  process.exit(2);
}
try {
  const image = readFileSync(input);
  const p = findPayload(image, input);
  const vmlinux = extractVmlinux(image, input);
  ElfFile.parse(vmlinux, output); // refuse to write anything that is not a usable ELF
  writeFileSync(`${output}.tmp`, vmlinux);
  renameSync(`${output}.tmp`, output);
  console.error(`extract-vmlinux: ${p.compression} payload of ${p.length} bytes -> ${vmlinux.length} bytes ELF`);
} catch (err) {
  console.error(`extract-vmlinux: ${(err as Error).message}`);
  process.exit(1);
}
