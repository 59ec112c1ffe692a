/**
 * `npm run bench -- inspect [--json]`: `pvpatch inspect <Debian 6.1 vmlinux> --json` with full
 * boot-patching reproduction (bare metal, Skylake-Client), run as a separate process the way a
 * user runs it: wall-clock seconds from spawn to exit (node + tsx start-up included), the
 * process's peak RSS, and the number of sites it printed. Budget: < 5 s, < 1 GB.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { childArgs } from './_child.ts';
import { packageRoot } from '../src/cli/package-root.ts';

export const describe = 'inspect of the Debian 6.1 vmlinux with boot-patching reproduction: seconds, peak RSS, sites';

const repo = packageRoot();

function cachedVmlinux(): string | undefined {
  const root = join(process.env.PVPATCH_CACHE ?? join(repo, '.cache'), 'kernel');
  const current = join(root, 'current');
  if (!existsSync(current)) return undefined;
  const path = join(root, readFileSync(current, 'utf8').trim(), 'vmlinux');
  return existsSync(path) ? path : undefined;
}

export async function run(_opts: { json: boolean; quick: boolean }): Promise<Record<string, unknown>> {
  const vmlinux = cachedVmlinux();
  if (vmlinux === undefined) return { skipped: 'no cached Debian kernel (run scripts/get-kernel.sh)' };
  const t0 = performance.now();
  const r = spawnSync(process.execPath, childArgs('_inspect-child', 'inspect', vmlinux, '--json'), {
    cwd: repo,
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) return { skipped: `inspect failed: ${r.stderr.trim().split('\n')[0] ?? r.status}` };
  const rss = JSON.parse(r.stderr.trim().split('\n').pop()!) as { maxRssKiB: number };
  const sites = (JSON.parse(r.stdout) as { sites: unknown[] }).sites.length;
  return { seconds: Number(seconds.toFixed(2)), rss_mb: Math.round(rss.maxRssKiB / 1024), sites };
}

export function table(result: Record<string, unknown>): string {
  if ('skipped' in result) return `  inspect: skipped (${String(result.skipped)})`;
  const ok = (v: boolean): string => (v ? 'within budget' : 'OVER BUDGET');
  return [
    `  inspect vmlinux --json   ${String(result.seconds)} s   (${ok(Number(result.seconds) < 5)}: < 5 s)`,
    `  peak RSS                 ${String(result.rss_mb)} MB  (${ok(Number(result.rss_mb) < 1024)}: < 1 GB)`,
    `  sites printed            ${Number(result.sites).toLocaleString('en-US')}`,
  ].join('\n');
}
