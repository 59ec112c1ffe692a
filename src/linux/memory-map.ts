/**
 * The real kernel in a machine's memory, as it stands once boot is done:
 * - every allocated section at its link address: text as boot patching left it (read-execute),
 *   `.rodata` and the other read-only sections read-only (mark_rodata_ro), `.data`/`.bss` and the
 *   rest read-write; pages materialise only when touched (Memory.mapContents), so a run pays for
 *   the few hundred pages the lock code reaches, not the 45 MiB image;
 * - setup_per_cpu_areas() (arch/x86/kernel/setup_percpu.c): a copy of .data..percpu per CPU,
 *   `__per_cpu_offset[cpu]` and `this_cpu_off` its address (__per_cpu_start is 0 on x86-64),
 *   `cpu_number`, `x86_cpu_to_apicid`; `nr_cpu_ids` and the possible/online masks;
 * - the PV hash exactly when Linux allocates it: __pv_init_lock_hash() (qspinlock_paravirt.h),
 *   called by kvm_spinlock_init() only on the PV path, sizes it max(PV_HE_MIN, ALIGN(4 * CPUs,
 *   PV_HE_PER_LINE)) entries of 16 bytes and alloc_large_system_hash() sets pv_lock_hash_bits to
 *   the log2 of that; on every other boot pv_lock_hash stays NULL.
 */
import { SHF_WRITE } from '../elf/elf64.ts';
import type { ImageSection } from '../elf/image.ts';
import type { Memory } from '../machine/memory.ts';
import { PAGE_SIZE, Perm } from '../machine/memory.ts';
import type { LinuxBoot } from './kernel.ts';
import { symbolOf } from './kernel.ts';
import { PERCPU_UNIT_SIZE, PV_HASH_AT, perCpuOffset } from './layout.ts';
import { LinuxGuestError } from './errors.ts';
import { PV_OPS_SLOTS } from '../elf/pv-ops-slots.ts';

/** struct pv_hash_entry { struct qspinlock *lock; struct pv_node *node; }. */
export const PV_HASH_ENTRY_SIZE = 16;
/** PV_HE_PER_LINE = SMP_CACHE_BYTES / sizeof(struct pv_hash_entry); PV_HE_MIN = PAGE_SIZE / sizeof(...). */
const PV_HE_PER_LINE = 64 / PV_HASH_ENTRY_SIZE;
const PV_HE_MIN = PAGE_SIZE / PV_HASH_ENTRY_SIZE;

/** init_preempt_count for a running task with nothing pending: PREEMPT_ENABLED (x86 keeps NEED_RESCHED inverted in bit 31). */
export const PREEMPT_ENABLED = 0x80000000;

/** The PV hash's entries and pv_lock_hash_bits for `cpus` possible CPUs. */
export function pvHashSize(cpus: number): { entries: number; bits: number } {
  const want = Math.max(PV_HE_MIN, Math.ceil((4 * cpus) / PV_HE_PER_LINE) * PV_HE_PER_LINE);
  const bits = Math.floor(Math.log2(want));
  return { entries: 1 << bits, bits };
}

function sectionPerms(boot: LinuxBoot, s: ImageSection): number {
  if (s.executable) return Perm.R | Perm.X;
  const elf = boot.kernel.image.elf.sections.find((e) => e.name === s.name && e.addr === s.addr);
  // mark_rodata_ro(): .rodata is read-only once boot is over, though linked writable (ro_after_init).
  const writable = elf !== undefined && (elf.flags & SHF_WRITE) !== 0 && s.name !== '.rodata';
  return writable ? Perm.R | Perm.W : Perm.R;
}

/**
 * Map every section of the booted image. Sections that share a page are laid into one buffer
 * (a later map of a page would otherwise hide an earlier section's tail there); a page shared by
 * a read-only and a writable section is writable.
 */
export function mapKernelImage(mem: Memory, boot: LinuxBoot): void {
  const sections = boot.kernel.image.sections;
  let i = 0;
  while (i < sections.length) {
    const first = Math.floor(sections[i]!.addr / PAGE_SIZE);
    let last = Math.floor((sections[i]!.addr + sections[i]!.size - 1) / PAGE_SIZE);
    let j = i + 1;
    while (j < sections.length && Math.floor(sections[j]!.addr / PAGE_SIZE) <= last + 0) {
      last = Math.max(last, Math.floor((sections[j]!.addr + sections[j]!.size - 1) / PAGE_SIZE));
      j++;
    }
    const base = first * PAGE_SIZE;
    const buf = new Uint8Array((last - first + 1) * PAGE_SIZE);
    const perms = new Uint8Array(last - first + 1);
    for (let k = i; k < j; k++) {
      const s = sections[k]!;
      const bytes = s.executable ? boot.result.text.read(s.addr, s.size)! : s.bytes;
      buf.set(bytes, s.addr - base);
      const p = sectionPerms(boot, s);
      for (let n = Math.floor(s.addr / PAGE_SIZE); n <= Math.floor((s.addr + s.size - 1) / PAGE_SIZE); n++) perms[n - first] |= p;
    }
    let run = 0;
    for (let n = 1; n <= perms.length; n++) {
      if (n < perms.length && perms[n] === perms[run]) continue;
      mem.mapContents(base + run * PAGE_SIZE, buf.subarray(run * PAGE_SIZE, n * PAGE_SIZE), perms[run]!);
      run = n;
    }
    i = j;
  }
}

function writeU32(mem: Memory, addr: number, v: number): void {
  mem.writeBytes(addr, [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]);
}

/** setup_per_cpu_areas() for `cpus` CPUs with APIC IDs `apicIds`, and the CPU masks. */
export function setupPerCpuAreas(mem: Memory, boot: LinuxBoot, cpus: number, apicIds: readonly number[]): void {
  const k = boot.kernel;
  if (k.percpu.length > PERCPU_UNIT_SIZE) throw new LinuxGuestError(`.data..percpu is ${k.percpu.length} bytes, more than the ${PERCPU_UNIT_SIZE}-byte unit`);
  const sym = (n: string) => symbolOf(k, n);
  const offsets = sym('__per_cpu_offset');
  for (let cpu = 0; cpu < cpus; cpu++) {
    const base = perCpuOffset(cpu);
    mem.mapContents(base, k.percpu, 'rw');
    mem.writeU64(offsets + 8 * cpu, base);
    mem.writeU64(base + sym('this_cpu_off'), base);
    writeU32(mem, base + sym('cpu_number'), cpu);
    mem.writeBytes(base + sym('x86_cpu_to_apicid'), [apicIds[cpu]! & 0xff, (apicIds[cpu]! >>> 8) & 0xff]);
    writeU32(mem, base + sym('__preempt_count'), PREEMPT_ENABLED);
  }
  writeU32(mem, sym('nr_cpu_ids'), cpus);
  const mask = new Uint8Array(Math.ceil(cpus / 8));
  for (let cpu = 0; cpu < cpus; cpu++) mask[cpu >> 3]! |= 1 << (cpu & 7);
  mem.writeBytes(sym('__cpu_possible_mask'), mask);
  mem.writeBytes(sym('__cpu_online_mask'), mask);
}

/** __pv_init_lock_hash(): the hash in boot memory, zeroed (HASH_ZERO); returns its size. */
export function pvInitLockHash(mem: Memory, boot: LinuxBoot, cpus: number): { address: number; entries: number; bits: number } {
  const { entries, bits } = pvHashSize(cpus);
  mem.map(PV_HASH_AT, entries * PV_HASH_ENTRY_SIZE, 'rw');
  mem.writeU64(symbolOf(boot.kernel, 'pv_lock_hash'), PV_HASH_AT);
  writeU32(mem, symbolOf(boot.kernel, 'pv_lock_hash_bits'), bits);
  return { address: PV_HASH_AT, entries, bits };
}

/**
 * pv_ops as the platform's init left it (kvm_guest_init, kvm_spinlock_init): every slot the
 * platform assigned, written over the image's native pointers. The patched call sites no longer
 * read it, but a runtime switch does, and so does anything that calls through it.
 */
export function writePvOps(mem: Memory, boot: LinuxBoot): void {
  const base = boot.setup.pvOps.address;
  if (base === undefined) return;
  for (let i = 0; i < PV_OPS_SLOTS.length; i++) {
    const v = boot.setup.env.pvOpAt(base + 8 * i);
    if (v !== undefined) mem.writeU64(base + 8 * i, v);
  }
}
