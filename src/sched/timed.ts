/**
 * Timed strategy: discrete-event simulation. Each vCPU has a clock in cycles; the earliest enabled
 * action happens next; every action advances its vCPU's clock by its cost from the cost model
 * (src/sched/cost-model.ts), with seeded jitter so vCPUs do not run in lock-step. A buffered store
 * drains STORE_DRAIN_LATENCY cycles after issue. At a legal INT3 first-byte fetch the old
 * instruction runs (DESIGN.md §2: old-first for the timed mode).
 */
import { ActionKind, actionCpu, actionKind, type Chooser, type ChoiceKind, type CostClass, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { costTable, STORE_DRAIN_LATENCY } from './cost-model.ts';
import { Prng } from './prng.ts';
import type { HostScheduler } from '../host/scheduler.ts';
import { CostClass as Cost } from '../machine/chooser.ts';

export interface TimedOptions {
  seed: number;
  /** Relative jitter on every cost, 0..1 (default 0.1). */
  jitter?: number;
  /** Mean cycles between injected NMIs/IRQs when the run has an injection budget (default 20,000). */
  injectEvery?: number;
  /** The host's CPU scheduler, when vCPUs share physical CPUs (src/host/scheduler.ts). */
  host?: HostScheduler;
}

export class TimedChooser implements Chooser {
  readonly name = 'timed';
  private readonly rng: Prng;
  private readonly costs = costTable();
  private readonly jitter: number;
  private readonly injectEvery: number;
  /** Simulated time of the latest action. */
  now = 0;
  private nextInjection: number;
  private readonly host: HostScheduler | undefined;
  /** The host scheduler sets vCPUs' `preempted` from observe() and idle(). */
  readonly changesRunState: boolean;

  constructor(opts: TimedOptions) {
    this.host = opts.host;
    this.changesRunState = opts.host !== undefined;
    this.rng = new Prng(opts.seed);
    this.jitter = opts.jitter ?? 0.1;
    this.injectEvery = opts.injectEvery ?? 20_000;
    this.nextInjection = this.arrival(0);
  }

  private arrival(from: number): number {
    // Exponential inter-arrival times: a Poisson process of external events.
    return from - Math.log(1 - this.rng.float()) * this.injectEvery;
  }

  private timeOf(a: number, vcpus: readonly Vcpu[]): number {
    const c = vcpus[actionCpu(a)]!;
    switch (actionKind(a)) {
      case ActionKind.Step: return Math.max(c.time, this.now);
      case ActionKind.Drain: return Math.max(c.storeBuffer[0]!.time + STORE_DRAIN_LATENCY.cycles, this.now);
      default: return Math.max(this.nextInjection, this.now);
    }
  }

  /** Time of the second-earliest action at the last decision: the chosen vCPU may run until then. */
  private horizon = 0;

  next(point: SchedulingPoint): number {
    let best = 0;
    let bestT = Infinity;
    let second = Infinity;
    let ties = 0;
    for (let i = 0; i < point.count; i++) {
      const t = this.timeOf(point.actions[i]!, point.vcpus);
      if (t < bestT) { second = bestT; bestT = t; best = i; ties = 1; }
      else if (t === bestT) {
        second = t;
        if (this.rng.int(++ties) === 0) best = i; // seeded tie-break
      } else if (t < second) second = t;
    }
    this.horizon = second;
    const a = point.actions[best]!;
    if (actionKind(a) >= ActionKind.Nmi) this.nextInjection = this.arrival(bestT);
    const c = point.vcpus[actionCpu(a)]!;
    if (actionKind(a) === ActionKind.Step && c.time < bestT) c.time = bestT; // a woken vCPU resumes now
    this.now = bestT;
    return best;
  }

  choose(_kind: ChoiceKind, _n: number): number {
    return 0;
  }

  /** Keep stepping while this vCPU is still the earliest: before the horizon and its own next drain. */
  continueWith(c: Vcpu): boolean {
    if (c.time >= this.horizon) return false;
    const sb = c.storeBuffer;
    if (sb.length > 0 && sb[0]!.time + STORE_DRAIN_LATENCY.cycles <= c.time) return false;
    this.now = c.time;
    return true;
  }

  observe(c: Vcpu, kind: ActionKind, cost: CostClass): void {
    const host = this.host;
    if (kind !== ActionKind.Step) {
      if (host !== undefined && kind !== ActionKind.Drain) host.sync(this.now);
      return;
    }
    const base = this.costs[cost]!;
    const start = c.time;
    c.time += this.jitter > 0 ? base * (1 + this.jitter * (this.rng.float() - 0.5)) : base;
    if (host !== undefined && cost === Cost.Pause && host.pause(c.id, start, c.time)) return;
    // Tell the host when something it schedules by may have changed: a halt, a kick (hypercall), an
    // interrupt, an IPI (sent by a serializing ICR write: a halted target becomes runnable), a slice used up.
    if (host !== undefined && (cost === Cost.Halt || cost === Cost.Hypercall || cost === Cost.Interrupt || cost === Cost.Serializing || host.sliceOver(c.id, c.time))) {
      host.sync(Math.max(this.now, c.time));
    }
  }

  /** Everything is halted or descheduled: let the host catch up (it may run a woken vCPU). */
  idle(vcpus: readonly Vcpu[]): boolean {
    const host = this.host;
    if (host === undefined) return false;
    host.sync(this.now);
    return vcpus.some((c) => !c.preempted && (!c.halted || c.pendingIrqs.length > 0 || c.nmiPending));
  }
}
