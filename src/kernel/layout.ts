/**
 * Where the guest kernel lives: text at Linux's __START_KERNEL_map + 16 MiB (where the imitation's
 * own text stands in for the kernel's), and everything else of pvpatch's (kernel services, data,
 * per-CPU areas reached through %gs as Linux does, stacks) in the module area above the kernel
 * image, so that none of it overlaps a real kernel loaded at its link addresses (src/linux/: a
 * Debian 6.1 vmlinux spans 0xffffffff81000000..0xffffffff83e00000, text to .init.scratch).
 */

export const TEXT_BASE = -0x7f000000; // 0xffffffff81000000
export const TEXT_SIZE = 0x40000;
/**
 * MODULES_VADDR with KASLR (arch/x86/include/asm/pgtable_64_types.h: __START_KERNEL_map +
 * KERNEL_IMAGE_SIZE, 1 GiB): past any kernel image, within a CALL's rel32 of its text.
 */
export const MODULES_VADDR = -0x40000000; // 0xffffffffc0000000
/** Kernel services (TypeScript coroutines) occupy addresses in this range (no bytes are mapped there). */
export const SERVICE_BASE = MODULES_VADDR;
export const SERVICE_SIZE = 0x10000;
export const DATA_BASE = MODULES_VADDR + 0x100000; // 0xffffffffc0100000
export const DATA_SIZE = 0x10000;
export const PERCPU_BASE = MODULES_VADDR + 0x200000; // 0xffffffffc0200000
export const PERCPU_SIZE = 0x1000;
export const STACK_BASE = MODULES_VADDR + 0x400000; // 0xffffffffc0400000
export const STACK_SIZE = 0x4000;

/** Data layout (offsets from DATA_BASE). */
export const DATA = {
  /** struct paravirt_patch_template pv_ops: one 8-byte slot per op. */
  pvOps: 0x0,
  /** __per_cpu_offset[NR_CPUS]. */
  perCpuOffset: 0x100,
  /** The workload's locks, each on its own cache line. */
  locks: 0x1000,
  /** Shared counters incremented inside critical sections, one cache line each. */
  counters: 0x2000,
  /** pv_lock_hash: the pointer to the PV lock hash table, NULL until __pv_init_lock_hash (pv-hash.ts). */
  pvLockHash: 0x3000,
  /** Where the PV lock hash table is allocated: entries of {lock, node}. */
  pvHash: 0x4000,
} as const;

export const PV_HASH_ENTRIES = 256;
export const PV_HASH_ENTRY_SIZE = 16;

/** Per-CPU layout (offsets into a CPU's area, which %gs points at). */
export const PERCPU = {
  /** struct qnode qnodes[4]: one MCS node per context (task, softirq, hardirq, NMI). */
  qnodes: 0x0,
  /** struct kvm_steal_time (64 bytes, `preempted` at +16). */
  stealTime: 0x100,
  /** Per-CPU lock acquisition counts, one u64 per workload lock. */
  acquisitions: 0x200,
  /** Set when the CPU's task loop has finished. */
  done: 0x300,
  /** nmi_state (arch/x86/kernel/nmi.c): NMI_NOT_RUNNING, NMI_EXECUTING or NMI_LATCHED (NmiState). */
  nmiState: 0x340,
  /** __preempt_count (src/kernel/preempt-count.ts): in_nmi() is its NMI bits. */
  preemptCount: 0x380,
} as const;

/** enum nmi_states (arch/x86/kernel/nmi.c), the values of PERCPU.nmiState. */
export const NmiState = { NOT_RUNNING: 0, EXECUTING: 1, LATCHED: 2 } as const;

/** struct qnode: our layout of mcs_spinlock + pv_node. */
export const QNODE = { size: 32, next: 0, locked: 8, count: 12, cpu: 16, state: 20 } as const;
export const MAX_NODES = 4;
export const MAX_LOCKS = 8;

export function percpuBase(cpu: number): number {
  return PERCPU_BASE + cpu * PERCPU_SIZE;
}

export function stackTop(cpu: number): number {
  return STACK_BASE + (cpu + 1) * STACK_SIZE;
}

export function lockAddress(i: number): number {
  return DATA_BASE + DATA.locks + i * 64;
}

export function counterAddress(i: number): number {
  return DATA_BASE + DATA.counters + i * 64;
}

/** Interrupt vectors the guest uses. */
export const VECTOR = {
  NMI: 2,
  BP: 3,
  UD: 6,
  /** A device interrupt whose handler takes a lock. */
  LOCK_IRQ: 0x30,
  /** The host's "hints changed" notification. */
  HINT: 0xec,
  /** text_poke_bp / stop_machine sync IPI (issue 4). */
  SYNC: 0xf0,
} as const;

/** The most vCPUs this guest image is built for (per-CPU areas and stacks). */
export const GUEST_MAX_VCPUS = 64;
