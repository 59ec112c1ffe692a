/**
 * Replay: make exactly the decisions of a recorded schedule, and when one no longer fits the run
 * (the scenario changed, or the schedule was edited by hand or by a shrinker), stop the run and
 * say which decision, what the schedule expected and what the run allowed (DESIGN.md §3): the run
 * ends with reason 'misfit' and `misfit` holds this record; nothing is thrown.
 */
import { ActionKind, NO_DECISION, action, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { Schedule, decisionToken, decodeDecision, encodeDecision, type Decision } from './schedule.ts';

/** A decision of the schedule that does not fit the run. */
export interface ReplayMisfit {
  /** 1-based number of the decision in the schedule (its length + 1 when the schedule ran out). */
  readonly decision: number;
  /** What the schedule says there; undefined when it ran out. */
  readonly expected: Decision | undefined;
  /** What the run needed: a scheduling decision, the one forced action, or a choice value. */
  readonly needed: 'action' | 'forced' | 'choice';
  /** What the run allowed: the enabled actions, the forced one, or the choice values c0..c(n-1). */
  readonly enabled: readonly Decision[];
  /** One line for a user. */
  readonly message: string;
}

export class ReplayChooser implements Chooser {
  readonly name = 'replay';
  /** The schedule as the machine's codes, run-length: codes[e] repeated counts[e] times. Hot path. */
  private readonly codes: number[];
  private readonly counts: number[];
  private readonly total: number;
  /** Position: entry `e`, `used` of its repeats taken; `at` decisions taken in all. */
  private e = 0;
  private used = 0;
  private at = 0;
  misfit: ReplayMisfit | undefined;

  constructor(schedule: Schedule | string, vcpus = 256) {
    const s = typeof schedule === 'string' ? Schedule.parse(schedule, vcpus) : schedule;
    this.codes = s.entries.map((x) => encodeDecision(x.decision));
    this.counts = s.entries.map((x) => x.count);
    this.total = s.length;
  }

  get stopped(): ReplayMisfit | undefined {
    return this.misfit;
  }

  /** Every recorded decision has been used. */
  get done(): boolean {
    return this.at >= this.total;
  }

  /** Decisions used so far. */
  get position(): number {
    return this.at;
  }

  private peek(): number | undefined {
    return this.e < this.codes.length ? this.codes[this.e] : undefined;
  }

  private advance(): void {
    this.at++;
    if (++this.used >= this.counts[this.e]!) {
      this.e++;
      this.used = 0;
    }
  }

  private stop(needed: ReplayMisfit['needed'], enabled: Decision[], what: string): number {
    const code = this.peek();
    const expected = code === undefined ? undefined : decodeDecision(code);
    const n = this.at + 1;
    const allowed = enabled.map(decisionToken).join(' ');
    const message = expected === undefined
      ? `the schedule ended after ${this.total} decisions, but the run needs another (${what})`
      : needed === 'forced'
        ? `schedule decision ${n} '${decisionToken(expected)}' does not fit: only ${allowed} is possible here`
        : needed === 'choice'
          ? expected.kind === 'choice'
            ? `schedule decision ${n} '${decisionToken(expected)}' is out of range for ${what} (${allowed})`
            : `schedule decision ${n} is '${decisionToken(expected)}', but the run needs ${what} (${allowed})`
          : expected.kind === 'choice'
            ? `schedule decision ${n} is '${decisionToken(expected)}' (a choice), but the run is at a scheduling point (enabled here are ${allowed})`
            : `schedule decision ${n} '${decisionToken(expected)}' does not fit: enabled here are ${allowed}`;
    this.misfit = { decision: n, expected, needed, enabled, message };
    return NO_DECISION;
  }

  next(point: SchedulingPoint): number {
    const d = this.peek();
    if (d !== undefined && d >= 0) {
      for (let i = 0; i < point.count; i++) {
        if (point.actions[i] === d) {
          this.advance();
          return i;
        }
      }
    }
    return this.stop('action', Array.from(point.actions.subarray(0, point.count), decodeDecision), 'a scheduling decision');
  }

  forced(a: number): boolean {
    if (this.peek() === a) {
      this.advance();
      return true;
    }
    this.stop('forced', [decodeDecision(a)], 'a forced step');
    return false;
  }

  continueWith(c: Vcpu): boolean {
    if (this.peek() !== action(c.id, ActionKind.Step)) return false;
    this.advance();
    return true;
  }

  choose(kind: ChoiceKind, n: number): number {
    const d = this.peek();
    if (d !== undefined && d < 0 && -d - 1 < n) {
      this.advance();
      return -d - 1;
    }
    const values = Array.from({ length: n }, (_, v): Decision => ({ kind: 'choice', value: v }));
    return this.stop('choice', values, `a ${kind} choice`);
  }
}
