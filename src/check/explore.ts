/**
 * The exploration driver (DESIGN.md §3, §6): the one loop every sweep uses — `pvpatch check`,
 * `run --seeds`, the benches. It runs a Subject's executions under a strategy, by index (a seeded
 * strategy runs execution i with seed base + i, so any subset of indices — a worker's chunk, a
 * shard — runs exactly as it would in one process), and aggregates them (src/check/exploration.ts).
 *
 * Strategies come in three shapes:
 * - seeded (random, PCT): executions are independent, one chooser per seed; these split over
 *   workers and shards;
 * - replay: one execution under a recorded schedule;
 * - exhaustive (DPOR): the strategy owns the loop, because which schedule runs next depends on the
 *   ones before; it hands each execution to `visit` and says at the end whether it explored every
 *   interleaving within its bound — only then can the verdict be `exhausted`.
 */
import type { Chooser } from '../machine/chooser.ts';
import { formatSchedule, type Schedule } from '../sched/schedule.ts';
import { ReplayChooser } from '../sched/replay.ts';
import { aggregate, type ExecutionRecord, type ExplorationBudget, type ExplorationResult, type Shard } from './exploration.ts';
import type { Execution, ExecutionLimits, ExecutionResult, Subject } from './subject.ts';
import type { Verdict } from './verdict.ts';

export interface SeededStrategy<E extends Execution = Execution> {
  readonly kind: 'seeded';
  readonly name: string;
  /**
   * A fresh chooser for one execution (`vcpus` for strategies that size themselves; `exec` for
   * one that reads the execution's own parts, e.g. the timed strategy its host scheduler).
   */
  chooser(seed: number, vcpus: number, exec: E): Chooser;
}

export interface ReplayStrategy {
  readonly kind: 'replay';
  readonly name: 'replay';
  /** A schedule, or its string (src/sched/schedule.ts). */
  readonly schedule: Schedule | string;
}

/** One execution an exhaustive strategy ran, as it hands it to the driver. */
export interface ExhaustiveVisit {
  /** The machine's stop reason, or why the strategy cut the execution short (then it has no final state). */
  readonly stop: string;
  readonly steps: number;
  /** Absent for an execution cut short. */
  readonly verdict?: Verdict;
  readonly finalState?: string;
  readonly coverage?: readonly string[];
  /** The schedule of a violating execution (src/sched/schedule.ts), for its counterexample. */
  readonly schedule?: string;
}

/** The visit of a finished execution. */
export function visitOf(exec: Execution, r: ExecutionResult): ExhaustiveVisit {
  return { stop: r.run.reason, steps: r.run.steps, verdict: r.verdict, finalState: r.finalState, ...(r.coverage ? { coverage: r.coverage } : {}), schedule: formatSchedule(exec.machine.decisions) };
}

export interface ExhaustiveStrategy {
  readonly kind: 'exhaustive';
  readonly name: string;
  /** The preemption bound it explores within (reported with the result). */
  readonly preemptions?: number;
  /**
   * Run executions of `subject` (each from `subject.start()`), hand each to `visit` in the order
   * run, stop as soon as `visit` returns false (the budget is spent); return whether every
   * interleaving within the bound was explored. `maxExecutions` is the budget when it is a count.
   */
  explore(subject: Subject, limits: ExecutionLimits, visit: (v: ExhaustiveVisit) => boolean, opts: { maxExecutions?: number; stopAtViolation: boolean }): { complete: boolean };
}

export type Strategy<E extends Execution = Execution> = SeededStrategy<E> | ReplayStrategy | ExhaustiveStrategy;

export interface ExploreOptions<E extends Execution = Execution> {
  readonly budget: ExplorationBudget;
  /** Seed of execution 0 (default 1). */
  readonly seed?: number;
  readonly shard?: Shard;
  /** Overrides of the subject's limits (the depth bound, the injections). */
  readonly limits?: ExecutionLimits;
  /** Stop at the first violation (time-to-first-violation); default: spend the whole budget. */
  readonly stopAtViolation?: boolean;
  /** The clock a seconds budget reads (milliseconds); default performance.now. */
  readonly now?: () => number;
  /**
   * Called in this process after each seeded or replayed execution, in index order, with what the
   * record leaves out (the run, the execution's own state): `run --seeds` tallies and prints from
   * it. Worker pools (src/check/pool.ts) do not take it: what crosses a worker is the record.
   */
  readonly onExecution?: (record: ExecutionRecord, exec: E, result: ExecutionResult) => void;
}

/** The limits an execution runs with: the subject's, overridden by the caller's. */
export function limitsFor(subject: Subject<Execution>, over: ExecutionLimits | undefined): ExecutionLimits {
  return { ...subject.limits, ...over };
}

/** The record of one finished execution. */
export function recordOf(index: number, seed: number | undefined, exec: Execution, r: ExecutionResult): ExecutionRecord {
  const v = r.verdict;
  return {
    index,
    ...(seed !== undefined ? { seed } : {}),
    stop: r.run.reason,
    steps: r.run.steps,
    state: r.finalState,
    coverage: r.coverage ?? [],
    ...(v.ok ? {} : { violation: { verdict: v, schedule: formatSchedule(exec.machine.decisions) } }),
  };
}

function recordOfVisit(index: number, v: ExhaustiveVisit): ExecutionRecord {
  const bad = v.verdict !== undefined && !v.verdict.ok ? v.verdict : undefined;
  return {
    index,
    stop: v.stop,
    steps: v.steps,
    ...(v.finalState !== undefined ? { state: v.finalState } : {}),
    coverage: v.coverage ?? [],
    ...(bad !== undefined ? { violation: { verdict: bad, schedule: v.schedule ?? '' } } : {}),
  };
}

/** Run execution `index` of a seeded strategy (what a worker does for each index of its chunk). */
export function runSeeded<E extends Execution>(subject: Subject<E>, strategy: SeededStrategy<E>, limits: ExecutionLimits, seedBase: number, index: number, onExecution?: ExploreOptions<E>['onExecution']): ExecutionRecord {
  const seed = seedBase + index;
  const exec = subject.start(seed);
  const r = exec.run(strategy.chooser(seed, subject.vcpus, exec), limits);
  const rec = recordOf(index, seed, exec, r);
  onExecution?.(rec, exec, r);
  return rec;
}

/** Execution indices of a shard, in order: i, i+n, i+2n, ... (all of them without a shard). */
export function* shardIndices(shard: Shard | undefined): Generator<number> {
  const n = shard?.count ?? 1;
  for (let i = shard?.index ?? 0; ; i += n) yield i;
}

/** Whether a budget still allows execution `index` (executions) or more time (seconds). */
export function budgetAllows(budget: ExplorationBudget, index: number, startedMs: number, nowMs: number): boolean {
  return budget.kind === 'executions' ? index < budget.executions : nowMs - startedMs < budget.seconds * 1000;
}

/** The header of an exploration's result (what ran, with which bound). */
export function headerOf<E extends Execution>(subject: Subject<E>, strategy: Strategy<E>, opts: ExploreOptions<E>, limits: ExecutionLimits) {
  const preemptions = strategy.kind === 'exhaustive' ? strategy.preemptions : undefined;
  return {
    subject: subject.name,
    strategy: strategy.name,
    seed: opts.seed ?? 1,
    budget: opts.budget,
    bound: { maxInstructions: limits.maxInstructions ?? 0, ...(preemptions !== undefined ? { preemptions } : {}) },
    ...(opts.shard !== undefined ? { shard: opts.shard } : {}),
  };
}

export class ExploreError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ExploreError';
  }
}

/** Explore `subject` under `strategy` in this process; see src/check/pool.ts for workers. */
export function explore<E extends Execution>(subject: Subject<E>, strategy: Strategy<E>, opts: ExploreOptions<E>): ExplorationResult {
  const limits = limitsFor(subject, opts.limits);
  const header = headerOf(subject, strategy, opts, limits);
  const now = opts.now ?? (() => performance.now());
  const started = now();
  const records: ExecutionRecord[] = [];
  switch (strategy.kind) {
    case 'replay': {
      const exec = subject.start();
      const r = exec.run(new ReplayChooser(strategy.schedule, subject.vcpus), limits);
      const rec = recordOf(0, undefined, exec, r);
      records.push(rec);
      opts.onExecution?.(rec, exec, r);
      return aggregate(header, records);
    }
    case 'seeded': {
      const seedBase = opts.seed ?? 1;
      for (const i of shardIndices(opts.shard)) {
        if (!budgetAllows(opts.budget, i, started, now())) break;
        const rec = runSeeded(subject, strategy, limits, seedBase, i, opts.onExecution);
        records.push(rec);
        if (opts.stopAtViolation && rec.violation !== undefined) break;
      }
      return aggregate(header, records);
    }
    case 'exhaustive': {
      if (opts.shard !== undefined && opts.shard.count > 1) throw new ExploreError(`--shard splits seeded strategies; ${strategy.name} explores one tree in one process`);
      let i = 0;
      const stopAtViolation = opts.stopAtViolation === true;
      const { complete } = strategy.explore(subject, limits, (v) => {
        const rec = recordOfVisit(i++, v);
        records.push(rec);
        return !((stopAtViolation && rec.violation !== undefined) || !budgetAllows(opts.budget, i, started, now()));
      }, { ...(opts.budget.kind === 'executions' ? { maxExecutions: opts.budget.executions } : {}), stopAtViolation });
      return aggregate(header, records, complete);
    }
  }
}
