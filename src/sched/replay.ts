/** Replay: make exactly the decisions of a recorded schedule string, and say where it stops fitting. */
import { ActionKind, action, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { ScheduleError, decisionToken, parseSchedule } from './schedule.ts';

export class ReplayChooser implements Chooser {
  readonly name = 'replay';
  private readonly decisions: number[];
  private at = 0;

  constructor(schedule: string | number[], vcpus = 256) {
    this.decisions = typeof schedule === 'string' ? parseSchedule(schedule, vcpus) : schedule.slice();
  }

  /** Every recorded decision has been used. */
  get done(): boolean {
    return this.at >= this.decisions.length;
  }

  get position(): number {
    return this.at;
  }

  private take(expect: string): number {
    if (this.at >= this.decisions.length) {
      throw new ScheduleError(`the schedule ended after ${this.decisions.length} decisions, but the run needs another (${expect})`);
    }
    return this.decisions[this.at++]!;
  }

  next(point: SchedulingPoint): number {
    const d = this.take('a scheduling decision');
    if (d < 0) throw new ScheduleError(`schedule decision ${this.at} is '${decisionToken(d)}' (a choice), but the run is at a scheduling point`);
    for (let i = 0; i < point.count; i++) if (point.actions[i] === d) return i;
    const enabled = Array.from(point.actions.subarray(0, point.count), decisionToken).join(' ');
    throw new ScheduleError(`schedule decision ${this.at} '${decisionToken(d)}' does not fit: enabled here are ${enabled}`);
  }

  forced(a: number): void {
    const d = this.take('a forced step');
    if (d !== a) throw new ScheduleError(`schedule decision ${this.at} '${decisionToken(d)}' does not fit: only ${decisionToken(a)} is possible here`);
  }

  continueWith(c: Vcpu): boolean {
    const step = action(c.id, ActionKind.Step);
    if (this.decisions[this.at] !== step) return false;
    this.at++;
    return true;
  }

  choose(kind: ChoiceKind, n: number): number {
    const d = this.take(`a ${kind} choice`);
    if (d >= 0) throw new ScheduleError(`schedule decision ${this.at} is '${decisionToken(d)}', but the run needs a ${kind} choice (c0..c${n - 1})`);
    const v = -d - 1;
    if (v >= n) throw new ScheduleError(`schedule decision ${this.at} 'c${v}' is out of range for a ${kind} choice (c0..c${n - 1})`);
    return v;
  }
}
