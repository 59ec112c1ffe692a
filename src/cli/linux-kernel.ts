/**
 * The kernel a `guest.kernel: debian-6.1` scenario runs: the Debian 6.1 cloud kernel that
 * scripts/get-kernel.sh keeps in ${PVPATCH_CACHE:-<package>/.cache}/kernel/ (current-6.1-cloud
 * names the release). On first use it is fetched with a progress line on stderr, unless
 * PVPATCH_NO_DOWNLOAD=1; when it cannot be had, one error names the command that fetches it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { packageRoot } from './package-root.ts';
import { LinuxGuestError } from '../linux/errors.ts';

/** The kernels a scenario may name, and the get-kernel.sh series of each. */
export const LINUX_KERNELS = { 'debian-6.1': { series: '6.1', flavour: 'cloud' } } as const;
export type LinuxKernelName = keyof typeof LINUX_KERNELS;

const FETCH = 'scripts/get-kernel.sh --series 6.1 --symbols';

function cachedDir(root: string): string | undefined {
  const pointers = [join(root, 'kernel', 'current-6.1-cloud'), join(root, 'kernel', 'current')];
  const p = pointers.find((x) => existsSync(x));
  if (p === undefined) return undefined;
  const dir = join(root, 'kernel', readFileSync(p, 'utf8').trim());
  return existsSync(join(dir, 'READY')) && existsSync(join(dir, 'vmlinux')) && existsSync(join(dir, 'System.map')) ? dir : undefined;
}

/** The directory holding the kernel's vmlinux, System.map and config, fetching it if need be. */
export function linuxKernelDir(name: LinuxKernelName, progress: (line: string) => void): string {
  const pkg = packageRoot();
  const root = process.env.PVPATCH_CACHE ?? join(pkg, '.cache');
  const have = cachedDir(root);
  if (have !== undefined) return have;
  if (process.env.PVPATCH_NO_DOWNLOAD === '1') throw new LinuxGuestError(`${name}: the kernel and its System.map are not in ${join(root, 'kernel')} and PVPATCH_NO_DOWNLOAD=1 forbids fetching them (run ${FETCH})`);
  progress(`fetching the Debian 6.1 cloud kernel and its symbols (${FETCH}; about 330 MB, once) ...`);
  const r = spawnSync('bash', [join(pkg, 'scripts', 'get-kernel.sh'), '--series', '6.1', '--symbols'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 1_800_000 });
  const got = cachedDir(root);
  if (got !== undefined) return got;
  const why = (r.stderr ?? '').trim().split('\n').pop() ?? `exit ${r.status}`;
  throw new LinuxGuestError(`${name}: could not fetch the kernel (${why}); run ${FETCH}`);
}
