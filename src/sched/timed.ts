/**
 * Timed strategy: discrete-event simulation. Each vCPU has a clock in cycles; the earliest enabled
 * action happens next; every action advances its vCPU's clock by its cost from the cost model
 * (src/sched/cost-model.ts), with seeded jitter so vCPUs do not run in lock-step. A buffered store
 * drains STORE_DRAIN_LATENCY cycles after issue. At a legal INT3 first-byte fetch the old
 * instruction runs (DESIGN.md §2: old-first for the timed mode).
 */
import { ACTION_KINDS, ActionKind, action, actionCpu, actionKind, type Chooser, type ChoiceKind, type CostClass, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import { costTable, STORE_DRAIN_LATENCY } from './cost-model.ts';
import { Prng } from './prng.ts';
import { TimeHeap } from './time-heap.ts';
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

  /** Time of the second-earliest action at the last decision: the chosen vCPU may run until then. */
  private horizon = 0;
  /** vCPUs by the raw time of their earliest step or drain (before clamping to `now`). */
  private heap: TimeHeap | undefined;
  /** Per vCPU: its enabled action kinds at the last point, one bit per ActionKind. */
  private kinds = new Uint8Array(0);
  /** Enabled NMI, IRQ, preempt and resume actions: they all fall due at `nextInjection`. */
  private injections = 0;
  /** Scratch: vCPUs due, then the actions due. */
  private dueVcpus = new Int32Array(0);
  private due = new Int32Array(0);

  private timeOf(a: number, vcpus: readonly Vcpu[]): number {
    const c = vcpus[actionCpu(a)]!;
    switch (actionKind(a)) {
      case ActionKind.Step: return Math.max(c.time, this.now);
      case ActionKind.Drain: return Math.max(TimedChooser.drainTime(c), this.now);
      default: return Math.max(this.nextInjection, this.now);
    }
  }

  /**
   * The earliest action by a scan of every action; equal times are broken by a seeded draw at
   * each action that equals the earliest seen so far, in action order.
   */
  private scan(point: SchedulingPoint): number {
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

  /** Raw time of `c`'s drain (its oldest store's issue plus the latency). */
  private static drainTime(c: Vcpu): number {
    return c.storeBuffer[0]!.time + STORE_DRAIN_LATENCY.cycles;
  }

  /** Read vCPU `id`'s entries of the point (from index `at`) into `kinds` and the heap; returns the index after them. */
  private refresh(point: SchedulingPoint, id: number, at: number): number {
    const acts = point.actions;
    const end = (id + 1) * ACTION_KINDS;
    let bits = 0;
    for (; at < point.count && acts[at]! < end; at++) bits |= 1 << actionKind(acts[at]!);
    this.setKinds(point.vcpus[id]!, bits);
    return at;
  }

  /** vCPU `c`'s enabled kinds are `bits`: into `kinds`, the injection count and the heap. */
  private setKinds(c: Vcpu, bits: number): void {
    const id = c.id;
    this.injections += popInjections(bits) - popInjections(this.kinds[id]!);
    this.kinds[id] = bits;
    const step = (bits & STEP_BIT) !== 0 ? c.time : Infinity;
    const drain = (bits & DRAIN_BIT) !== 0 ? TimedChooser.drainTime(c) : Infinity;
    this.heap!.set(id, Math.min(step, drain));
  }

  /**
   * Bring the heap up to this point: only the one vCPU that acted changed since the last point
   * (`point.changed`), or rebuild it. O(log n) per step instead of a scan of every action.
   */
  private sync(point: SchedulingPoint): void {
    const n = point.vcpus.length;
    if (this.heap === undefined || this.kinds.length !== n) {
      // Sized for this machine on first use (a chooser is made per execution).
      this.heap = new TimeHeap(n);
      this.kinds = new Uint8Array(n);
      this.dueVcpus = new Int32Array(n);
      this.due = new Int32Array(n * ACTION_KINDS);
    }
    if (point.changed < 0) {
      this.heap.clear();
      this.kinds.fill(0, 0, n);
      this.injections = 0;
      let at = 0;
      for (let id = 0; id < n; id++) at = this.refresh(point, id, at);
      return;
    }
    const id = point.changed;
    this.refresh(point, id, firstOf(point, id * ACTION_KINDS));
  }

  next(point: SchedulingPoint): number {
    this.sync(point);
    const heap = this.heap!;
    const top = heap.top();
    const tInject = this.injections > 0 ? this.nextInjection : Infinity;
    const raw = Math.min(top >= 0 ? heap.time[top]! : Infinity, tInject);
    // Where times are equal (behind `now`, several injections due at one time, no jitter), the
    // scan decides, with its tie-break draws: those runs keep the stream every timed run had
    // before the heap. So does a run with a host scheduler, which rebuilds every point anyway.
    // Elsewhere the earliest action is unique and the heap finds it at O(log n).
    if (raw <= this.now || this.injections > 1 || this.jitter === 0 || this.host !== undefined) return this.scan(point);
    const bestT = raw;
    // Every action due at bestT (several when raw times are equal or behind `now`), in action
    // order; one seeded draw among them.
    let n = 0;
    const due = this.due;
    const vs = this.dueVcpus;
    const m = heap.atMost(bestT, vs, 0);
    for (let j = 0; j < m; j++) {
      const id = vs[j]!;
      const c = point.vcpus[id]!, bits = this.kinds[id]!;
      if ((bits & STEP_BIT) !== 0 && c.time <= bestT) due[n++] = action(id, ActionKind.Step);
      if ((bits & DRAIN_BIT) !== 0 && TimedChooser.drainTime(c) <= bestT) due[n++] = action(id, ActionKind.Drain);
    }
    if (tInject <= bestT) {
      for (let i = 0; i < point.count; i++) if (actionKind(point.actions[i]!) >= ActionKind.Nmi) due[n++] = point.actions[i]!;
    }
    if (n > 1) due.subarray(0, n).sort();
    const a = n === 0 ? point.actions[0]! : due[n === 1 ? 0 : this.rng.int(n)]!; // seeded tie-break
    const cpu = actionCpu(a), kind = actionKind(a);
    const c = point.vcpus[cpu]!;
    // The horizon: the earliest of every other action.
    let other: number;
    if (kind <= ActionKind.Drain) {
      const bits = this.kinds[cpu]!;
      const own = kind === ActionKind.Step ? ((bits & DRAIN_BIT) !== 0 ? TimedChooser.drainTime(c) : Infinity) : (bits & STEP_BIT) !== 0 ? c.time : Infinity;
      other = Math.min(heap.earliestBut(cpu), own, tInject);
    } else {
      other = Math.min(top >= 0 ? heap.time[top]! : Infinity, this.injections > 1 ? tInject : Infinity);
    }
    this.horizon = Math.max(other, this.now);
    if (kind >= ActionKind.Nmi) this.nextInjection = this.arrival(bestT);
    if (kind === ActionKind.Step && c.time < bestT) c.time = bestT; // a woken vCPU resumes now
    this.now = bestT;
    return firstOf(point, a);
  }

  /**
   * `next` at a point where only `c` acted since the last one, when its own step or drain is the
   * one action due first: the same sync, the same horizon and clock, no draw (the earliest is
   * unique). Anything else (a tie, an action of another vCPU or an injection due first, the cases
   * `next` leaves to the scan) returns -1 and changes nothing: `next` syncs at the listed point.
   */
  pointOf(c: Vcpu, kinds: number): number {
    if (this.heap === undefined || c.id >= this.kinds.length || this.jitter === 0 || this.host !== undefined) return -1;
    // The point as `next` would sync it, read before it is written (`earliestBut` ignores c's
    // own stale entry): with many vCPUs another one is usually due first, and `next` syncs then.
    const injections = this.injections + popInjections(kinds) - popInjections(this.kinds[c.id]!);
    if (injections > 1) return -1;
    const step = (kinds & STEP_BIT) !== 0 ? c.time : Infinity;
    const drain = (kinds & DRAIN_BIT) !== 0 ? TimedChooser.drainTime(c) : Infinity;
    const own = Math.min(step, drain);
    const others = Math.min(this.heap.earliestBut(c.id), injections > 0 ? this.nextInjection : Infinity);
    if (own <= this.now || others <= own || step === drain) return -1;
    this.setKinds(c, kinds);
    this.horizon = Math.max(Math.min(others, step < drain ? drain : step), this.now);
    this.now = own;
    return step < drain ? ActionKind.Step : ActionKind.Drain;
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

const STEP_BIT = 1 << ActionKind.Step;
const DRAIN_BIT = 1 << ActionKind.Drain;

/** How many of the kinds in `bits` are injection kinds (NMI, IRQ, preempt, resume). */
function popInjections(bits: number): number {
  let n = 0;
  for (let b = bits >>> ActionKind.Nmi; b !== 0; b &= b - 1) n++;
  return n;
}

/** Index of the first action code >= `code` in the point (the actions are in ascending order). */
function firstOf(point: SchedulingPoint, code: number): number {
  let lo = 0, hi = point.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (point.actions[mid]! < code) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
