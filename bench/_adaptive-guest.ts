/**
 * One guest of bench adaptive (bench/adaptive.ts) through the host's phases: boot it (static native,
 * static PV, or adaptive: v2 switcher + REALTIME hint trigger), alternate the host between
 * under-commit with REALTIME granted and over-commit with it revoked, count acquisitions every
 * SAMPLE_MS, then let the tasks finish and check every lock.
 *
 * One choice differs from bench locks, because v2 could not switch otherwise (measured): think
 * time 10 µs instead of 1 µs. With 8 vCPUs × 200 ns per 1.2 µs the one lock is always contended,
 * v2's count of in-flight slowpaths rarely reaches zero, and at ratio 2 every attempt aborts
 * (-EAGAIN). v2 runs with its default barrier budget (20,000 spins, 3 retries): with the host's
 * pause-loop exiting, no barrier wait came near it. Without PLE (lock-holder preemption stalls
 * every spinner for a whole CFS slice) the budget had to be 20× larger and half the switches
 * still landed after the over-commit phase.
 */
import { judgeGuestRun } from '../src/kernel/judge.ts';
import { hazardName } from '../src/machine/events.ts';
import { Guest } from '../src/kernel/guest.ts';
import { hostScheduler } from '../src/kernel/host-setup.ts';
import { TimedChooser } from '../src/sched/timed.ts';
import { CYCLES_PER_NS } from '../src/sched/cost-model.ts';
import { Reg } from '../src/x86/registers.ts';
import type { Flavor } from '../src/kernel/pv-ops.ts';
import type { RunResult } from '../src/machine/machine.ts';
import { installLockopV2, runSettled, type LockopSwitcher, type V2Options, type V2Switch } from '../src/patching/v2.ts';
import { installHintTrigger } from '../src/patching/trigger.ts';
import { LOCK_WORKLOAD, VCPUS } from './locks.ts';

/** Under-commit: one pCPU per vCPU (bench locks: native wins at ratio ≤ 1.5, PV at ≥ 3). */
export const UNDER_RATIO = 1;
export const SEED = 1;
export const TASK_LOCKS = 1;
export const THINK_CYCLES = 30_000;
export const V2_OPTIONS = { patcherCpu: 0 } as const;
/** Sampling period of the acquisition counts, for the rates after a switch. */
const SAMPLE_MS = 0.5;

export type GuestKind = 'native' | 'pv' | 'adaptive';
export type Commit = 'under' | 'over';

export interface AdaptiveConfig {
  /** Over-commit ratio of the 'over' phases. */
  ratio: number;
  /** Simulated length of the under- and the over-commit phases, in ms. */
  underMs: number;
  overMs: number;
  /** Host time slice in µs for every phase (default: CFS's for the pCPU count, cfsSliceCycles). */
  sliceUs?: number;
  /** Task locks of the workload (vCPU i takes lock i mod taskLocks). */
  taskLocks?: number;
  /** udelay() cycles between acquisitions (default THINK_CYCLES; bench locks has 3000). */
  thinkCycles?: number;
  /** Number of phases: under, over, under, over, … */
  phases: number;
  seed?: number;
  /** The adaptive guest's v2 options (barrier budget, retries). */
  v2?: V2Options;
}

/** One phase of one guest's run. */
export interface PhaseMeasure {
  commit: Commit;
  pcpus: number;
  /** Simulated start and end of the phase, in cycles (the host's changes happen at the start). */
  start: number;
  end: number;
  acquisitions: number;
  /** Flavour of the lock ops at the phase's end. */
  flavor: Flavor;
  /** [simulated time, acquisitions since the phase began] every SAMPLE_MS, and at the end. */
  samples: [number, number][];
}

export interface GuestRun {
  kind: GuestKind;
  phases: PhaseMeasure[];
  /** Adaptive only: every switch the hint changes caused, in order. */
  switches: V2Switch[];
  /** The end-of-run checks (runGuest throws unless every lock is OK and no hazard happened). */
  locks_ok: boolean;
  hazards: number;
  preemptions: number;
  instructions: number;
  wall_s: number;
}

function commitOf(phase: number): Commit {
  return phase % 2 === 0 ? 'under' : 'over';
}

/** Task-lock acquisitions so far (Guest.acquisitionsSoFar over the task locks). */
function acquisitions(g: Guest): number {
  return g.acquisitionsSoFar(g.workload.taskLocks);
}

/**
 * Boot one guest, run it through the phases (at each boundary the host changes its pCPU count and
 * grants or revokes REALTIME), then let every task finish its iteration and judge the run: no
 * hazard, every lock's counter equal to its acquisitions, every task finished (no lost wake-up).
 * Throws if not. How each switch ended (-EAGAIN included) is in `switches`, for the report.
 */
export function runGuest(kind: GuestKind, cfg: AdaptiveConfig): GuestRun {
  const seed = cfg.seed ?? SEED;
  const g = new Guest({
    vcpus: VCPUS,
    flavor: kind === 'adaptive' ? 'auto' : kind,
    seed,
    host: { realtime: true },
    // Every guest has the checkpoint call in its task loop, so all three run the same code.
    workload: { ...LOCK_WORKLOAD, taskLocks: cfg.taskLocks ?? TASK_LOCKS, thinkCycles: cfg.thinkCycles ?? THINK_CYCLES, lockopCheckpoint: true },
  });
  const host = g.host!;
  let sw: LockopSwitcher | undefined;
  if (kind === 'adaptive') {
    sw = installLockopV2(g, { ...V2_OPTIONS, ...cfg.v2 });
    installHintTrigger(g);
  }
  const pcpusOf = (c: Commit) => Math.round(VCPUS / (c === 'under' ? UNDER_RATIO : cfg.ratio));
  const slice = cfg.sliceUs === undefined ? undefined : Math.round(cfg.sliceUs * 1000 * CYCLES_PER_NS);
  const sched = hostScheduler(g, { pcpus: pcpusOf('under'), ...(slice !== undefined ? { sliceCycles: slice } : {}) });
  const chooser = new TimedChooser({ seed, host: sched });
  const flavorNow = (): Flavor => sw?.flavor ?? g.flavor;
  const phases: PhaseMeasure[] = [];
  const hazards: RunResult['hazards'] = [];
  let instructions = 0;
  const t0 = performance.now();
  let count = acquisitions(g);
  for (let i = 0; i < cfg.phases; i++) {
    const commit = commitOf(i);
    const start = chooser.now;
    if (i > 0) {
      // The host starts or stops over-committing, and grants or revokes the hint as it does.
      sched.setPcpus(pcpusOf(commit), start, slice);
      host.setRealtimeHint(commit === 'under');
      sched.sync(start); // the hint interrupt makes halted vCPUs runnable
    }
    const end = start + (commit === 'under' ? cfg.underMs : cfg.overMs) * 1e6 * CYCLES_PER_NS;
    const samples: [number, number][] = [];
    for (let t = start; chooser.now < end;) {
      t = Math.min(end, t + SAMPLE_MS * 1e6 * CYCLES_PER_NS);
      const stop = t;
      const r = g.run({ chooser, maxInstructions: 2e9, record: false, until: () => chooser.now >= stop });
      instructions += r.instructions;
      hazards.push(...r.hazards);
      if (r.reason !== 'until') throw new Error(`${kind} at ratio ${cfg.ratio}, phase ${i}: stopped early: ${r.reason} ${r.error?.message ?? ''}`);
      samples.push([chooser.now, acquisitions(g) - count]);
    }
    const after = count + samples[samples.length - 1]![1];
    phases.push({ commit, pcpus: sched.opts.pcpus, start, end: chooser.now, acquisitions: after - count, flavor: flavorNow(), samples });
    count = after;
  }
  // Wind down: every task ends after its current iteration (r13 counts the iterations left), so the
  // run stops with every vCPU idle and no critical section half-done; then judge it.
  for (const c of g.machine.vcpus) c.setReg64(Reg.R13, 1n);
  const rest = runSettled(g, { chooser, maxInstructions: 1e8, record: false });
  instructions += rest.instructions;
  hazards.push(...rest.hazards);
  const where = `${kind} at ratio ${cfg.ratio}`;
  if (hazards.length > 0) throw new Error(`${where}: hazard ${hazardName(hazards[0]!)}`);
  const { verdict, locks } = judgeGuestRun(g, rest);
  if (!verdict.ok) throw new Error(`${where}: ${verdict.check}: ${verdict.message}`);
  return {
    kind,
    phases,
    switches: sw?.switches ?? [],
    locks_ok: locks.every((l) => l.ok),
    hazards: hazards.length,
    preemptions: sched.stats.preemptions,
    instructions,
    wall_s: +((performance.now() - t0) / 1000).toFixed(2),
  };
}
