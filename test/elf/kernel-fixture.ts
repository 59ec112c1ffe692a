/**
 * The real-kernel test tier's kernels: Debian's cloud kernels cached by scripts/get-kernel.sh
 * under ${PVPATCH_CACHE:-.cache}/kernel/ (6.1 by default; `realKernel('6.12')`, `realKernel('5.10')`
 * for the others, each keeping its release in kernel/current-<series>-cloud). When one is not
 * cached yet, the fixture runs the script once (it needs apt-get and the network; 5.10 and 6.12
 * with --symbols, since their byte-level checks need System.map); when that fails, tests skip
 * with the reason. PVPATCH_NO_DOWNLOAD=1 forbids the download.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

export interface CachedKernel {
  readonly series: string;
  readonly release: string;
  readonly dir: string;
  readonly vmlinux: string;
  readonly vmlinuz: string;
  readonly modules: string;
  readonly systemMap: string | undefined;
}

export type Series = '5.10' | '6.1' | '6.12';
/** Debian's flavours: cloud (the default) and the generic amd64 one (whose -dbg is ~1 GB: never fetched by tests). */
export type Flavour = 'cloud' | 'generic';

const cacheRoot = (): string => process.env.PVPATCH_CACHE ?? join(process.cwd(), '.cache');

function cached(series: Series, flavour: Flavour): CachedKernel | undefined {
  const root = join(cacheRoot(), 'kernel');
  const pointers = [join(root, `current-${series}-${flavour}`), ...(series === '6.1' && flavour === 'cloud' ? [join(root, 'current')] : [])];
  const current = pointers.find((p) => existsSync(p));
  if (current === undefined) return undefined;
  const release = readFileSync(current, 'utf8').trim();
  const dir = join(root, release);
  if (!existsSync(join(dir, 'READY'))) return undefined;
  const map = join(dir, 'System.map');
  return { series, release, dir, vmlinux: join(dir, 'vmlinux'), vmlinuz: join(dir, 'vmlinuz'), modules: join(dir, 'modules'), systemMap: existsSync(map) ? map : undefined };
}

const attempts = new Map<string, { kernel?: CachedKernel; reason?: string }>();

/** The cached kernel of a series, fetching it once if possible; otherwise a skip reason. */
export function realKernel(series: Series = '6.1', flavour: Flavour = 'cloud'): { kernel?: CachedKernel; reason?: string } {
  const known = attempts.get(`${series}-${flavour}`);
  if (known !== undefined) return known;
  const remember = (a: { kernel?: CachedKernel; reason?: string }) => (attempts.set(`${series}-${flavour}`, a), a);
  const k = cached(series, flavour);
  if (k !== undefined) return remember({ kernel: k });
  if (flavour === 'generic') return remember({ reason: `no cached ${series} generic kernel (run scripts/get-kernel.sh --series ${series} --flavour generic --symbols; its -dbg is ~1 GB)` });
  if (process.env.PVPATCH_NO_DOWNLOAD === '1') return remember({ reason: `no cached ${series} kernel and PVPATCH_NO_DOWNLOAD=1 (run scripts/get-kernel.sh --series ${series})` });
  const args = ['scripts/get-kernel.sh', '--series', series, ...(series === '6.1' ? [] : ['--symbols'])];
  const r = spawnSync('bash', args, { encoding: 'utf8', timeout: 900_000 });
  const after = cached(series, flavour);
  if (after !== undefined) return remember({ kernel: after });
  const why = (r.stderr ?? '').trim().split('\n').pop() ?? `exit ${r.status}`;
  return remember({ reason: `no Debian ${series} kernel available: scripts/get-kernel.sh --series ${series} failed (${why})` });
}
