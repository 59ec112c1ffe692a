/**
 * When a strategy spends a run's budgets of external events (DESIGN.md §3): NMIs, IRQs and host
 * preemptions. Spending a budget the moment it allows is useless for most bugs (the random
 * strategy's median NMI landed at step 431 while v1's NMI handler reaches its patched site near
 * step 3,800), so an event may be
 * - **paced**: each event of the budget falls due at a step drawn uniformly over the expected run
 *   length, so the budget spreads over the whole run;
 * - **conditional**: a due event waits for a state of the machine worth hitting, e.g. "an NMI while
 *   vCPU 1 runs the #BP handler" (a predicate over the vCPU at a scheduling point).
 * Both compose: a paced event that falls due waits for its condition. A descheduled vCPU is
 * resumed after a drawn number of steps (the host's time slice in this step-based world).
 * Deterministic for a seed: every draw comes from the strategy's own Prng.
 */
import { ActionKind, actionCpu, actionKind, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import type { Prng } from './prng.ts';

/** Addresses [from, to). */
export interface AddressRange {
  readonly from: number;
  readonly to: number;
}

/** A state of one vCPU at a scheduling point in which an event is worth delivering to it. */
export interface InjectionCondition {
  /** Only this vCPU (default: any vCPU the budget allows). The event goes to the vCPU in the state. */
  readonly cpu?: number;
  /**
   * Its next instruction, or a kernel service it is running (any frame of its service stack: the
   * #BP handler while it calls text_poke_sync, say), lies in one of these ranges.
   */
  readonly inside: readonly AddressRange[];
  /** And it is handling an NMI with NMIs still blocked (true) or not (false); default: either. */
  readonly nmiBlocked?: boolean;
}

/** How a strategy spends (part of) one budget. */
export interface EventPlan {
  /** How many of the budget's events this plan spends (default: all it can). */
  readonly count?: number;
  /** Spread the plan's events over the expected run length (each due at a uniformly drawn step). */
  readonly pace?: boolean;
  /** Deliver an event (a due one, when paced) only at a point where this holds. */
  readonly when?: InjectionCondition;
}

/**
 * Plans per budget; a budget without a plan is left to the strategy's own rule. Several plans
 * share a budget in order, e.g. NMIs `[{ pace: true, count: 6 }, { when: inside the #BP handler }]`:
 * six anywhere, the rest where the first ones made an NMI handler meet an INT3.
 */
export interface InjectionOptions {
  readonly nmi?: EventPlan | readonly EventPlan[];
  readonly irq?: EventPlan | readonly EventPlan[];
  readonly preempt?: EventPlan | readonly EventPlan[];
  /** Mean steps a vCPU descheduled by a plan stays off before the host resumes it (default: a tenth of the run length). */
  readonly preemptFor?: number;
}

/** A plan as it is being spent. */
interface PlanState {
  readonly plan: EventPlan;
  /** Steps at which its paced events fall due (drawn at the first point that sees the budget). */
  due: number[] | undefined;
  delivered: number;
}

/** The budgeted kinds, in the order their due times are kept. */
const EVENT_KINDS = [ActionKind.Nmi, ActionKind.Irq, ActionKind.Preempt] as const;
type EventKind = (typeof EVENT_KINDS)[number];

function remaining(point: SchedulingPoint, kind: EventKind): number {
  return kind === ActionKind.Nmi ? point.budget.nmis : kind === ActionKind.Irq ? point.budget.irqs : point.budget.preemptions;
}

function inRanges(ranges: readonly AddressRange[], a: number): boolean {
  for (const r of ranges) if (a >= r.from && a < r.to) return true;
  return false;
}

/** Does vCPU `c` satisfy `cond`? */
export function conditionHolds(cond: InjectionCondition, c: Vcpu): boolean {
  if (cond.cpu !== undefined && c.id !== cond.cpu) return false;
  if (cond.nmiBlocked !== undefined && c.nmiBlocked !== cond.nmiBlocked) return false;
  if (inRanges(cond.inside, c.rip)) return true;
  for (const f of c.serviceFrames) if (inRanges(cond.inside, f.address)) return true;
  return false;
}

/** An event of this kind would change nothing on `c` now (one NMI latches; an IRQ already waits). */
function alreadyPending(kind: EventKind, c: Vcpu): boolean {
  return kind === ActionKind.Nmi ? c.nmiPending : kind === ActionKind.Irq ? c.pendingIrqs.length > 0 : false;
}

export class Injector {
  /** Per kind: its plans (undefined: the strategy's own rule). */
  private readonly plans: (PlanState[] | undefined)[] = [];
  /** Step at which each vCPU the injector descheduled is resumed. */
  private readonly resumeAt = new Map<number, number>();
  private readonly duration: number;
  private readonly candidates = new Int32Array(2048);

  /**
   * `length`: expected run length in machine steps. `paceByDefault`: budgets without a plan are
   * paced by the injector (PCT) rather than left to the strategy (random's weights).
   */
  constructor(
    private readonly rng: Prng,
    opts: InjectionOptions,
    private readonly length: number,
    paceByDefault: boolean,
  ) {
    const byDefault = paceByDefault ? { pace: true } : undefined;
    const states = (p: EventPlan | readonly EventPlan[] | undefined): PlanState[] | undefined => {
      const list = p === undefined ? (byDefault ? [byDefault] : []) : Array.isArray(p) ? (p as readonly EventPlan[]) : [p as EventPlan];
      return list.length === 0 ? undefined : list.map((plan) => ({ plan, due: undefined, delivered: 0 }));
    };
    this.plans[ActionKind.Nmi] = states(opts.nmi);
    this.plans[ActionKind.Irq] = states(opts.irq);
    this.plans[ActionKind.Preempt] = states(opts.preempt);
    this.duration = Math.max(1, Math.round(opts.preemptFor ?? length / 10));
  }

  /** Does the injector decide actions of this kind (else the strategy does)? Resume follows Preempt. */
  owns(kind: ActionKind): boolean {
    if (kind === ActionKind.Resume) return this.plans[ActionKind.Preempt] !== undefined;
    return kind >= ActionKind.Nmi && this.plans[kind] !== undefined;
  }

  /** The event action to take at this point (index into point.actions), or -1: the strategy chooses. */
  pick(point: SchedulingPoint): number {
    const b = point.budget;
    if (b.nmis === 0 && b.irqs === 0 && b.preemptions === 0 && this.resumeAt.size === 0) return -1;
    const resume = this.dueResume(point);
    if (resume >= 0) return resume;
    for (const kind of EVENT_KINDS) {
      const plans = this.plans[kind];
      if (plans === undefined || remaining(point, kind) === 0) continue;
      for (const st of plans) {
        if (!this.isDue(point, kind, st)) continue;
        const i = this.target(point, kind, st.plan);
        if (i < 0) continue;
        st.delivered++;
        if (kind === ActionKind.Preempt) this.resumeAt.set(actionCpu(point.actions[i]!), point.step + 1 + this.rng.int(2 * this.duration));
        return i;
      }
    }
    return -1;
  }

  /**
   * Only event actions are enabled (every vCPU halted or descheduled): resume the vCPU due first,
   * or take the first action.
   */
  fallback(point: SchedulingPoint): number {
    let best = -1, bestAt = Infinity;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      if (actionKind(a) !== ActionKind.Resume) continue;
      const at = this.resumeAt.get(actionCpu(a)) ?? 0;
      if (at < bestAt) { bestAt = at; best = i; }
    }
    if (best >= 0) this.resumeAt.delete(actionCpu(point.actions[best]!));
    return best >= 0 ? best : 0;
  }

  /**
   * How many steps from this point `pick` is sure to leave to the strategy, were nothing else to
   * change (a burst may run that long): up to the first resumption or paced event due; 1 when an
   * event is due but found no target, or a plan is not paced (its condition is tested at every
   * point). Call after `pick` at the same point: plans' due steps are drawn there.
   */
  quietSteps(point: SchedulingPoint): number {
    let at = Infinity;
    for (const step of this.resumeAt.values()) at = Math.min(at, step);
    for (const kind of EVENT_KINDS) {
      const plans = this.plans[kind];
      if (plans === undefined || remaining(point, kind) === 0) continue;
      for (const st of plans) {
        if (st.delivered >= (st.plan.count ?? Infinity)) continue;
        if (st.plan.pace !== true || st.due === undefined) return 1;
        if (st.delivered < st.due.length) at = Math.min(at, st.due[st.delivered]!);
      }
    }
    return at === Infinity ? Infinity : Math.max(1, at - point.step);
  }

  private dueResume(point: SchedulingPoint): number {
    if (this.resumeAt.size === 0) return -1;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      if (actionKind(a) !== ActionKind.Resume) continue;
      const cpu = actionCpu(a);
      const at = this.resumeAt.get(cpu);
      if (at !== undefined && at <= point.step) {
        this.resumeAt.delete(cpu);
        return i;
      }
    }
    return -1;
  }

  private isDue(point: SchedulingPoint, kind: EventKind, st: PlanState): boolean {
    const count = st.plan.count ?? Infinity;
    if (st.delivered >= count) return false;
    if (st.plan.pace !== true) return true;
    if (st.due === undefined) {
      // Drawn once, at the first point that sees this budget: its events spread over the rest of the run.
      const from = point.step, span = Math.max(1, this.length - from);
      st.due = Array.from({ length: Math.min(count, remaining(point, kind)) }, () => from + this.rng.int(span)).sort((x, y) => x - y);
    }
    return st.delivered < st.due.length && st.due[st.delivered]! <= point.step;
  }

  /** A uniformly drawn enabled action of `kind` whose vCPU meets the plan's condition, or -1. */
  private target(point: SchedulingPoint, kind: EventKind, plan: EventPlan): number {
    let n = 0;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      if (actionKind(a) !== kind) continue;
      const c = point.vcpus[actionCpu(a)]!;
      if (alreadyPending(kind, c)) continue;
      if (plan.when !== undefined && !conditionHolds(plan.when, c)) continue;
      this.candidates[n++] = i;
    }
    if (n === 0) return -1;
    return this.candidates[n === 1 ? 0 : this.rng.int(n)]!;
  }
}
