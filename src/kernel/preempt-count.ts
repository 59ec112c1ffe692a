/**
 * preempt_count (include/linux/preempt.h) as the guest keeps it: a per-CPU word (PERCPU.preemptCount,
 * Linux's __preempt_count) whose NMI bits say "in NMI". __nmi_enter() adds NMI_OFFSET +
 * HARDIRQ_OFFSET and __nmi_exit() subtracts it, so in_nmi() is true for the whole handler: after an
 * IRET inside it (a #BP handler's) has re-opened NMIs at the CPU, and across a nested NMI's latch.
 * That is the guest's own record, independent of the machine's NMI blocking.
 */
import { load } from '../machine/access.ts';
import type { Memory } from '../machine/memory.ts';
import type { ServiceContext } from '../machine/service.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { PERCPU, percpuBase } from './layout.ts';

export const HARDIRQ_OFFSET = 1 << 16;
export const NMI_OFFSET = 1 << 20;
/** NMI_MASK: the four NMI bits (NMI_BITS 4 at NMI_SHIFT 20). */
export const NMI_MASK = 0xf << 20;

/** in_nmi() of vCPU `c` as it sees its own per-CPU word (store buffer included), for oracles. */
export function inNmi(mem: Memory, c: Vcpu): boolean {
  const out = { lo: 0, hi: 0 };
  load(mem, c, percpuBase(c.id) + PERCPU.preemptCount, 4, out);
  return (out.lo & NMI_MASK) !== 0;
}

/** in_nmi() as guest code reads it (one load of this CPU's preempt_count). */
export function* inNmiNow(ctx: ServiceContext): Generator<number, boolean, void> {
  return ((yield* ctx.load(percpuBase(ctx.cpu.id) + PERCPU.preemptCount, 4)) & NMI_MASK) !== 0;
}
