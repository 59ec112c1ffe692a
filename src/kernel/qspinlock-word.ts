/**
 * Linux's qspinlock word (include/asm-generic/qspinlock_types.h, NR_CPUS < 16K): bits 0-7 the
 * locked byte, 8-15 the pending byte, 16-17 the tail's MCS node index, 18-31 the tail CPU + 1.
 * Native and paravirt locks share this representation: that is what makes switching possible.
 */
export const Q_LOCKED_VAL = 1;
export const Q_PENDING_VAL = 1 << 8;
export const Q_LOCKED_MASK = 0xff;
export const Q_PENDING_MASK = 0xff00;
export const Q_LOCKED_PENDING_MASK = 0xffff;
export const Q_TAIL_IDX_OFFSET = 16;
export const Q_TAIL_CPU_OFFSET = 18;
export const Q_TAIL_MASK = 0xffff0000;
/** The PV "slow" value of the locked byte: the unlocker must unhash and kick (qspinlock_paravirt.h). */
export const Q_SLOW_VAL = 3;

export function encodeTail(cpu: number, idx: number): number {
  return (((cpu + 1) << Q_TAIL_CPU_OFFSET) | (idx << Q_TAIL_IDX_OFFSET)) >>> 0;
}

export function decodeTail(tail: number): { cpu: number; idx: number } {
  return { cpu: (tail >>> Q_TAIL_CPU_OFFSET) - 1, idx: (tail >>> Q_TAIL_IDX_OFFSET) & 3 };
}

/** PV node states (enum vcpu_state). */
export const enum VcpuState {
  Running = 0,
  Halted = 1,
  Hashed = 2,
}
