/**
 * The real-kernel test tier's kernel: the Debian 6.1 cloud kernel cached by scripts/get-kernel.sh
 * under ${PVPATCH_CACHE:-.cache}/kernel/. When it is not cached yet, the fixture runs the script
 * once (it needs apt-get and the network); when that fails, tests skip with the reason.
 * PVPATCH_NO_DOWNLOAD=1 forbids the download.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

export interface CachedKernel {
  readonly release: string;
  readonly dir: string;
  readonly vmlinux: string;
  readonly vmlinuz: string;
  readonly modules: string;
  readonly systemMap: string | undefined;
}

const cacheRoot = (): string => process.env.PVPATCH_CACHE ?? join(process.cwd(), '.cache');

function cached(): CachedKernel | undefined {
  const root = join(cacheRoot(), 'kernel');
  const current = join(root, 'current');
  if (!existsSync(current)) return undefined;
  const release = readFileSync(current, 'utf8').trim();
  const dir = join(root, release);
  if (!existsSync(join(dir, 'READY'))) return undefined;
  const map = join(dir, 'System.map');
  return { release, dir, vmlinux: join(dir, 'vmlinux'), vmlinuz: join(dir, 'vmlinuz'), modules: join(dir, 'modules'), systemMap: existsSync(map) ? map : undefined };
}

let attempt: { kernel?: CachedKernel; reason?: string } | undefined;

/** The cached kernel, fetching it once if possible; otherwise a skip reason. */
export function realKernel(): { kernel?: CachedKernel; reason?: string } {
  if (attempt !== undefined) return attempt;
  const k = cached();
  if (k !== undefined) return (attempt = { kernel: k });
  if (process.env.PVPATCH_NO_DOWNLOAD === '1') return (attempt = { reason: 'no cached kernel and PVPATCH_NO_DOWNLOAD=1 (run scripts/get-kernel.sh)' });
  const r = spawnSync('bash', ['scripts/get-kernel.sh'], { encoding: 'utf8', timeout: 600_000 });
  const after = cached();
  if (after !== undefined) return (attempt = { kernel: after });
  const why = (r.stderr ?? '').trim().split('\n').pop() ?? `exit ${r.status}`;
  return (attempt = { reason: `no Debian kernel available: scripts/get-kernel.sh failed (${why})` });
}
