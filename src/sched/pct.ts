/**
 * PCT, probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): every actor gets a
 * random priority; the highest-priority enabled actor runs; at d-1 random steps the running
 * actor's priority drops below all others. A bug of depth d is found with probability at least
 * 1/(n·k^(d-1)) per run of k steps. Actors are (vCPU, action kind) pairs, so a vCPU's store-buffer
 * drains and its steps have separate priorities and TSO reorderings are explored too.
 *
 * Three departures from the paper, each for a finding of issue 9:
 * - spin-aware: a step of a vCPU spinning on PAUSE drops below every other actor before it is
 *   taken, as shuttle's PCT does with `is_yielding`; without it the highest-priority spinner runs
 *   forever and the lock holder never does (correct v1 livelocked on every seed);
 * - change points are drawn over the run's measured length (`length`, see run-length.ts), not
 *   over a fixed 10,000 decisions that a 10-step litmus test never reaches;
 * - injections and host preemptions are paced over that length by default (injection.ts), not
 *   taken only when nothing else can run;
 * - bounded fairness: a step or drain left enabled but untaken for STARVED_STEPS steps is taken
 *   next, whatever the priorities, and the actor that kept it waiting drops below all. Real CPUs run concurrently and real store buffers drain; PCT
 *   assumes terminating threads, and without this a busy loop that never PAUSEs (text-poke-order's
 *   vCPU 0 bouncing off the INT3) keeps every spinner that stepped aside from ever reading the
 *   acknowledgement it waits for, and every run ends at the step limit.
 */
import { ACTION_KINDS, ActionKind, actionCpu, actionKind, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import { MAX_VCPUS } from '../machine/machine.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { Injector, type InjectionOptions } from './injection.ts';
import { Prng } from './prng.ts';
import { FIRST_GUESS_STEPS } from './run-length.ts';

export interface PctOptions {
  seed: number;
  /** Bug depth d: d-1 priority change points (default 3). */
  depth?: number;
  /** Expected run length in machine steps, over which change points and paced events are drawn (default FIRST_GUESS_STEPS). */
  length?: number;
  /** How NMIs, IRQs and host preemptions are spent (default: each budget paced over `length`). */
  inject?: InjectionOptions;
}

/** How long an enabled step or drain may wait before PCT takes it regardless of priority (see above). */
export const STARVED_STEPS = 1000;

/** Priorities of actors never seen: above every lowered one (lowered priorities count down from 0). */
const UNSEEN = -Infinity;

export class PctChooser implements Chooser {
  readonly name = 'pct';
  private readonly rng: Prng;
  /** Priority per actor (an action code); UNSEEN until first enabled. */
  private readonly priority = new Float64Array(MAX_VCPUS * ACTION_KINDS).fill(UNSEEN);
  private readonly changePoints: number[];
  private readonly injector: Injector;
  private lowest = 0;
  /** Per actor: the step since which it has been enabled without being taken (-1: not waiting). */
  private readonly waitingSince = new Float64Array(MAX_VCPUS * ACTION_KINDS).fill(-1);
  /** Per actor: the last step at which it was enabled (a gap restarts its wait). */
  private readonly enabledAt = new Float64Array(MAX_VCPUS * ACTION_KINDS).fill(-1);
  private lastPoint = -1;

  constructor(opts: PctOptions) {
    this.rng = new Prng(opts.seed);
    const depth = opts.depth ?? 3;
    const length = Math.max(1, Math.round(opts.length ?? FIRST_GUESS_STEPS));
    this.changePoints = Array.from({ length: Math.max(0, depth - 1) }, () => this.rng.int(length)).sort((a, b) => a - b);
    this.injector = new Injector(this.rng, opts.inject ?? {}, length, true);
  }

  private prio(actor: number): number {
    let p = this.priority[actor]!;
    if (p === UNSEEN) {
      p = 1_000_000 + this.rng.int(1_000_000);
      this.priority[actor] = p;
    }
    return p;
  }

  private lower(actor: number): void {
    this.priority[actor] = this.lowest--;
  }

  /** The highest-priority Step or Drain action (not a spinner's step, if `skipSpinners`), or -1. */
  private best(point: SchedulingPoint, skipSpinners: boolean): number {
    let best = -1;
    let bestP = -Infinity;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      const k = actionKind(a);
      if (k > ActionKind.Drain || (skipSpinners && k === ActionKind.Step && point.vcpus[actionCpu(a)]!.spinning)) continue;
      const p = this.prio(a);
      if (p > bestP) { bestP = p; best = i; }
    }
    return best;
  }

  /** A step or drain that has waited STARVED_STEPS while enabled, or -1; keeps the wait times. */
  private starved(point: SchedulingPoint): number {
    let found = -1;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      if (actionKind(a) > ActionKind.Drain) continue;
      if (this.enabledAt[a] !== this.lastPoint || this.waitingSince[a]! < 0) this.waitingSince[a] = point.step;
      this.enabledAt[a] = point.step;
      if (found < 0 && point.step - this.waitingSince[a]! >= STARVED_STEPS) found = i;
    }
    this.lastPoint = point.step;
    return found;
  }

  /** The action taken at this point: its wait is over. */
  private taken(point: SchedulingPoint, i: number): number {
    if (i >= 0 && i < point.count) this.waitingSince[point.actions[i]!] = -1;
    return i;
  }

  next(point: SchedulingPoint): number {
    this.chosen = -1;
    const event = this.injector.pick(point);
    if (event >= 0) return event;
    const starved = this.starved(point);
    if (starved >= 0) {
      // A priority change point where starvation shows: the actor that kept it waiting drops
      // below all, so the starved one runs until it spins or the next change.
      const hog = this.best(point, true);
      if (hog >= 0 && hog !== starved) this.lower(point.actions[hog]!);
      return this.taken(point, starved);
    }
    // Spin-aware: every spinner above the best actor that makes progress steps aside (drops below
    // all); when only spinners can run, the highest runs and drops, so they take turns.
    let best = this.best(point, true);
    if (best >= 0) {
      const bestP = this.priority[point.actions[best]!]!;
      for (let i = 0; i < point.count; i++) {
        const a = point.actions[i]!;
        if (actionKind(a) === ActionKind.Step && this.priority[a]! > bestP && point.vcpus[actionCpu(a)]!.spinning) this.lower(a);
      }
    } else {
      best = this.best(point, false);
      if (best < 0) return this.taken(point, this.injector.fallback(point));
      this.lower(point.actions[best]!);
    }
    let changed = false;
    while (this.changePoints.length > 0 && this.changePoints[0]! <= point.step) {
      this.changePoints.shift();
      this.lower(point.actions[best]!);
      changed = true;
    }
    // A burst only for a step that stays the highest: not one lowered here by a change point.
    if (!changed && actionKind(point.actions[best]!) === ActionKind.Step && !point.vcpus[actionCpu(point.actions[best]!)]!.spinning) {
      this.chosen = point.actions[best]!;
      this.chosenPoint = point;
    }
    return this.taken(point, best);
  }

  /** The step `next` chose by priority at the last point (-1: none, or chosen otherwise), and that point. */
  private chosen = -1;
  private chosenPoint: SchedulingPoint | undefined;

  /**
   * PCT is deterministic between its events, so a burst is exact: were nothing to change (the
   * machine ends a burst when something does), every skipped point would pick this step again,
   * as its actor stays the highest, until the next change point, the first step at which another
   * enabled actor starves, or the injector's next event. Skipped points change no bookkeeping that
   * a point would: the spinners above it were lowered here, and the waits of the others run on.
   * So a run with bursts makes exactly the decisions of one with a point per step.
   */
  burst(vcpu: Vcpu): number {
    const a = this.chosen;
    const point = this.chosenPoint;
    this.chosen = -1;
    if (a < 0 || point === undefined || actionCpu(a) !== vcpu.id) return 1;
    let until = point.step + this.injector.quietSteps(point);
    if (this.changePoints.length > 0) until = Math.min(until, this.changePoints[0]!);
    for (let i = 0; i < point.count; i++) {
      const b = point.actions[i]!;
      if (b === a || actionKind(b) > ActionKind.Drain || this.waitingSince[b]! < 0) continue;
      until = Math.min(until, this.waitingSince[b]! + STARVED_STEPS);
    }
    return Math.max(1, until - point.step);
  }

  choose(_kind: ChoiceKind, n: number): number {
    return this.rng.int(n);
  }
}
