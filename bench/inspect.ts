/**
 * `npm run bench -- inspect [--json]`: `pvpatch inspect <vmlinux> --json` with full boot-text
 * reproduction (bare metal, Skylake-Client, every mechanism: jump labels, static calls, ftrace,
 * alternative_instructions, ENDBR sealing, runtime constants; the System.map beside the image
 * is passed so the symbol-bounded tables are found) for every Debian kernel the cache holds
 * (5.10, 6.1, 6.12), each run as a separate process the way a user runs it: wall-clock seconds from
 * spawn to exit (node + tsx start-up included), the process's peak RSS, and the sites printed.
 * Budget: < 5 s, < 1 GB each.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { childArgs } from './_child.ts';
import { packageRoot } from '../src/cli/package-root.ts';

export const describe = 'inspect of every cached Debian vmlinux with full boot-text reproduction: seconds, peak RSS, sites';

const repo = packageRoot();

/** Every release a `current*` pointer names, once. */
function cachedKernels(): { release: string; vmlinux: string; map: string | undefined }[] {
  const root = join(process.env.PVPATCH_CACHE ?? join(repo, '.cache'), 'kernel');
  if (!existsSync(root)) return [];
  const releases = new Set(readdirSync(root).filter((f) => f.startsWith('current')).map((f) => readFileSync(join(root, f), 'utf8').trim()));
  return [...releases].sort().flatMap((release) => {
    const vmlinux = join(root, release, 'vmlinux');
    const map = join(root, release, 'System.map');
    return existsSync(vmlinux) ? [{ release, vmlinux, map: existsSync(map) ? map : undefined }] : [];
  });
}

export async function run(_opts: { json: boolean; quick: boolean }): Promise<Record<string, unknown>> {
  const kernels = cachedKernels();
  if (kernels.length === 0) return { skipped: 'no cached Debian kernel (run scripts/get-kernel.sh --series 6.1|6.12|5.10)' };
  const out: Record<string, unknown> = {};
  for (const k of kernels) {
    const t0 = performance.now();
    const args = childArgs('_inspect-child', 'inspect', k.vmlinux, '--json', ...(k.map === undefined ? [] : ['--symbols', k.map]));
    const r = spawnSync(process.execPath, args, { cwd: repo, encoding: 'utf8', maxBuffer: 1 << 30 });
    const seconds = (performance.now() - t0) / 1000;
    if (r.status !== 0) {
      out[k.release] = { skipped: `inspect failed: ${r.stderr.trim().split('\n')[0] ?? r.status}` };
      continue;
    }
    const rss = JSON.parse(r.stderr.trim().split('\n').pop()!) as { maxRssKiB: number; cpuMicros: number };
    const sites = (JSON.parse(r.stdout) as { sites: unknown[] }).sites.length;
    out[k.release] = { seconds: Number(seconds.toFixed(2)), cpu_seconds: Number((rss.cpuMicros / 1e6).toFixed(2)), rss_mb: Math.round(rss.maxRssKiB / 1024), sites, symbols: k.map !== undefined };
  }
  return out;
}

export function table(result: Record<string, unknown>): string {
  if ('skipped' in result) return `  inspect: skipped (${String(result.skipped)})`;
  const ok = (v: boolean): string => (v ? 'within budget' : 'OVER BUDGET');
  return Object.entries(result).map(([release, v]) => {
    const r = v as Record<string, unknown>;
    if ('skipped' in r) return `  ${release}: skipped (${String(r.skipped)})`;
    return [
      `  ${release}${r.symbols === true ? '' : ' (no System.map: symbol-bounded tables not reproduced)'}`,
      `    inspect vmlinux --json   ${String(r.seconds)} s   (${ok(Number(r.seconds) < 5)}: < 5 s)`,
      `    CPU time (user + sys)    ${String(r.cpu_seconds)} s   (what the wall clock is on an idle machine, plus waiting for I/O)`,
      `    peak RSS                 ${String(r.rss_mb)} MB  (${ok(Number(r.rss_mb) < 1024)}: < 1 GB)`,
      `    sites printed            ${Number(r.sites).toLocaleString('en-US')}`,
    ].join('\n');
  }).join('\n');
}
