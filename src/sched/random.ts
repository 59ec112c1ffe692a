/**
 * Seeded random strategy for bug finding: every enabled action is possible, weighted so that runs
 * make progress. A spinning vCPU (PAUSE in its last few instructions) is de-prioritised, as
 * shuttle's scheduler does with `is_yielding`, and injections are rare so a budget spreads out.
 * A budget given a plan (`inject`: paced, conditional; injection.ts) is spent by that plan instead
 * of by weight.
 */
import { ActionKind, actionKind, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import { Injector, type InjectionOptions } from './injection.ts';
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
  }

  next(point: SchedulingPoint): number {
    if (this.injector !== undefined) {
      const e = this.injector.pick(point);
      if (e >= 0) return e;
    }
    let total = 0;
    for (let i = 0; i < point.count; i++) total += this.weight(point, i);
    if (total === 0) return this.injector?.fallback(point) ?? 0;
    // The second pass recomputes each weight (the same value, so the same decision) instead of
    // keeping them in a per-chooser table: a chooser per execution allocated 16 KiB (issue 12).
    let r = this.rng.float() * total;
    for (let i = 0; i < point.count; i++) {
      r -= this.weight(point, i);
      if (r < 0) return i;
    }
    return point.count - 1;
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
