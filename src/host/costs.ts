/**
 * Host-side costs, with sources. Cycles at ~3 GHz. The per-instruction costs are in
 * src/sched/cost-model.ts; these are the host scheduler's.
 */
export const HOST_COSTS = {
  slice: {
    cycles: 3_000_000,
    source: 'CFS: sched_latency 6 ms shared by the runnable vCPU threads of a pCPU, min granularity 0.75 ms; 1 ms (3M cycles) per slice',
  },
  contextSwitch: {
    cycles: 6_000,
    source: 'host context switch between vCPU threads incl. VM exit/entry: ~2 µs (kvm-unit-tests, LWN measurements of KVM switch costs)',
  },
  wakeup: {
    cycles: 15_000,
    source: 'kick → halted vCPU running again: IPI + wake-up + VM entry, ~5 µs (KVM halt-polling discussions report 5-20 µs)',
  },
} as const;
