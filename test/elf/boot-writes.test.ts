/**
 * The boot-time text writes beyond alternative_instructions() (issue 11), on a tiny linked image
 * laid out as Linux lays them out: jump labels at their keys' states, static calls at their keys'
 * functions, ftrace's __fentry__ calls as NOP5, 6.12's relocating alternatives and NOPs, runtime
 * constants, and `compareText` classifying what a running kernel changed later.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes } from '../../src/x86/format.ts';
import fc from 'fast-check';
import { addNop, applyAlternatives612, applyRelocation, optimizeNops612 } from '../../src/elf/apply-alternatives-6.12.ts';
import { PatchedText } from '../../src/elf/patched-text.ts';
import { runtimeConstValue } from '../../src/elf/apply-runtime-consts.ts';
import { applySmpUnlock, uniprocessorBoot } from '../../src/elf/apply-smp-locks.ts';
import { parseCommandLine } from '../../src/elf/boot-cpu.ts';
import { bootTextWrites } from '../../src/elf/boot-patch.ts';
import { compareText } from '../../src/elf/compare.ts';
import { ElfFile } from '../../src/elf/elf64.ts';
import { loadVmlinux, MapSymbols } from '../../src/elf/image.ts';
import { bootSetup } from '../../src/elf/platforms.ts';
import { readPatchTables } from '../../src/elf/tables.ts';
import { BOOT_NAMES, bootImage, n, T } from './boot-kernel.ts';

function boot() {
  const names = new MapSymbols();
  for (const [name, a] of BOOT_NAMES) names.add(name, a);
  const image = loadVmlinux(ElfFile.parse(bootImage(), 'boot'), names);
  const tables = readPatchTables(image);
  const env = bootSetup(image, [], { platform: 'bare-metal', cpu: 'qemu64', cmdline: 'mitigations=off' }).env;
  return { image, tables, result: bootTextWrites(image, tables, env) };
}

const bytesAt = (r: ReturnType<typeof boot>, off: number, len: number): string => hexBytes(r.result.text.read(n(T) + off, len)!);

test('jump entries: bit 0 is the branch, bit 1 objtool\'s NOP mark (an unlikely branch on a false key stays a NOP)', () => {
  const r = boot();
  assert.deepEqual(r.tables.jumpTable!.map((e) => [e.branch, e.objtoolNop]), [[false, true], [false, true], [true, false]]);
  assert.equal(bytesAt(r, 0x00, 2), '66 90');
  assert.equal(bytesAt(r, 0x08, 5), 'e9 23 00 00 00'); // enabled key: jmp T+0x30
  assert.equal(bytesAt(r, 0x10, 2), 'eb 06'); // likely branch on a false key: jump
});

test('static_call_init: a site calls its key\'s function; a NULL tail call becomes ret + int3 padding', () => {
  const r = boot();
  assert.deepEqual(r.result.staticCalls, ['call', 'ret']);
  assert.equal(bytesAt(r, 0x40, 5), 'e8 bb 00 00 00'); // call foo (T+0x100)
  assert.equal(bytesAt(r, 0x50, 5), 'c3 cc cc cc cc');
});

test('ftrace_init: the __fentry__ call becomes the 5-byte NOP', () => {
  const r = boot();
  assert.deepEqual(r.result.ftrace, ['nop']);
  assert.equal(bytesAt(r, 0x60, 5), '0f 1f 44 00 00');
});

test('compareText: a key flipped later is named, a foreign byte is unexplained, the rest identical', () => {
  const r = boot();
  const s = r.image.section('.text')!;
  const running = r.result.text.read(s.addr, s.size)!.slice();
  running.set([0x66, 0x90], 0x10); // likely branch flipped to NOP: key_off enabled at run time
  running[0x120] = 0x90; // nobody writes there
  const c = compareText(r.result, running, s.addr);
  assert.equal(c.byDifference['key-flipped'], 2);
  assert.equal(c.byDifference.unexplained, 1);
  assert.deepEqual(c.runs.map((x) => [x.mechanism, x.difference, x.name]), [['jump_table', 'key-flipped', 'key_off'], ['none', 'unexplained', 'foo+0x20']]);
  assert.equal(c.identical, s.size - 3);
});

test('6.12 add_nop: up to 11 bytes one NOP, longer a JMP.d8 over INT3s', () => {
  const b = new Uint8Array(14);
  addNop(b, 0, 11);
  assert.equal(hexBytes(b.subarray(0, 11)), '66 66 2e 0f 1f 84 00 00 00 00 00');
  addNop(b, 0, 14);
  assert.equal(hexBytes(b), 'eb 0c cc cc cc cc cc cc cc cc cc cc cc cc');
});

test('6.12 optimize_nops: a run of NOPs and NOPLs becomes one NOP; the last instruction is kept', () => {
  const b = Uint8Array.of(0x90, 0x90, 0x0f, 0x1f, 0x00, 0x90, 0xc3);
  optimizeNops612(b, 7, 0x1000);
  assert.equal(hexBytes(b), '66 0f 1f 44 00 00 c3');
});

test('6.12 apply_relocation: a CALL leaving the replacement is re-aimed, a JMP.d32 that fits becomes JMP.d8 + INT3', () => {
  // At the replacement (0x9000): call 0x9100; jmp 0x9105 (just after the original 10-byte site at 0x9100).
  const buf = Uint8Array.of(0xe8, 0xfb, 0x00, 0x00, 0x00, 0xe9, 0xfb, 0x00, 0x00, 0x00);
  assert.ok(applyRelocation(buf, 0x8f00, 10, 0x9000, 10));
  // From the site at 0x9000 - 0x100 = 0x8f00: call 0x9100 is e8 fb 01 00 00; jmp 0x9105 is 0x200 away (no rel8).
  assert.equal(hexBytes(buf), 'e8 fb 01 00 00 e9 fb 01 00 00');
  const near = Uint8Array.of(0xe9, 0x10, 0x00, 0x00, 0x00);
  assert.ok(applyRelocation(near, 0x9000 + 0x08, 5, 0x9000, 5)); // target 0x9015: 8 bytes closer from the site
  assert.equal(hexBytes(near), 'eb 0b cc cc cc');
});

test('runtime constants: USER_PTR_MAX is TASK_SIZE_MAX, the dentry hash is a run-time value', () => {
  assert.equal(runtimeConstValue('USER_PTR_MAX', false), 0x7ffffffff000n);
  assert.equal(runtimeConstValue('USER_PTR_MAX', true), 0xfffffffffff000n);
  assert.equal(runtimeConstValue('d_hash_shift', false), undefined);
});

test('uniprocessor boots (nosmp, maxcpus=0|1) turn LOCK prefixes into DS prefixes inside [_text, _etext) only', () => {
  assert.equal(uniprocessorBoot(parseCommandLine('nosmp').options), true);
  assert.equal(uniprocessorBoot(parseCommandLine('maxcpus=1').options), true);
  assert.equal(uniprocessorBoot(parseCommandLine('maxcpus=2 quiet').options), false);
  const r = boot();
  const text = r.result.text;
  text.write(n(T) + 0x70, Uint8Array.of(0xf0, 0x0f, 0xb1, 0x17)); // lock cmpxchg %edx,(%rdi)
  const out = applySmpUnlock([n(T) + 0x70, n(T) + 0x71, undefined, n(T) + 0x400], text, n(T), n(T) + 0x200);
  assert.deepEqual(out, ['unlocked', 'not-lock', 'outside-text', 'outside-text']);
  assert.equal(hexBytes(text.read(n(T) + 0x70, 4)!), '3e 0f b1 17');
});

test('fuzz: 6.12 apply_alternatives over random entries (DIRECT_CALL, nested, out of range) never throws (fast-check, seed 10)', () => {
  const r = boot();
  const env = bootSetup(r.image, [], { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '' }).env;
  const base = n(T);
  const entry = fc.record({
    address: fc.integer({ min: base - 16, max: base + 0x210 }),
    replacement: fc.integer({ min: base - 16, max: base + 0x210 }),
    feature: fc.integer({ min: -5, max: 4000 }),
    inverted: fc.boolean(),
    directCall: fc.boolean(),
    instrlen: fc.integer({ min: 0, max: 300 }),
    replacementlen: fc.integer({ min: 0, max: 40 }),
  });
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 12 }), (entries) => {
      const text = new PatchedText(r.image);
      const out = applyAlternatives612(entries, text, env);
      assert.equal(out.length, entries.length);
    }),
    { seed: 10, numRuns: 400 },
  );
});
