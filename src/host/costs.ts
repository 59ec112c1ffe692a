/**
 * Host-side costs, with sources. Cycles at ~3 GHz. The per-instruction costs are in
 * src/sched/cost-model.ts; these are the host scheduler's.
 */
/**
 * CFS's time slice for `runnable` threads on a host with `pcpus` CPUs (kernel/sched/fair.c):
 * sched_latency 6 ms and min_granularity 0.75 ms, both scaled by 1 + ilog2(ncpus)
 * (SCHED_TUNABLESCALING_LOG, capped at 8 CPUs); each thread gets latency / nr_running, at least
 * min_granularity. In cycles at CYCLES_PER_NS = 3.
 */
export function cfsSliceCycles(pcpus: number, runnablePerCpu: number): number {
  const factor = 1 + Math.floor(Math.log2(Math.min(Math.max(pcpus, 1), 8)));
  const latencyMs = 6 * factor;
  const minGranMs = 0.75 * factor;
  const ms = Math.max(latencyMs / Math.max(runnablePerCpu, 1), minGranMs);
  return Math.round(ms * 3_000_000);
}

export const HOST_COSTS = {
  slice: {
    cycles: 3_000_000,
    source: 'fallback slice of 1 ms; hostScheduler() uses cfsSliceCycles() for the actual over-commit',
  },
  contextSwitch: {
    cycles: 6_000,
    source: 'host context switch between vCPU threads incl. VM exit/entry: ~2 µs (kvm-unit-tests, LWN measurements of KVM switch costs)',
  },
  pleWindow: {
    cycles: 4_096,
    source: 'pause-loop exiting: KVM ple_window default 4096 (arch/x86/kvm/vmx/vmx.c); a VM exit after spinning this long in a PAUSE loop',
  },
  pleGap: {
    cycles: 128,
    source: 'KVM ple_gap default 128: PAUSEs closer than this belong to one spin loop',
  },
  wakeup: {
    cycles: 15_000,
    source: 'kick → halted vCPU running again: IPI + wake-up + VM entry, ~5 µs (KVM halt-polling discussions report 5-20 µs)',
  },
} as const;
