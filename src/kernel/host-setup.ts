/**
 * Putting a booted guest on physical CPUs: the over-commit ratio becomes a number of pCPUs and a
 * HostScheduler whose deschedules write the guest's steal-time `preempted` byte.
 */
import { HostScheduler } from '../host/scheduler.ts';
import { HOST_COSTS, cfsSliceCycles } from '../host/costs.ts';
import { GuestConfigError } from './errors.ts';
import type { Guest } from './guest.ts';

export interface OvercommitOptions {
  /** Physical CPUs; or give `overcommit` (vCPUs per pCPU). */
  pcpus?: number;
  overcommit?: number;
  sliceCycles?: number;
  switchCycles?: number;
  wakeCycles?: number;
  /** Pause-loop exiting (default on, KVM's ple_window and ple_gap); false turns it off. */
  ple?: boolean;
}

/** Physical CPUs for `vcpus` at `ratio` vCPUs per pCPU (rounded to the nearest whole CPU). */
export function pcpusFor(vcpus: number, ratio: number): number {
  if (!(ratio > 0) || !Number.isFinite(ratio)) throw new GuestConfigError(`an over-commit ratio must be a positive number, not ${ratio}`);
  const p = Math.round(vcpus / ratio);
  if (p < 1) throw new GuestConfigError(`over-commit ratio ${ratio} leaves ${vcpus} vCPUs less than one physical CPU`);
  return p;
}

export function hostScheduler(g: Guest, o: OvercommitOptions): HostScheduler {
  const n = g.machine.vcpus.length;
  if (o.pcpus !== undefined && o.overcommit !== undefined) throw new GuestConfigError('give host.pcpus or host.overcommit, not both');
  const pcpus = o.pcpus ?? pcpusFor(n, o.overcommit ?? 1);
  if (!Number.isInteger(pcpus) || pcpus < 1) throw new GuestConfigError(`the host needs a whole number of physical CPUs ≥ 1, not ${pcpus}`);
  if (!g.host) throw new GuestConfigError('host over-commit needs platform kvm');
  const host = g.host;
  return new HostScheduler(
    {
      pcpus,
      sliceCycles: o.sliceCycles ?? cfsSliceCycles(pcpus, Math.ceil(n / pcpus)),
      switchCycles: o.switchCycles ?? HOST_COSTS.contextSwitch.cycles,
      wakeCycles: o.wakeCycles ?? HOST_COSTS.wakeup.cycles,
      ...(o.ple === false ? {} : { ple: { window: HOST_COSTS.pleWindow.cycles, gap: HOST_COSTS.pleGap.cycles } }),
    },
    g.machine.vcpus,
    g.machine.memory,
    (cpu, preempted) => host.setPreempted(cpu, preempted),
  );
}
