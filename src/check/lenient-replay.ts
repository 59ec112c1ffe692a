/**
 * Replay for the shrinker (src/check/shrink.ts): follow a candidate schedule where it fits and
 * skip what does not (a step of a vCPU that is halted now, a drain of an empty buffer, a choice
 * where none is asked), then finish without preempting: the vCPU that ran last runs on unless it
 * halts or spins on PAUSE, stores drain only when nothing can step, nothing is injected. The run's
 * own decision log is the exact schedule of what happened, which the strict replay reproduces.
 */
import { ActionKind, action, actionCpu, actionKind, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';

export class LenientReplay implements Chooser {
  readonly name = 'replay';
  private at = 0;
  private last = -1;

  constructor(private readonly decisions: readonly number[]) {}

  private indexOf(point: SchedulingPoint, a: number): number {
    for (let i = 0; i < point.count; i++) if (point.actions[i] === a) return i;
    return -1;
  }

  /** The non-preemptive continuation once the candidate is used up. */
  private fallback(point: SchedulingPoint): number {
    const vs = point.vcpus;
    const stay = this.last >= 0 ? this.indexOf(point, action(this.last, ActionKind.Step)) : -1;
    if (stay >= 0 && !vs[this.last]!.spinning) return stay;
    let spinner = -1;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      if (actionKind(a) !== ActionKind.Step || actionCpu(a) === this.last) continue;
      if (!vs[actionCpu(a)]!.spinning) return i;
      if (spinner < 0) spinner = i;
    }
    if (stay >= 0 && spinner < 0) {
      // Only the spinner itself can step: let a store drain first, it may be what the spin waits for.
      for (let i = 0; i < point.count; i++) if (actionKind(point.actions[i]!) === ActionKind.Drain) return i;
      return stay;
    }
    if (spinner >= 0) return spinner;
    for (let i = 0; i < point.count; i++) if (actionKind(point.actions[i]!) === ActionKind.Drain) return i;
    return stay >= 0 ? stay : 0;
  }

  next(point: SchedulingPoint): number {
    let i = -1;
    while (this.at < this.decisions.length) {
      const d = this.decisions[this.at++]!;
      if (d < 0) continue;
      i = this.indexOf(point, d);
      if (i >= 0) break;
    }
    if (i < 0) i = this.fallback(point);
    const a = point.actions[i]!;
    if (actionKind(a) === ActionKind.Step) this.last = actionCpu(a);
    return i;
  }

  forced(a: number): void {
    if (this.decisions[this.at] === a) this.at++;
    if (actionKind(a) === ActionKind.Step) this.last = actionCpu(a);
  }

  continueWith(c: Vcpu): boolean {
    if (this.at < this.decisions.length) {
      if (this.decisions[this.at] !== action(c.id, ActionKind.Step)) return false;
      this.at++;
      return true;
    }
    // Used up: the fallback would pick this vCPU again unless it spins (a store to drain is not a reason to switch).
    return !c.spinning;
  }

  choose(_kind: ChoiceKind, n: number): number {
    const d = this.decisions[this.at];
    if (d !== undefined && d < 0 && -d - 1 < n) { this.at++; return -d - 1; }
    return 0;
  }
}
