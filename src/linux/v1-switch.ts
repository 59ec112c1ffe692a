/**
 * v1 (RFC patches 15–19, src/kernel/stop-machine.ts) switching the real kernel's lock-op sites
 * under load: the primary vCPU runs stop_machine before its task; every other vCPU stops at a
 * preemptible point (no lock held, no real lock or unlock call in flight: the probes know) and
 * acknowledges each state after a serializing instruction; each site goes through INT3, tail,
 * first byte; an INT3 met meanwhile (an NMI handler's lock op) drives the state machine. At
 * PATCH_DONE the pv_ops lock slots get the target's pointers. What the target needs (the PV hash
 * on native → PV) is allocated before stop_machine, as a runtime switch would kmalloc it.
 */
import { load, type Halves } from '../machine/access.ts';
import type { Memory } from '../machine/memory.ts';
import type { RunOptions, RunResult } from '../machine/machine.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { Flag, Reg } from '../x86/registers.ts';
import { NMI_MASK } from '../kernel/preempt-count.ts';
import { StopMachineV1, STOP_MACHINE_SERVICE, type V1Hooks, type V1Stats } from '../kernel/stop-machine.ts';
import type { LinuxGuest, LinuxLockReport } from './guest.ts';
import { pvInitLockHash } from './memory-map.ts';
import type { LockOpSwitchPlan } from './lock-op-switch.ts';
import { WORKLOAD_TEXT, stackTop } from './layout.ts';
import { LinuxGuestError } from './errors.ts';

export interface LinuxV1Options {
  readonly primaryCpu?: number;
  /**
   * Start stop_machine at the first point from this step on where the primary's task is
   * preemptible (default 0: before its task starts), so the switch lands in the middle of the load.
   */
  readonly atStep?: number;
  /** Allocate the PV hash before a native → PV switch (default true: what a correct switch does). */
  readonly prepare?: boolean;
  /** v1's hooks (default V1_HOOKS; src/patching/broken.ts v1BrokenHooks are negative controls). */
  readonly hooks?: V1Hooks;
  readonly run?: RunOptions;
}

export interface LinuxV1Result {
  /** The switch finished and every check held. */
  readonly ok: boolean;
  readonly switched: boolean;
  readonly run: RunResult;
  readonly locks: LinuxLockReport[];
  readonly lostWakeups: number[];
  readonly stats: V1Stats;
}

/** Switch along `plans` (one stop_machine each, in order: native → PV → native is two). */
export function switchLinuxLockOpsV1(guest: LinuxGuest, plans: readonly LockOpSwitchPlan[], o: LinuxV1Options = {}): LinuxV1Result {
  plans.forEach((plan, i) => {
    const from = i === 0 ? guest.flavor : plans[i - 1]!.to;
    if (from !== plan.from) throw new LinuxGuestError(`switch ${i + 1} starts from ${plan.from}, but the guest runs ${from} locks by then`);
  });
  const m = guest.machine;
  const primaryCpu = o.primaryCpu ?? 0;
  const p = m.vcpu(primaryCpu);
  if ((o.atStep ?? 0) === 0 && (p.rip !== guest.symbol('task_entry') || p.getAddr(Reg.RSP) !== stackTop(primaryCpu))) throw new LinuxGuestError(`the primary needs vCPU ${primaryCpu} before its task starts`);
  const probes = guest.probes;
  const inNmi = (mem: Memory, c: Vcpu): boolean => {
    const out: Halves = { lo: 0, hi: 0 };
    load(mem, c, guest.perCpu(c.id, '__preempt_count'), 4, out);
    return (out.lo & NMI_MASK) !== 0;
  };
  const holds = (cpu: number): boolean => [...probes.holder.values()].includes(cpu);
  const sm = new StopMachineV1(m, {
    primaryCpu,
    // Linux's stopper thread runs only where preemption is on: no spinlock held, no lock op running.
    preemptible: (c) => probes.pending[c.id]!.length === 0 && !holds(c.id),
    inNmi,
    ...(o.hooks !== undefined ? { hooks: o.hooks } : {}),
  });
  const pvTarget = plans.find((x) => x.to === 'pv');
  if (pvTarget !== undefined && guest.pvHash === undefined && (o.prepare ?? true)) guest.pvHash = pvInitLockHash(m.memory, pvTarget.target, m.vcpus.length);
  for (const plan of plans) {
    sm.queue({
      sites: plan.sites.map((s) => ({ address: s.address, bytes: s.to })),
      after: () => {
        for (const s of plan.slots) m.memory.writeU64(s.address, s.value);
        guest.flavor = plan.to;
      },
    });
  }
  let first: RunResult | undefined;
  if ((o.atStep ?? 0) > 0) {
    // The primary's task, interrupts on, outside lock code and holding nothing: where it may call stop_machine.
    const ready = () => m.step >= o.atStep! && (p.flags & Flag.IF) !== 0 && probes.pending[primaryCpu]!.length === 0 && !holds(primaryCpu) && p.serviceFrames.length === 0 && !p.halted && p.rip >= WORKLOAD_TEXT && p.rip < guest.symbol('task_idle');
    first = guest.run({ ...o.run, until: ready });
    if (first.reason !== 'until' || !ready()) return { ok: false, switched: false, run: first, locks: guest.checkLocks(), lostWakeups: [], stats: sm.stats };
  }
  // The primary calls stop_machine (from its task, or before it starts); it returns where it was.
  const rsp = p.getAddr(Reg.RSP) - 8;
  m.memory.writeU64(rsp, p.rip);
  p.setAddr(Reg.RSP, rsp);
  p.rip = STOP_MACHINE_SERVICE.primary;
  const rest = guest.run(o.run);
  const run = first === undefined ? rest : { ...rest, steps: rest.steps + first.steps, instructions: rest.instructions + first.instructions };
  const locks = guest.checkLocks();
  const lostWakeups = run.reason === 'all-halted' ? guest.lostWakeups() : [];
  const switched = sm.stats.done === plans.length;
  const ok = switched && run.reason === 'until' && run.hazards.length === 0 && locks.every((l) => l.ok) && lostWakeups.length === 0;
  return { ok, switched, run, locks, lostWakeups, stats: sm.stats };
}
