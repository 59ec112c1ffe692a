/**
 * A real Debian kernel as the real-kernel guest uses it: the vmlinux (names from the System.map
 * beside it), its patch-site tables, its .config, and .data..percpu, the per-CPU template that
 * setup_per_cpu_areas() copies for every CPU. Loaded once; every boot (a platform, a command line)
 * reproduces boot patching over it without reading the image again.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootTextWrites, type BootPatchResult } from '../elf/boot-patch.ts';
import { parseKernelConfig, type KernelConfig } from '../elf/boot-keys.ts';
import type { KernelImage } from '../elf/image.ts';
import { loadKernelFile } from '../elf/inspect.ts';
import { bootSetup, type BootSetup, type Platform } from '../elf/platforms.ts';
import { readPatchTables, type PatchTables } from '../elf/tables.ts';
import { LinuxGuestError } from './errors.ts';

export interface LinuxKernel {
  readonly release: string;
  readonly dir: string;
  readonly image: KernelImage;
  readonly tables: PatchTables;
  readonly config: KernelConfig | undefined;
  /** .data..percpu as linked (at address 0: per-CPU symbols are offsets into a CPU's area). */
  readonly percpu: Uint8Array;
}

/** Load the kernel kept in `dir` (vmlinux, System.map, config, as scripts/get-kernel.sh --symbols leaves them). */
export function loadLinuxKernel(dir: string): LinuxKernel {
  const vmlinux = join(dir, 'vmlinux');
  const map = join(dir, 'System.map');
  if (!existsSync(vmlinux)) throw new LinuxGuestError(`no vmlinux in ${dir} (scripts/get-kernel.sh --symbols fetches it)`);
  if (!existsSync(map)) throw new LinuxGuestError(`no System.map in ${dir}: the real-kernel guest needs the static symbols (kvm_wait, pv_lock_hash); run scripts/get-kernel.sh --symbols`);
  const image = loadKernelFile(vmlinux, map);
  const tables = readPatchTables(image);
  const v = tables.layouts.version;
  if (!(v.major === 6 && v.minor === 1)) throw new LinuxGuestError(`the real-kernel guest is built on Linux 6.1's layouts; ${dir} holds ${v.release}`);
  const pc = image.elf.sections.find((s) => s.name === '.data..percpu');
  if (pc === undefined) throw new LinuxGuestError(`${vmlinux} has no .data..percpu section (not an SMP x86-64 kernel)`);
  const configPath = join(dir, 'config');
  const config = existsSync(configPath) ? parseKernelConfig(readFileSync(configPath, 'latin1')) : undefined;
  return { release: v.release, dir, image, tables, config, percpu: image.elf.data(pc) };
}

/** What the guest's boot decides: the platform, the host's PV_UNHALT, the command line. */
export interface LinuxBootOptions {
  readonly platform: Extract<Platform, 'bare-metal' | 'kvm' | 'kvm-realtime'>;
  /** KVM_FEATURE_PV_UNHALT (default true); without it kvm_spinlock_init keeps virt_spin_lock. */
  readonly pvUnhalt?: boolean;
  /** `nopvspin`, `mitigations=off`, ... */
  readonly cmdline?: string;
  /** QEMU CPU model (default Skylake-Client). */
  readonly cpu?: string;
}

export interface LinuxBoot {
  readonly kernel: LinuxKernel;
  readonly options: LinuxBootOptions;
  readonly setup: BootSetup;
  /** The text as every boot-time write leaves it (jump labels, static calls, ftrace, alternative_instructions). */
  readonly result: BootPatchResult;
}

/** Reproduce the boot's text writes for `o`. */
export function bootLinux(kernel: LinuxKernel, o: LinuxBootOptions): LinuxBoot {
  const setup = bootSetup(kernel.image, kernel.tables.parainstructions, {
    platform: o.platform,
    cpu: o.cpu ?? 'Skylake-Client',
    cmdline: o.cmdline ?? '',
    kvmPvUnhalt: o.pvUnhalt ?? true,
    ...(kernel.config === undefined ? {} : { config: kernel.config }),
  });
  return { kernel, options: o, setup, result: bootTextWrites(kernel.image, kernel.tables, setup.env) };
}

/** A symbol's address, or a LinuxGuestError naming it. */
export function symbolOf(kernel: LinuxKernel, name: string): number {
  const a = kernel.image.symbols.addressOf(name);
  if (a === undefined) throw new LinuxGuestError(`${kernel.release}: the System.map names no '${name}'`);
  return a;
}
