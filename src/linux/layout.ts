/**
 * Where the real-kernel guest puts what is not the kernel's: the vmlinux keeps its link addresses
 * (0xffffffff81000000.. for Debian's 6.1), and everything pvpatch adds lies where Linux would put
 * such things, clear of the image:
 * - the workload's text, locks, counters and stacks in the module area (a module's code calling
 *   the kernel's exported _raw_spin_lock is exactly what a driver does), past the imitation's
 *   services and data (src/kernel/layout.ts), so both can share one machine;
 * - the per-CPU areas and the PV hash in the direct map (PAGE_OFFSET), where setup_per_cpu_areas()
 *   and alloc_large_system_hash(HASH_EARLY) get their memory from memblock.
 */
import { MODULES_VADDR } from '../kernel/layout.ts';

/** The workload's code: task loop, IRQ and NMI handlers (src/linux/workload.ts). */
export const WORKLOAD_TEXT = MODULES_VADDR + 0x1000000; // 0xffffffffc1000000
export const WORKLOAD_TEXT_SIZE = 0x10000;
/** Locks, shared counters, per-CPU acquisition counts and done flags (WORKLOAD_DATA_LAYOUT). */
export const WORKLOAD_DATA = MODULES_VADDR + 0x1100000;
export const WORKLOAD_DATA_SIZE = 0x10000;
export const WORKLOAD_DATA_LAYOUT = {
  /** Each lock on its own cache line. */
  locks: 0x0,
  /** The counter each lock protects, each on its own line. */
  counters: 0x400,
  /** acquisitions[cpu][lock]: u64, ACQ_STRIDE bytes per CPU. */
  acquisitions: 0x1000,
  /** done[cpu]: 1 when the CPU's task loop has finished. */
  done: 0x8000,
  /** lockop_epoch[cpu]: the v2 barrier epoch this CPU passed, one line each (src/linux/v2-switch.ts). */
  lockopEpoch: 0x9000,
} as const;
export const ACQ_STRIDE = 0x40;
export const MAX_WORKLOAD_LOCKS = 8;
export const WORKLOAD_MAX_VCPUS = 64;

export const STACKS = MODULES_VADDR + 0x1200000;
export const STACK_SIZE = 0x4000;

/** PAGE_OFFSET without KASLR (arch/x86/include/asm/page_64_types.h __PAGE_OFFSET_BASE_L4). */
export const PAGE_OFFSET = -0x777800000000; // 0xffff888000000000
/** The first per-CPU chunk: one unit per CPU, each a copy of .data..percpu. */
export const PERCPU_CHUNK = PAGE_OFFSET + 0x40000000;
/** pcpu_unit_size: .data..percpu (0x34000 in Debian 6.1) rounded up, with room for dynamic per-CPU data. */
export const PERCPU_UNIT_SIZE = 0x40000;
/** Where __pv_init_lock_hash's memblock allocation lands. */
export const PV_HASH_AT = PAGE_OFFSET + 0x3f000000;

export function lockAddress(i: number): number {
  return WORKLOAD_DATA + WORKLOAD_DATA_LAYOUT.locks + 64 * i;
}
export function counterAddress(i: number): number {
  return WORKLOAD_DATA + WORKLOAD_DATA_LAYOUT.counters + 64 * i;
}
export function acquisitionsAddress(cpu: number, lock: number): number {
  return WORKLOAD_DATA + WORKLOAD_DATA_LAYOUT.acquisitions + ACQ_STRIDE * cpu + 8 * lock;
}
export function doneAddress(cpu: number): number {
  return WORKLOAD_DATA + WORKLOAD_DATA_LAYOUT.done + cpu;
}
export function lockopEpochAddress(cpu: number): number {
  return WORKLOAD_DATA + WORKLOAD_DATA_LAYOUT.lockopEpoch + 64 * cpu;
}
export function stackTop(cpu: number): number {
  return STACKS + (cpu + 1) * STACK_SIZE;
}
/** __per_cpu_offset[cpu]: __per_cpu_start is 0 on x86-64, so the offset is the unit's address. */
export function perCpuOffset(cpu: number): number {
  return PERCPU_CHUNK + cpu * PERCPU_UNIT_SIZE;
}
