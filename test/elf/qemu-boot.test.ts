/**
 * Against a real boot: the Debian kernel booted under QEMU TCG (`-cpu <model>`, nokaslr, stopped
 * at the no-root panic, which comes before free_initmem) and its memory from 16 MiB saved with
 * QMP pmemsave; the bytes pvpatch reproduces for bare metal must equal what the kernel wrote, at
 * every site of every table. Dumps are cached per kernel release and CPU model. Skips with the
 * reason when the kernel or QEMU cannot be had. PVPATCH_QEMU_BOOTS picks the boots, `;`-separated
 * `<cpu> [cmdline]` (default: the four presets, and Skylake-Client with mitigations=off and with
 * spectre_v2=retpoline,lfence); EPYC needs the System.map of get-kernel.sh --symbols, because its
 * SRSO return thunk is not exported.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { inspect } from '../../src/elf/inspect.ts';
import { bootAndDump, DUMP_BASE_PHYS } from '../../scripts/qemu-boot-dump.ts';
import { realKernel } from './kernel-fixture.ts';

/** __START_KERNEL_map: virtual 0xffffffff80000000 is physical 0 (no KASLR). */
const START_KERNEL_MAP = -0x80000000;

function qemuAvailable(): string | undefined {
  const have = (): boolean => spawnSync('qemu-system-x86_64', ['--version']).status === 0;
  if (have()) return undefined;
  if (process.env.PVPATCH_NO_DOWNLOAD !== '1') spawnSync('bash', ['scripts/setup-qemu.sh'], { timeout: 600_000 });
  if (have()) return undefined;
  return process.env.PVPATCH_NO_DOWNLOAD === '1' ? 'qemu-system-x86_64 not installed and PVPATCH_NO_DOWNLOAD=1 (run scripts/setup-qemu.sh)' : 'qemu-system-x86_64 not installed and scripts/setup-qemu.sh could not install it';
}

const DEFAULT_BOOTS = 'Skylake-Client;Haswell;EPYC;qemu64;Skylake-Client mitigations=off;Skylake-Client spectre_v2=retpoline,lfence';
const boots = (process.env.PVPATCH_QEMU_BOOTS ?? DEFAULT_BOOTS).split(';').map((b) => b.trim()).filter((b) => b !== '');

for (const boot of boots) {
  const [cpu, ...rest] = boot.split(/\s+/) as [string, ...string[]];
  const cmdline = rest.join(' ');
  test(`bare-metal boot patching equals a real TCG boot on -cpu ${cpu}${cmdline ? ` with ${cmdline}` : ''}, at every site`, async (t) => {
    const { kernel, reason } = realKernel();
    if (kernel === undefined) return t.skip(reason);
    const noQemu = qemuAvailable();
    if (noQemu !== undefined) return t.skip(noQemu);
    if (cpu === 'EPYC' && kernel.systemMap === undefined) return t.skip('EPYC selects srso_return_thunk, which a stripped vmlinux does not name (run scripts/get-kernel.sh --symbols)');

    const r = inspect(kernel.vmlinux, { platform: 'bare-metal', cpu, cmdline, symbols: kernel.systemMap });
    const end = Math.max(...r.sites.map((s) => s.address + s.length));
    const size = Math.ceil((end - START_KERNEL_MAP - DUMP_BASE_PHYS) / (1 << 20)) * (1 << 20);
    const dir = join(process.env.PVPATCH_CACHE ?? '.cache', 'qemu', kernel.release);
    mkdirSync(dir, { recursive: true });
    const dump = join(dir, `${cpu}${cmdline ? '-' + cmdline.replace(/[^A-Za-z0-9]+/g, '_') : ''}.bin`);
    if (!existsSync(dump)) await bootAndDump({ vmlinuz: kernel.vmlinuz, out: dump, cpu, size, cmdline });
    const mem = readFileSync(dump);

    const stats = new Map<string, { sites: number; equal: number; first?: string }>();
    for (const s of r.sites) {
      const off = s.address - START_KERNEL_MAP - DUMP_BASE_PHYS;
      const real = mem.subarray(off, off + s.length);
      const st = stats.get(s.table) ?? { sites: 0, equal: 0 };
      st.sites++;
      if (Buffer.compare(real, Buffer.from(s.patched!)) === 0) st.equal++;
      else st.first ??= `${s.address.toString(16)}: ours ${Buffer.from(s.patched!).toString('hex')} real ${real.toString('hex')}`;
      stats.set(s.table, st);
    }
    for (const [table, st] of stats) t.diagnostic(`${boot} ${table}: ${st.equal}/${st.sites} equal (${((100 * st.equal) / st.sites).toFixed(2)}%)`);
    for (const [table, st] of stats) assert.equal(st.equal, st.sites, `${table}: first difference ${st.first}`);
  });
}
