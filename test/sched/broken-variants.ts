// The stock broken variants (DESIGN.md §5; src/patching/broken.ts, v1's and v2's negative
// controls), each as the run that shows it and the verdict that says it was found, with the
// settings of test/patching/broken.test.ts, text-poke-bp.test.ts and v2.test.ts. A chooser factory
// picks the strategy, so one catalogue serves every strategy's sweep.
import { Guest } from '../../src/kernel/guest.ts';
import type { NmiEntry } from '../../src/kernel/image.ts';
import { SERVICE_BASE, VECTOR } from '../../src/kernel/layout.ts';
import { PvOp, directCall } from '../../src/kernel/pv-ops.ts';
import { pvSlowpath } from '../../src/kernel/qspinlock-slowpath.ts';
import { linuxNop } from '../../src/x86/nops.ts';
import { STOP_MACHINE_SERVICE } from '../../src/kernel/stop-machine.ts';
import { BROKEN_SERVICE, brokenPatch, ticketLockSites, type BrokenVariant } from '../../src/patching/broken.ts';
import { textPokeBp } from '../../src/patching/text-poke-bp.ts';
import { runV1, switchLockOpsV1 } from '../../src/patching/v1.ts';
import { switchLockOpsV2 } from '../../src/patching/v2.ts';
import type { Chooser } from '../../src/machine/chooser.ts';
import type { RunResult } from '../../src/machine/machine.ts';
import type { InjectionOptions } from '../../src/sched/injection.ts';
import { hazardName, type Hazard } from '../../src/machine/events.ts';

const hazardOf = (h: Hazard | undefined): string | undefined => (h === undefined ? undefined : hazardName(h));

/** A run's length for measureRunLength: undefined when it stopped at the step limit. */
function lengthOf(run: RunResult): number | undefined {
  return run.reason === 'limit' ? undefined : run.steps;
}

/** How a sweep makes the chooser for one seed; `inject` is the variant's own injection plan, if it needs one. */
export type ChooserFor = (seed: number, inject?: InjectionOptions) => Chooser;

export interface BrokenCase {
  name: string;
  /** Run the variant once: did the checks catch it, and its length in steps (undefined: it hit the step limit). */
  run(seed: number, chooser: ChooserFor): { found: boolean; steps: number | undefined };
}

const PV_SLOWPATH_V2 = SERVICE_BASE + 0x200;
const TPB_INJECT = { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ };

/**
 * `preemptPatcher`: the host may deschedule the patcher once, while it runs the batch (a
 * conditional preemption): the window in which another vCPU fetches a half-written site.
 */
function tpbCase(variant: BrokenVariant, skipCpu?: number, preemptPatcher = false): BrokenCase {
  const plan: InjectionOptions | undefined = preemptPatcher
    ? { preempt: [{ count: 1, when: { cpu: 0, inside: [{ from: BROKEN_SERVICE, to: BROKEN_SERVICE + 1 }] } }, { pace: true }] }
    : undefined;
  return {
    name: `text_poke_bp ${variant}${skipCpu !== undefined ? ` (vCPU ${skipCpu})` : ''}${preemptPatcher ? ', the patcher preempted inside the batch, 3 more preemptions paced' : ''}`,
    run(seed, chooser) {
      const g = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 4, workload: { iterations: 3 }, seed });
      g.machine.registerService(PV_SLOWPATH_V2, '__pv_queued_spin_lock_slowpath_v2', (ctx) => pvSlowpath(ctx, g.env));
      const site = g.image.sites.find((s) => s.type === PvOp.QueuedSpinLockSlowpath)!;
      const r = brokenPatch(g, [{ address: site.address, bytes: directCall(site, PV_SLOWPATH_V2).subarray(0, 5) }],
        { variant, patcherCpu: 0, ...(skipCpu !== undefined ? { skipCpu } : {}) },
        { chooser: chooser(seed, plan), inject: preemptPatcher ? { ...TPB_INJECT, preemptions: 4 } : TPB_INJECT });
      return { found: r.reason === 'hazard' && r.hazard?.kind === 'cmc-unsynchronized', steps: lengthOf(r.run) };
    },
  };
}

function v1Guest(seed: number, nmiEntry: NmiEntry = 'linux'): Guest {
  return new Guest({ vcpus: 4, flavor: 'native', spinThreshold: 4, workload: { iterations: 3 }, seed, nmiEntry });
}

function v2Case(broken: 'no-map' | 'no-barrier'): BrokenCase {
  return {
    name: `v2 ${broken}`,
    run(seed, chooser) {
      const g = new Guest({ vcpus: 4, flavor: 'native', spinThreshold: 4, seed, workload: { iterations: 5, lockopCheckpoint: true, taskLocks: 1, criticalLoops: 10, thinkLoops: 0 } });
      const r = switchLockOpsV2(g, 'pv', { patcherCpu: seed % 4, broken, run: { chooser: chooser(seed), inject: { nmis: 3, irqs: 6, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 3_000_000 } });
      return { found: r.reason === 'hazard' && hazardOf(r.run.hazards[0]) === 'non-atomic-switch', steps: lengthOf(r.run) };
    },
  };
}

export const BROKEN_CASES: BrokenCase[] = [
  tpbCase('no-int3'),
  tpbCase('no-int3', undefined, true),
  tpbCase('no-sync'),
  tpbCase('skip-one', 2),
  tpbCase('first-before-tail'),
  {
    // Ops switched one at a time: kick becomes a NOP while waiters still halt in PV wait.
    name: 'text_poke_bp one op at a time (kick)',
    run(seed, chooser) {
      const g = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 4, workload: { iterations: 3 }, seed });
      const kick = g.image.sites.find((s) => s.type === PvOp.Kick)!;
      const r = textPokeBp(g, [{ address: kick.address, bytes: linuxNop(5) }], 0, { chooser: chooser(seed), inject: TPB_INJECT });
      return { found: r.reason === 'hazard' && hazardOf(r.hazard) === 'non-atomic-switch', steps: lengthOf(r.run) };
    },
  },
  {
    // v1 whose #BP handler returns to the INT3: an NMI that meets it re-executes it forever.
    name: 'v1 #BP handler without the state machine',
    run(seed, chooser) {
      const r = switchLockOpsV1(v1Guest(seed), ['pv', 'native'], { primaryCpu: seed % 4, int3Retry: true, run: { chooser: chooser(seed), inject: { nmis: 8, irqs: 4, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 300_000 } });
      return { found: r.reason === 'unfinished' && r.stats.int3InNmi > 0 && r.stats.int3Hits > 1000, steps: lengthOf(r.run) };
    },
  },
  {
    // v1 returning from an INT3 in NMI context with IRET: a nested NMI spins on the lock its outer NMI holds.
    // It needs an NMI while vCPU 1 runs the #BP handler inside an NMI: the conditional plan states it,
    // and a guest whose NMI entry lacks Linux's nested-NMI handling (Linux's latches the nested NMI).
    name: 'v1 IRET from the #BP handler in NMI',
    run(seed, chooser) {
      const g = v1Guest(seed, 'plain');
      const nmiUnlock = g.image.sites.at(-1)!;
      const inBp = { nmi: [{ pace: true, count: 6 }, { when: { cpu: 1, nmiBlocked: true, inside: [{ from: STOP_MACHINE_SERVICE.pokeInt3, to: STOP_MACHINE_SERVICE.pokeInt3 + 1 }] } }] };
      const r = switchLockOpsV1(g, ['pv', 'native'], {
        primaryCpu: 0, nmiIret: true, sites: (s) => s.address === nmiUnlock.address,
        run: { chooser: chooser(seed, inBp), inject: { nmis: 10, irqs: 4, irqVector: VECTOR.LOCK_IRQ, cpus: [1] }, maxInstructions: 100_000 },
      });
      const nested = g.machine.vcpu(1).serviceFrames.at(-1)?.name === 'native_queued_spin_lock_slowpath';
      return { found: r.reason === 'unfinished' && r.stats.int3InNmi > 0 && nested, steps: lengthOf(r.run) };
    },
  },
  {
    // Incompatible lock states: qspinlock sites switched to a ticket lock; lockers wait forever.
    name: 'v1 to a ticket lock',
    run(seed, chooser) {
      const g = v1Guest(seed);
      const r = runV1(g, [{ sites: ticketLockSites(g) }], { primaryCpu: 0, run: { chooser: chooser(seed), inject: { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 300_000 } });
      return { found: r.switched && r.run.hazards.length === 0 && r.reason === 'unfinished', steps: lengthOf(r.run) };
    },
  },
  v2Case('no-map'),
  v2Case('no-barrier'),
];
