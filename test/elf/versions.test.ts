/**
 * Issue 11: the version comes from the image (linux_banner, a module's vermagic) and picks every
 * table's layout; a version or a table size pvpatch has no layout for is refused with one error
 * that names the version and the table, never read with another version's struct.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ElfFile } from '../../src/elf/elf64.ts';
import { PatchTableError } from '../../src/elf/errors.ts';
import { loadVmlinux } from '../../src/elf/image.ts';
import { loadModule } from '../../src/elf/module.ts';
import { readKernelVersion } from '../../src/elf/kernel-version.ts';
import { readPatchTables } from '../../src/elf/tables.ts';
import { tableLayouts } from '../../src/elf/table-layouts.ts';
import { tinyKernel, TINY_BANNER } from './tiny-kernel.ts';
import { tinyModule } from './tiny-module.ts';

const tiny = (banner?: string) => loadVmlinux(ElfFile.parse(tinyKernel(banner), 'tiny'));

test('the version is read from linux_banner, with Debian\'s stable sublevel', () => {
  const v = readKernelVersion(tiny())!;
  assert.equal(v.release, '6.1.0-tiny-amd64');
  assert.deepEqual([v.major, v.minor, v.sublevel], [6, 1, 176]);
  assert.equal(v.source, TINY_BANNER);
});

test('a module\'s version is its vermagic', () => {
  const v = readKernelVersion(loadModule(ElfFile.parse(tinyModule(), 'tiny.ko')))!;
  assert.equal(v.release, '6.1.0-tiny-amd64');
});

test('6.1 reads alt_instr as 12 bytes with ALT_NOT in bit 15 of cpuid', () => {
  const t = readPatchTables(tiny());
  assert.equal(t.layouts.altinstructions.entrySize, 12);
  assert.equal(t.altinstructions[0]!.inverted, true);
  assert.equal(t.sizes.altinstructions!.entries, 1);
});

test('a 6.12 image with a 12-byte .altinstructions is refused: 12 is not a whole number of 14-byte entries', () => {
  const image = tiny('Linux version 6.12.0-x (b) (gcc) #1 SMP');
  assert.throws(() => readPatchTables(image, { ...tableLayouts(readKernelVersion(image)), parainstructions: { stride: 16, entryBytes: 10 } }), (e: unknown) => e instanceof PatchTableError && /\.altinstructions: size 12 is not a whole number of the 14-byte entries Linux 6\.12\.0/.test(e.message));
});

test('a 6.8+ image that still has .parainstructions is refused', () => {
  const image = tiny('Linux version 6.12.0-x (b) (gcc) #1 SMP');
  assert.throws(() => readPatchTables(image), (e: unknown) => e instanceof PatchTableError && /^\.parainstructions: Linux 6\.12\.0-x should have no \.parainstructions/.test(e.message));
});

test('a version pvpatch has no layouts for is refused, naming the version and the table', () => {
  for (const banner of ['Linux version 4.19.0-27-amd64 (b) (gcc) #1 SMP Debian 4.19.316-1', 'Linux version 6.6.2 (b) (gcc) #1 SMP']) {
    assert.throws(() => readPatchTables(tiny(banner)), (e: unknown) => e instanceof PatchTableError && /^\.altinstructions: Linux (4\.19\.316|6\.6\.2) .*knows the table layouts of 5\.10, 6\.1 and 6\.12 only/.test(e.message));
  }
});

test('an image without a banner is refused rather than guessed', () => {
  assert.throws(() => readPatchTables(tiny('no banner here')), (e: unknown) => e instanceof PatchTableError && /no linux_banner/.test(e.message));
});

test('pvpatch inspect of an unknown layout: one error line, exit 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvpatch-versions-'));
  const b = tinyKernel();
  const s = ElfFile.parse(b, 'tiny').section('.altinstructions')!;
  const v = new DataView(b.buffer);
  v.setBigUint64(Number(v.getBigUint64(0x28, true)) + 64 * s.index + 32, 11n, true); // sh_size: 11 bytes
  const file = join(dir, 'vmlinux-odd-table');
  writeFileSync(file, b);
  const out = spawnSync(process.execPath, ['bin/pvpatch.js', 'inspect', file], { encoding: 'utf8' });
  assert.equal(out.status, 2);
  assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
  assert.match(out.stderr, /^pvpatch: \.altinstructions: size 11 is not a whole number of the 12-byte entries Linux 6\.1\.176 uses/);
});
