/**
 * The one cost-model table (DESIGN.md §3): what each kind of action costs in cycles on a ~3 GHz
 * Skylake-class host running a KVM guest. Every figure names its source; change a figure here and
 * every timed result follows. Nothing is tuned to make a benchmark come out a particular way.
 */
import { CostClass, COST_CLASS_COUNT } from '../machine/chooser.ts';

export interface CostEntry {
  cycles: number;
  source: string;
}

export const CYCLES_PER_NS = 3;

export const COSTS: Readonly<Record<CostClass, CostEntry>> = {
  [CostClass.Plain]: { cycles: 1, source: 'Agner Fog, instruction tables (Skylake): simple ALU ops ~1 cycle latency' },
  [CostClass.Load]: { cycles: 5, source: 'Intel Optimization Manual, Skylake L1D load-to-use latency 4-5 cycles' },
  [CostClass.Store]: { cycles: 1, source: 'a store retires into the store buffer; commit cost is the drain latency' },
  [CostClass.Locked]: { cycles: 18, source: 'Agner Fog, instruction tables (Skylake): LOCK CMPXCHG/XADD ~18 cycles uncontended' },
  [CostClass.Branch]: { cycles: 1, source: 'Agner Fog: predicted taken branch ~1-2 cycles' },
  [CostClass.Fence]: { cycles: 33, source: 'Agner Fog, instruction tables (Skylake): MFENCE ~33 cycles' },
  [CostClass.Serializing]: { cycles: 60, source: 'IRETQ/SERIALIZE drain the pipeline: tens of cycles (Agner Fog: IRET ~ 50-70 cycles)' },
  [CostClass.Pause]: { cycles: 140, source: 'Intel Optimization Manual 2.5.4: PAUSE latency ~140 cycles on Skylake' },
  [CostClass.Halt]: { cycles: 1500, source: 'HLT exits to KVM: VM exit + entry round trip ~1,200-1,500 cycles (kvm-unit-tests vmexit)' },
  [CostClass.Interrupt]: { cycles: 300, source: 'interrupt/exception delivery through the IDT, ~100 ns class' },
  [CostClass.Hypercall]: { cycles: 1300, source: 'VMCALL/CPUID exit round trip on KVM ~1,200-1,500 cycles (kvm-unit-tests vmexit_cpuid/vmcall)' },
  [CostClass.Drain]: { cycles: 0, source: 'draining happens in the memory system, not on the vCPU clock' },
  [CostClass.Inject]: { cycles: 0, source: 'an external event arriving costs the target nothing until delivery' },
};

/** How long after issue a buffered store becomes visible to other vCPUs (L1 write, no contention). */
export const STORE_DRAIN_LATENCY = { cycles: 20, source: 'store-to-globally-visible latency ~ L1 write + RFO hit, 10-30 cycles' };

/** Cycles per cost class, as an array indexed by CostClass (hot path). */
export function costTable(): Float64Array {
  const t = new Float64Array(COST_CLASS_COUNT);
  for (let k = 0; k < COST_CLASS_COUNT; k++) t[k] = COSTS[k as CostClass].cycles;
  return t;
}
