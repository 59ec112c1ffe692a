/**
 * The real-kernel guest's tests share one loaded Debian 6.1 kernel and one boot per platform
 * (loading reads 50 MB and 190,000 symbols; a boot reproduces every boot-time text write). The
 * kernel comes from the real-kernel tier's cache (test/elf/kernel-fixture.ts): fetched once when
 * missing, else the tests skip with the reason.
 */
import { realKernel } from '../elf/kernel-fixture.ts';
import { bootLinux, loadLinuxKernel, type LinuxBoot, type LinuxBootOptions, type LinuxKernel } from '../../src/linux/kernel.ts';

let kernel: LinuxKernel | undefined;
const boots = new Map<string, LinuxBoot>();

/** The kernel, or the reason there is none. */
export function linuxKernel(): { kernel?: LinuxKernel; reason?: string } {
  const { kernel: cached, reason } = realKernel();
  if (cached === undefined) return { reason };
  if (cached.systemMap === undefined) return { reason: `${cached.release} has no System.map beside it (scripts/get-kernel.sh --symbols)` };
  kernel ??= loadLinuxKernel(cached.dir);
  return { kernel };
}

export function boot(k: LinuxKernel, o: LinuxBootOptions): LinuxBoot {
  const key = JSON.stringify(o);
  let b = boots.get(key);
  if (b === undefined) boots.set(key, (b = bootLinux(k, o)));
  return b;
}
