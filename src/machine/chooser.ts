/**
 * The Chooser: the only source of non-determinism in a run (DESIGN.md §3). At every scheduling
 * point the machine lists the enabled actions (steps, drains, and while the run's budgets last:
 * NMIs, IRQs, host preemptions, plus the resumption of every vCPU a preemption took off) and asks
 * the Chooser which happens next; any other bounded choice (old or new bytes at a legal
 * cross-modifying fetch) goes through `choose`.
 * Strategies live in src/sched/ (one per file); this interface sits in the machine layer only
 * because the machine's run loop calls it.
 */
import type { Vcpu } from './vcpu.ts';

/** What an action does; an action is encoded as `cpu * 8 + kind`. */
export const enum ActionKind {
  /** Execute one instruction (or deliver a pending interrupt) on the vCPU. */
  Step = 0,
  /** Commit the oldest store in the vCPU's store buffer to memory. */
  Drain = 1,
  /** Inject an NMI into the vCPU (from the run's NMI budget). */
  Nmi = 2,
  /** Inject a fixed-vector interrupt into the vCPU (from the run's IRQ budget). */
  Irq = 3,
  /** The host deschedules the vCPU (from the run's preemption budget): a VM exit, steal time's `preempted` set. */
  Preempt = 4,
  /** The host runs a vCPU it descheduled by a Preempt decision again. */
  Resume = 5,
}
/** Kinds per vCPU in the action encoding (3 bits). */
export const ACTION_KINDS = 8;

export function action(cpu: number, kind: ActionKind): number {
  return cpu * 8 + kind;
}
export function actionCpu(a: number): number {
  return a >> 3;
}
export function actionKind(a: number): ActionKind {
  return (a & 7) as ActionKind;
}

/** Choices other than "what happens next". */
export type ChoiceKind = 'cmc-old-new';

/** How expensive an action was, for time-based strategies (costs live in src/sched/cost-model.ts). */
export const enum CostClass {
  Plain = 0,
  Load,
  Store,
  Locked,
  Branch,
  Fence,
  Serializing,
  Pause,
  Halt,
  Interrupt,
  Hypercall,
  Drain,
  Inject,
}
export const COST_CLASS_COUNT = 13;

export interface SchedulingPoint {
  /** Enabled actions, `count` of them, in a deterministic order (by vCPU, then kind). */
  readonly actions: Int32Array;
  readonly count: number;
  readonly vcpus: readonly Vcpu[];
  /** Actions taken so far in this run. */
  readonly step: number;
  /**
   * Since the chooser's last point in this run, only this vCPU acted and only its actions may
   * differ (its entries, its clock, its store buffer); -1: anything may have changed. Lets a
   * strategy keep its own ordering incrementally (the timed strategy's heap) instead of scanning.
   */
  readonly changed: number;
  /** What is left of the run's budgets (NMIs, IRQs, host preemptions), for strategies that pace them. */
  readonly budget: RemainingBudget;
}

export interface RemainingBudget {
  readonly nmis: number;
  readonly irqs: number;
  readonly preemptions: number;
}

/**
 * What `next` or `choose` returns when the strategy cannot decide here (a replayed schedule that
 * no longer fits the run): the run stops with reason 'misfit' and `RunResult.misfit` = `stopped`.
 */
export const NO_DECISION = -1;

/** Why a strategy stopped the run; a strategy's own record extends it (src/sched/replay.ts's ReplayMisfit). */
export interface ChooserStop {
  readonly message: string;
}

export interface Chooser {
  readonly name: string;
  /** Index (0..count-1) of the action to take, or NO_DECISION. */
  next(point: SchedulingPoint): number;
  /** A value in 0..n-1 for a non-scheduling choice, or NO_DECISION. */
  choose(kind: ChoiceKind, n: number): number;
  /** Set when the strategy returned NO_DECISION (or refused a forced action): why. */
  readonly stopped?: ChooserStop | undefined;
  /** Told after every action what it cost; time-based strategies advance clocks here. */
  observe?(vcpu: Vcpu, kind: ActionKind, cost: CostClass): void;
  /**
   * Told the action taken at a point with a single enabled action (no decision to make). Returning
   * false stops the run before it (reason 'misfit': a replay whose schedule says otherwise).
   */
  forced?(action: number): boolean | void;
  /**
   * After a step of `vcpu`, may it step again without a new scheduling point? Only asked when
   * nothing else changed (no vCPU woken, no halt); answering true must mean `next` would have
   * picked that step. Lets strategies run bursts at full speed; absent = always decide.
   */
  continueWith?(vcpu: Vcpu): boolean;
  /**
   * After `next` chose a step of `vcpu`: how many steps (>= 1, that one included) it takes before
   * the next scheduling point, decided up front so the machine runs them without a point per
   * instruction. The machine ends a burst early, at a new point, when anything a strategy weighs
   * may have changed: another vCPU's run state (an interrupt, an IPI, a kick), the vCPU halting or
   * being descheduled, its store buffer becoming empty or non-empty (its Drain action appearing or
   * going), or its `spinning` flag. So a strategy that returns k must mean: were nothing to change,
   * `next` at each of the k-1 skipped points would have picked this step again (PCT), or the k-1
   * repeats are drawn from the distribution per-point choices would give (random's geometric run
   * length). A forced step (the only enabled action) runs on the same way without asking: it is no
   * decision. A strategy implements `burst` or `continueWith`, not both.
   */
  burst?(vcpu: Vcpu): number;
  /**
   * A scheduling point at which, since the strategy's last point in this run, only `vcpu` acted
   * (its enabled kinds are now `kinds`, a bit per ActionKind) and more than one action is
   * enabled. When the strategy can tell without the point's list that `next` would pick `vcpu`'s
   * own Step or Drain, it takes that decision exactly as `next` would (the same state after) and
   * returns its kind; else -1, and the machine lists the point and asks `next`. Lets a compiled
   * block run on past its own vCPU's drains (under the timed strategy a store drains 20 cycles
   * after it issues). Only for strategies with `continueWith`.
   */
  pointOf?(vcpu: Vcpu, kinds: number): number;
  /**
   * Nothing is enabled (every vCPU halted or descheduled, no store buffered). A strategy that owns
   * time may advance it (the host rotates vCPUs, a timer fires) and return true to try again.
   */
  idle?(vcpus: readonly Vcpu[]): boolean;
  /**
   * True when the strategy changes vCPUs' run state itself (a host scheduler deschedules and runs
   * vCPUs from `observe`): the machine then rebuilds the whole enabled set at every point instead
   * of only the entries of the vCPU that acted.
   */
  readonly changesRunState?: boolean;
}

/** The default: deterministic, run the lowest-numbered runnable vCPU, drain stores eagerly. */
export class FirstEnabled implements Chooser {
  readonly name = 'first';
  next(point: SchedulingPoint): number {
    // Prefer draining (sequentially consistent behaviour) before stepping.
    for (let i = 0; i < point.count; i++) if (actionKind(point.actions[i]!) === ActionKind.Drain) return i;
    for (let i = 0; i < point.count; i++) if (actionKind(point.actions[i]!) === ActionKind.Step) return i;
    return 0;
  }
  choose(): number {
    return 0;
  }
  continueWith(vcpu: Vcpu): boolean {
    // The vCPU was the lowest runnable one with no store to drain; it stays so until it stores,
    // halts, or another vCPU wakes (the machine checks those two).
    return vcpu.storeBuffer.length === 0;
  }
}
