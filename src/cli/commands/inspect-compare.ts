/**
 * `pvpatch inspect VMLINUX --compare DUMP [--dump-base ADDR]` and `--emit-text FILE`: the reproduced
 * boot text against a running kernel's (a QMP pmemsave from physical 16 MiB, i.e. virtual
 * 0xffffffff81000000 with nokaslr, or raw bytes with their start address), and the reproduced
 * `.text` written out for other tools (to a temporary name, then renamed).
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hexAddress, hexBytes } from '../../x86/format.ts';
import { compareText, type TextComparison } from '../../elf/compare.ts';
import { InspectError } from '../../elf/errors.ts';
import type { InspectReport } from '../../elf/inspect.ts';

import { DEFAULT_DUMP_BASE } from './definitions.ts';

export function parseDumpBase(text: string): number {
  const t = text.trim().toLowerCase();
  if (!/^(0x)?[0-9a-f]{1,16}$/.test(t)) throw new InspectError(`--dump-base wants a hex virtual address like ${DEFAULT_DUMP_BASE}, not '${text}'`);
  return Number(BigInt.asIntN(64, BigInt(t.startsWith('0x') ? t : `0x${t}`)));
}

export function compareWithDump(r: InspectReport, dumpPath: string, base: number): TextComparison {
  if (r.boot === undefined || r.kind !== 'vmlinux') throw new InspectError('--compare needs a vmlinux whose boot patching is reproduced');
  let dump: Uint8Array;
  try {
    dump = readFileSync(dumpPath);
  } catch (err) {
    throw new InspectError(`cannot read ${dumpPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return compareText(r.boot.result, dump, base);
}

const pct = (a: number, b: number): string => (b === 0 ? '-' : `${((100 * a) / b).toFixed(3)}%`);
const n = (x: number): string => x.toLocaleString('en-US');

export function comparisonText(c: TextComparison): string {
  const out: string[] = [];
  out.push(`${c.section}: ${n(c.bytes)} bytes; boot changed ${n(c.bootChanged)}, reproduced ${n(c.reproduced)} (${pct(c.reproduced, c.bootChanged)}); identical ${n(c.identical)} (${pct(c.identical, c.bytes)})`);
  out.push(`differing bytes: key flipped at run time ${n(c.byDifference['key-flipped'])}, static call updated at run time ${n(c.byDifference['static-call-updated'])}, run-time value ${n(c.byDifference['run-time-value'])}, unexplained ${n(c.byDifference.unexplained)}`);
  for (const [k, v] of [...c.byMechanism].sort((a, b) => b[1] - a[1])) out.push(`  ${k.padEnd(40)} ${n(v).padStart(9)}`);
  const byName = new Map<string, number>();
  for (const r of c.runs) if (r.difference !== 'unexplained') byName.set(`${r.difference} ${r.name ?? '?'}`, (byName.get(`${r.difference} ${r.name ?? '?'}`) ?? 0) + r.length);
  out.push('by key (bytes):');
  for (const [k, v] of [...byName].sort((a, b) => b[1] - a[1])) out.push(`  ${k.padEnd(60)} ${n(v).padStart(7)}`);
  const unexplained = c.runs.filter((r) => r.difference === 'unexplained');
  if (unexplained.length > 0) {
    out.push('unexplained (address  mechanism  symbol  image -> reproduced | running):');
    for (const r of unexplained) out.push(`  ${hexAddress(r.address)}  ${r.mechanism}  ${r.name ?? '?'}  ${hexBytes(r.original)} -> ${hexBytes(r.reproduced)} | ${hexBytes(r.running)}`);
  }
  return out.join('\n');
}

export function comparisonJson(c: TextComparison) {
  return {
    section: c.section,
    bytes: c.bytes,
    bootChanged: c.bootChanged,
    reproduced: c.reproduced,
    identical: c.identical,
    byDifference: c.byDifference,
    byMechanism: Object.fromEntries(c.byMechanism),
    runs: c.runs.map((r) => ({
      address: hexAddress(r.address),
      length: r.length,
      mechanism: r.mechanism,
      difference: r.difference,
      name: r.name ?? null,
      original: hexBytes(r.original),
      reproduced: hexBytes(r.reproduced),
      running: hexBytes(r.running),
    })),
  };
}

/** The reproduced .text, written atomically: a failed write leaves no file behind. */
export function emitText(r: InspectReport, path: string): void {
  const s = r.image.section('.text');
  if (r.boot === undefined || s === undefined) throw new InspectError('--emit-text needs a vmlinux with a .text whose boot patching is reproduced');
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, r.boot.result.text.read(s.addr, s.size)!);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new InspectError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
