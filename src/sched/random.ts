/**
 * Seeded random strategy for bug finding: every enabled action is possible, weighted so that runs
 * make progress. A spinning vCPU (PAUSE in its last few instructions) is de-prioritised, as
 * shuttle's scheduler does with `is_yielding`, and injections are rare so a budget spreads out.
 * A budget given a plan (`inject`: paced, conditional; injection.ts) is spent by that plan instead
 * of by weight.
 */
import { ActionKind, actionCpu, actionKind, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import { Injector, type InjectionOptions } from './injection.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { Prng } from './prng.ts';
import { FIRST_GUESS_STEPS } from './run-length.ts';

export interface RandomWeights {
  step: number;
  spinningStep: number;
  drain: number;
  /** An NMI or IRQ. */
  inject: number;
  /** The host deschedules a running vCPU. */
  preempt: number;
  /** The host runs a descheduled vCPU again (its mean time off is about 1/resume decisions). */
  resume: number;
}

export const DEFAULT_WEIGHTS: RandomWeights = { step: 1, spinningStep: 0.1, drain: 0.3, inject: 0.002, preempt: 0.002, resume: 0.01 };

export interface RandomOptions {
  weights?: Partial<RandomWeights>;
  /** Expected run length in machine steps, over which paced budgets are spread (default FIRST_GUESS_STEPS). */
  length?: number;
  /** Plans for the budgets; a budget without one is spent by weight. */
  inject?: InjectionOptions;
  /**
   * Decide run lengths up front (`burst`, default true): the same distribution of switch points
   * as a point per step, at burst speed. `false` draws at every step instead, another random
   * stream (a seed names another run); the burst tests compare the two laws with it.
   */
  bursts?: boolean;
}

export class RandomChooser implements Chooser {
  readonly name = 'random';
  private readonly rng: Prng;
  /** Weight per action kind (an injector-owned kind weighs 0: the injector decides it). */
  private readonly byKind = new Float64Array(8);
  private readonly spinningStep: number;
  private readonly injector: Injector | undefined;

  constructor(
    readonly seed: number,
    opts: RandomOptions = {},
  ) {
    this.rng = new Prng(seed);
    const w = { ...DEFAULT_WEIGHTS, ...opts.weights };
    const inj = opts.inject ?? {};
    this.injector = inj.nmi || inj.irq || inj.preempt ? new Injector(this.rng, inj, opts.length ?? FIRST_GUESS_STEPS, false) : undefined;
    const own = (k: ActionKind) => this.injector?.owns(k) === true;
    this.byKind[ActionKind.Step] = w.step;
    this.byKind[ActionKind.Drain] = w.drain;
    this.byKind[ActionKind.Nmi] = own(ActionKind.Nmi) ? 0 : w.inject;
    this.byKind[ActionKind.Irq] = own(ActionKind.Irq) ? 0 : w.inject;
    this.byKind[ActionKind.Preempt] = own(ActionKind.Preempt) ? 0 : w.preempt;
    this.byKind[ActionKind.Resume] = own(ActionKind.Resume) ? 0 : w.resume;
    this.spinningStep = w.spinningStep;
    if (opts.bursts !== false) this.burst = (vcpu) => this.drawBurst(vcpu);
  }

  /** Present with `bursts` (the machine tests for it: absent, a point per step). */
  readonly burst?: (vcpu: Vcpu) => number;

  /** The step `next` chose at the last point, for `burst` (-1: none), with its weight and the total. */
  private chosen = -1;
  private chosenWeight = 0;
  private chosenTotal = 0;
  /** That point (the machine's own, unchanged until the burst starts), for the injector's quiet span. */
  private chosenPoint: SchedulingPoint | undefined;
  /**
   * A burst that runs out ends at a switch: its last repeat draw said "not this step" at
   * `switchAt` (see `burst`); -1 when no switch is pending.
   */
  private switchFrom = -1;
  private switchAt = -1;
  private switchWeight = 0;
  private switchTotal = 0;

  next(point: SchedulingPoint): number {
    const exclude = this.pendingSwitch(point);
    this.chosen = -1;
    if (this.injector !== undefined) {
      const e = this.injector.pick(point);
      if (e >= 0) return e;
    }
    let total = 0;
    for (let i = 0; i < point.count; i++) total += this.weight(point, i);
    if (total === 0) return this.injector?.fallback(point) ?? 0;
    // At a switch the ended burst's step is left out, if the repeats were drawn with its weight
    // and total as they are now: the draw is then among the others, by weight.
    let excluded = -1;
    if (exclude >= 0) {
      for (let i = 0; i < point.count; i++) if (point.actions[i] === exclude) { excluded = i; break; }
      if (excluded >= 0 && (this.weight(point, excluded) !== this.switchWeight || total !== this.switchTotal)) excluded = -1;
    }
    // The second pass recomputes each weight (the same value, so the same decision) instead of
    // keeping them in a per-chooser table: a chooser per execution allocated 16 KiB (issue 12).
    let r = this.rng.float() * (excluded >= 0 ? total - this.switchWeight : total);
    let pick = -1;
    for (let i = 0; i < point.count; i++) {
      if (i === excluded) continue;
      const w = this.weight(point, i);
      if (w > 0) pick = i; // the last one with weight, should rounding leave r >= 0
      r -= w;
      if (r < 0) break;
    }
    if (pick < 0) pick = excluded >= 0 ? excluded : point.count - 1;
    const a = point.actions[pick]!;
    if (actionKind(a) === ActionKind.Step) {
      this.chosen = a;
      this.chosenWeight = this.weight(point, pick);
      this.chosenTotal = total;
      this.chosenPoint = point;
    }
    return pick;
  }

  /** A forced action follows the burst: no switch is drawn there. */
  forced(): void {
    this.switchAt = -1;
  }

  /** The step to leave out at this point (a burst ran out here), or -1; clears the pending switch. */
  private pendingSwitch(point: SchedulingPoint): number {
    const at = this.switchAt;
    this.switchAt = -1;
    return at === point.step ? this.switchFrom : -1;
  }

  /**
   * How long the step `next` just chose runs. Per-point choice takes the same step again with
   * probability p = its weight / the total at every point where nothing changed, independently,
   * so the repeats before a switch are geometric: P(at least g more) = p^g, drawn here by
   * inversion (g = floor(ln U / ln p)) and followed by a switch (a draw among the others). The
   * machine cuts a burst when a weight may have changed (Chooser.burst); the geometric
   * distribution is memoryless, so drawing afresh at that point gives what per-point choices
   * from there would. The one case the machine cannot see, a change made by the burst's last
   * step, `next` catches: it leaves the vCPU out only if its weight and the total are still those
   * the repeats were drawn with. The injector's next due step ends a burst too. So a run's
   * switch points follow today's distribution; the random stream (which draws what) differs.
   */
  private drawBurst(vcpu: Vcpu): number {
    const a = this.chosen;
    const point = this.chosenPoint;
    this.chosen = -1;
    if (a < 0 || point === undefined || actionCpu(a) !== vcpu.id) return 1;
    const p = this.chosenWeight / this.chosenTotal;
    const repeats = p >= 1 ? Infinity : p <= 0 ? 0 : Math.floor(Math.log(1 - this.rng.float()) / Math.log(p));
    const k = 1 + repeats;
    // The injector may act `quiet` steps on: stop there and draw afresh, whatever the repeats
    // said about that point (deciding by them would bias it).
    const quiet = this.injector?.quietSteps(point) ?? Infinity;
    if (k >= quiet) return Math.max(1, quiet);
    this.switchFrom = a;
    this.switchAt = point.step + k;
    this.switchWeight = this.chosenWeight;
    this.switchTotal = this.chosenTotal;
    return k;
  }

  private weight(point: SchedulingPoint, i: number): number {
    const a = point.actions[i]!;
    const k = actionKind(a);
    return k === ActionKind.Step && point.vcpus[a >> 3]!.spinning ? this.spinningStep : this.byKind[k]!;
  }

  choose(_kind: ChoiceKind, n: number): number {
    return this.rng.int(n);
  }
}
