/**
 * `pvpatch inspect VMLINUX --compare DUMP` and `--emit-text FILE` as a user runs them, on the
 * boot-writes fixture with its System.map: the text report and `--json` classify a key flipped in
 * the "running" dump, `--emit-text` writes the reproduced .text (and nothing on failure), and a
 * dump that does not cover .text is one error line with exit 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSystemMap } from '../../src/elf/system-map.ts';
import { BOOT_NAMES, bootImage } from './boot-kernel.ts';

function files() {
  const dir = mkdtempSync(join(tmpdir(), 'pvpatch-compare-'));
  const vmlinux = join(dir, 'vmlinux');
  const map = join(dir, 'System.map');
  writeFileSync(vmlinux, bootImage());
  writeFileSync(map, formatSystemMap(BOOT_NAMES));
  return { dir, vmlinux, map };
}

const pvpatch = (args: string[]) => spawnSync(process.execPath, ['bin/pvpatch.js', 'inspect', ...args], { encoding: 'utf8' });

test('--emit-text writes the reproduced .text; --compare of it is identical, of a flipped key names the key', () => {
  const f = files();
  const text = join(f.dir, 'text.bin');
  const emit = pvpatch([f.vmlinux, '--symbols', f.map, '--emit-text', text, '--json']);
  assert.equal(emit.status, 0, emit.stderr);
  const bytes = readFileSync(text);
  assert.equal(bytes.length, 0x200);
  assert.deepEqual([...bytes.subarray(0x60, 0x65)], [0x0f, 0x1f, 0x44, 0x00, 0x00]); // ftrace NOP5
  assert.deepEqual(readdirSync(f.dir).sort(), ['System.map', 'text.bin', 'vmlinux']); // no temporary left

  const same = pvpatch([f.vmlinux, '--symbols', f.map, '--compare', text, '--json']);
  assert.equal(same.status, 0, same.stderr);
  const j = JSON.parse(same.stdout) as { compare: { bytes: number; identical: number; runs: unknown[] } };
  assert.equal(j.compare.identical, j.compare.bytes);
  assert.equal(j.compare.runs.length, 0);

  const running = Buffer.from(bytes);
  running.set([0x66, 0x90], 0x10); // the likely branch on key_off, flipped at run time
  const dump = join(f.dir, 'running.bin');
  writeFileSync(dump, running);
  const flipped = pvpatch([f.vmlinux, '--symbols', f.map, '--compare', dump]);
  assert.equal(flipped.status, 0, flipped.stderr);
  assert.match(flipped.stdout, /differing bytes: key flipped at run time 2, .*unexplained 0/);
  assert.match(flipped.stdout, /key-flipped key_off +2/);
  const fj = JSON.parse(pvpatch([f.vmlinux, '--symbols', f.map, '--compare', dump, '--json']).stdout) as { compare: { runs: { mechanism: string; difference: string; name: string; address: string }[] } };
  assert.deepEqual(fj.compare.runs.map((r) => [r.mechanism, r.difference, r.name, r.address]), [['jump_table', 'key-flipped', 'key_off', '0xffffffff81000010']]);
});

test('a dump that does not cover .text, or a bad --dump-base, is one error line and exit 2', () => {
  const f = files();
  const short = join(f.dir, 'short.bin');
  writeFileSync(short, new Uint8Array(16));
  for (const args of [['--compare', short], ['--compare', short, '--dump-base', 'zz']]) {
    const out = pvpatch([f.vmlinux, '--symbols', f.map, ...args]);
    assert.equal(out.status, 2, out.stdout);
    assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
    assert.match(out.stderr, /^pvpatch: /);
  }
});

test('--emit-text into a directory that does not exist leaves no file and exits 2', () => {
  const f = files();
  const target = join(f.dir, 'no', 'such', 'text.bin');
  const out = pvpatch([f.vmlinux, '--symbols', f.map, '--emit-text', target]);
  assert.equal(out.status, 2);
  assert.match(out.stderr, /^pvpatch: --emit-text .*text\.bin: directory .* does not exist\n$/, 'refused before the image is read');
  assert.equal(existsSync(target), false);
});
