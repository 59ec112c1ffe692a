/**
 * ELF64 reading: a well-formed tiny image reads back; every kind of malformed input gives one
 * ElfError naming the problem; fuzzed files (fast-check, fixed seed) never crash the reader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ElfFile } from '../../src/elf/elf64.ts';
import { ElfError, PatchTableError, BzImageError, InspectError } from '../../src/elf/errors.ts';
import { alternativeInstructions, bootTextWrites } from '../../src/elf/boot-patch.ts';
import { compareText } from '../../src/elf/compare.ts';
import { bootSetup } from '../../src/elf/platforms.ts';
import { loadVmlinux, MapSymbols } from '../../src/elf/image.ts';
import { loadModule } from '../../src/elf/module.ts';
import { readPatchTables } from '../../src/elf/tables.ts';
import { extractVmlinux } from '../../src/elf/bzimage.ts';
import { tinyKernel, SITE_PV, SITE_RET, SITE_RETPOLINE } from './tiny-kernel.ts';
import { tinyModule } from './tiny-module.ts';
import { BOOT_NAMES, bootImage } from './boot-kernel.ts';

function expectElfError(bytes: Uint8Array, problem: RegExp): void {
  assert.throws(() => ElfFile.parse(bytes, 'x.elf'), (e: unknown) => e instanceof ElfError && e.userFacing && problem.test(e.message));
}

test('a tiny vmlinux reads back its sections, exports and one site per table', () => {
  const image = loadVmlinux(ElfFile.parse(tinyKernel(), 'tiny'));
  assert.equal(image.section('.text')?.addr, SITE_PV);
  assert.equal(image.symbols.addressOf('pv_ops'), -0x7e000000);
  const t = readPatchTables(image);
  assert.deepEqual(t.parainstructions, [{ address: SITE_PV, type: 80, len: 6 }]);
  assert.equal(t.altinstructions.length, 1);
  assert.equal(t.altinstructions[0]!.address, SITE_PV);
  assert.equal(t.altinstructions[0]!.feature, 8 * 32 + 20);
  assert.equal(t.altinstructions[0]!.inverted, true);
  assert.deepEqual(t.retpolineSites, [SITE_RETPOLINE]);
  assert.deepEqual(t.returnSites, [SITE_RET]);
});

test('a truncated file is one clear error', () => {
  const good = tinyKernel();
  expectElfError(good.subarray(0, 40), /shorter than an ELF64 header/);
  expectElfError(good.subarray(0, good.length - 10), /run past the end of the file|outside/);
});

test('wrong magic, class, byte order and machine are named', () => {
  const bad = (at: number, value: number): Uint8Array => {
    const b = tinyKernel();
    b[at] = value;
    return b;
  };
  expectElfError(bad(0, 0), /no ELF magic/);
  expectElfError(bad(4, 1), /not ELFCLASS64/);
  expectElfError(bad(5, 2), /not little-endian/);
  expectElfError(bad(18, 3), /not x86-64/);
});

test('a section pointing outside the file is rejected', () => {
  const b = tinyKernel();
  const v = new DataView(b.buffer);
  const shoff = Number(v.getBigUint64(0x28, true));
  v.setBigUint64(shoff + 64 + 24, 0xffffffffn, true); // section 1's sh_offset
  expectElfError(b, /section 1 .* lies outside/);
});

test('a table whose size is not a whole number of entries is a PatchTableError', () => {
  const b = tinyKernel();
  const elf = ElfFile.parse(b, 'tiny');
  const s = elf.section('.altinstructions')!;
  const v = new DataView(b.buffer);
  const shoff = Number(v.getBigUint64(0x28, true));
  v.setBigUint64(shoff + 64 * s.index + 32, 11n, true);
  assert.throws(() => readPatchTables(loadVmlinux(ElfFile.parse(b, 'tiny'))), PatchTableError);
});

test('something that is neither ELF nor bzImage says so', () => {
  assert.throws(() => extractVmlinux(new TextEncoder().encode('root:x:0:0:root:/root:/bin/bash\n'.repeat(40)), 'passwd'), BzImageError);
});

/** Everything the reader (and the boot patcher after it) may throw on bad input is a typed, user-facing error. */
function readsOrFailsCleanly(bytes: Uint8Array, names?: readonly (readonly [string, number])[]): void {
  try {
    const map = names === undefined ? undefined : new MapSymbols();
    for (const [name, a] of names ?? []) map!.add(name, a);
    const elf = ElfFile.parse(bytes, 'fuzz');
    const image = elf.type === 1 ? loadModule(elf) : loadVmlinux(elf, map);
    const tables = readPatchTables(image);
    // ...and the boot patcher over whatever the tables say.
    const env = bootSetup(image, tables.parainstructions, { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '' }).env;
    if (image.kind === 'module') alternativeInstructions(image, tables, env);
    else {
      // Every boot write, then the comparison against the image itself as the "running" text.
      const boot = bootTextWrites(image, tables, env);
      const s = image.section('.text');
      if (s !== undefined) compareText(boot, s.bytes, s.addr);
    }
  } catch (e) {
    if (!(e instanceof ElfError || e instanceof PatchTableError || e instanceof InspectError)) throw e;
  }
}

test('fuzz: mutated tiny images never crash the reader (fast-check, seed 5)', () => {
  const base = tinyKernel();
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }), fc.nat(base.length), (edits, cut) => {
      const b = base.slice(0, Math.max(cut, base.length - 64 * 12));
      for (const [at, value] of edits) if (at < b.length) b[at] = value;
      readsOrFailsCleanly(b);
    }),
    { seed: 5, numRuns: 1500 },
  );
});

test('fuzz: header fields set to extreme values never crash the reader (fast-check, seed 6)', () => {
  const base = tinyKernel();
  const fields = [0x28, 0x3a, 0x3c, 0x3e];
  fc.assert(
    fc.property(fc.constantFrom(...fields), fc.constantFrom(0, 1, 0xff, 0xffff, 0x7fffffff, 0xffffffff), (field, value) => {
      const b = base.slice();
      const v = new DataView(b.buffer);
      if (field === 0x28) v.setBigUint64(field, BigInt(value) * 0x10000n, true);
      else v.setUint16(field, value & 0xffff, true);
      readsOrFailsCleanly(b);
    }),
    { seed: 6, numRuns: 200 },
  );
});

test('fuzz: random bytes behind an ELF header never crash the reader (fast-check, seed 7)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), (tail) => {
      const b = new Uint8Array(64 + tail.length);
      b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
      b.set(tail, 7);
      readsOrFailsCleanly(b);
    }),
    { seed: 7, numRuns: 1000 },
  );
});

test('fuzz: mutated boot images (jump labels, static calls, ftrace) never crash boot reproduction or compare (fast-check, seed 9)', () => {
  const base = bootImage();
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 10 }), (edits) => {
      const b = base.slice();
      for (const [at, value] of edits) b[at] = value;
      readsOrFailsCleanly(b, BOOT_NAMES);
    }),
    { seed: 9, numRuns: 1500 },
  );
});

test('fuzz: mutated tiny modules never crash the relocating loader (fast-check, seed 8)', () => {
  const base = tinyModule();
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
      const b = base.slice();
      for (const [at, value] of edits) b[at] = value;
      readsOrFailsCleanly(b);
    }),
    { seed: 8, numRuns: 1500 },
  );
});
