/**
 * Seeded random strategy for bug finding: every enabled action is possible, weighted so that runs
 * make progress. A spinning vCPU (PAUSE in its last few instructions) is de-prioritised, as
 * shuttle's scheduler does with `is_yielding`, and injections are rare so a budget spreads out.
 */
import { ActionKind, actionKind, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import { Prng } from './prng.ts';

export interface RandomWeights {
  step: number;
  spinningStep: number;
  drain: number;
  inject: number;
}

export const DEFAULT_WEIGHTS: RandomWeights = { step: 1, spinningStep: 0.1, drain: 0.3, inject: 0.002 };

export class RandomChooser implements Chooser {
  readonly name = 'random';
  private readonly rng: Prng;
  private readonly weights: Float64Array = new Float64Array(1024);

  constructor(
    readonly seed: number,
    private readonly w: RandomWeights = DEFAULT_WEIGHTS,
  ) {
    this.rng = new Prng(seed);
  }

  next(point: SchedulingPoint): number {
    let total = 0;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      const k = actionKind(a);
      let wt: number;
      if (k === ActionKind.Step) wt = point.vcpus[a >> 2]!.spinning ? this.w.spinningStep : this.w.step;
      else if (k === ActionKind.Drain) wt = this.w.drain;
      else wt = this.w.inject;
      this.weights[i] = wt;
      total += wt;
    }
    let r = this.rng.float() * total;
    for (let i = 0; i < point.count; i++) {
      r -= this.weights[i]!;
      if (r < 0) return i;
    }
    return point.count - 1;
  }

  choose(_kind: ChoiceKind, n: number): number {
    return this.rng.int(n);
  }
}
