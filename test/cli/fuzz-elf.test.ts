// Fuzz: ELF images. Each case takes test/elf's tiny vmlinux or tiny module and corrupts it: a
// section header field set to an extreme (offset, size, type, link, alignment: 0, 2^32, 2^53,
// 2^64-1, past the file, a multi-GiB .bss), a header field (shoff, shnum, shstrndx), a flipped
// byte or a cut, then runs `pvpatch inspect` on it. Whatever the damage, the answer is a report
// or one line naming what is wrong (fuzz-support.ts), never an internal error or gigabytes.
import { test, after } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { runCli } from '../../src/cli/main.ts';
import { tinyKernel, SITE_PV } from '../elf/tiny-kernel.ts';
import { tinyModule } from '../elf/tiny-module.ts';
import { FUZZ_RUNS, FUZZ_SEED, assertClean, scratch } from './fuzz-support.ts';

const work = scratch('elf');
after(() => work.clean());
const images = [tinyKernel(), tinyModule()];
const vmlinux = join(work.dir, 'vmlinux');
writeFileSync(vmlinux, images[0]!);

/** Offsets of the section header fields (System V gABI, Elf64_Shdr) and their widths. */
const FIELDS = [[0, 4], [4, 4], [8, 8], [16, 8], [24, 8], [32, 8], [40, 4], [44, 4], [48, 8], [56, 8]] as const;
const extreme = fc.constantFrom(0n, 1n, 7n, 8n, 64n, 0x7fffffffn, 0xffffffffn, 0x40000000n, 0x100000000n, 0x10000000000n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n);

const damage = fc.oneof(
  fc.record({ kind: fc.constant('shdr' as const), section: fc.nat(), field: fc.nat(FIELDS.length - 1), value: fc.oneof(extreme, fc.bigInt({ min: 0n, max: 4096n })) }),
  fc.record({ kind: fc.constant('ehdr' as const), field: fc.constantFrom([0x28, 8], [0x3a, 2], [0x3c, 2], [0x3e, 2], [0x10, 2], [0x12, 2], [4, 1], [5, 1]), value: extreme }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('bss' as const), section: fc.nat(), value: extreme }),
);

function write(v: DataView, at: number, width: number, value: bigint): void {
  if (at + width > v.byteLength) return;
  if (width === 8) v.setBigUint64(at, BigInt.asUintN(64, value), true);
  else if (width === 4) v.setUint32(at, Number(BigInt.asUintN(32, value)), true);
  else if (width === 2) v.setUint16(at, Number(BigInt.asUintN(16, value)), true);
  else v.setUint8(at, Number(BigInt.asUintN(8, value)));
}

function corrupt(image: Uint8Array, ds: { kind: string; [k: string]: unknown }[]): Uint8Array {
  let out = image.slice();
  for (const d of ds) {
    const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const shoff = Number(new DataView(image.buffer).getBigUint64(0x28, true));
    const shnum = new DataView(image.buffer).getUint16(0x3c, true);
    if (d.kind === 'shdr') {
      const [off, width] = FIELDS[d.field as number]!;
      write(v, shoff + 64 * ((d.section as number) % shnum) + off, width, d.value as bigint);
    } else if (d.kind === 'ehdr') {
      const [at, width] = d.field as [number, number];
      write(v, at, width, d.value as bigint);
    } else if (d.kind === 'bss') {
      // An allocated SHT_NOBITS section (.bss) of the given size: loading zero-fills it.
      const h = shoff + 64 * ((d.section as number) % shnum);
      write(v, h + 4, 4, 8n);
      write(v, h + 8, 8, 2n);
      write(v, h + 32, 8, d.value as bigint);
    } else if (d.kind === 'flip') {
      const at = (d.at as number) % out.length;
      out[at] = out[at]! ^ (d.xor as number);
    } else out = out.slice(0, (d.at as number) % (out.length + 1));
  }
  return out;
}

const flags = fc.constantFrom<string[]>([], [], ['--json'], ['--platform', 'kvm'], ['--analyze'], ['--diff'], ['--site', `0x${BigInt.asUintN(64, BigInt(SITE_PV)).toString(16)}`], ['--platform', 'xen-pv', '--json']);

test(`pvpatch inspect on ${FUZZ_RUNS} corrupted ELF images exits 0, 1 or 2 with one clean line on error`, async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.nat(1), fc.array(damage, { minLength: 1, maxLength: 3 }), flags, async (which, ds, extra) => {
      const file = join(work.dir, `image-${n++}${which === 1 ? '.ko' : ''}`);
      writeFileSync(file, corrupt(images[which]!, ds as { kind: string }[]));
      const args = ['inspect', file, ...(which === 1 ? ['--vmlinux', vmlinux] : []), ...extra];
      assertClean(await runCli(args), args);
    }),
    { seed: FUZZ_SEED, numRuns: FUZZ_RUNS, endOnFailure: true },
  );
});
