/**
 * What an exploration found, as data (DESIGN.md §6): per execution a small record, and their
 * aggregate — executions, distinct final states with counts, how each execution ended, coverage,
 * the first violation and the verdict. Aggregation is a pure function of the records (in any
 * order), so a run split over workers or shards and merged gives the very object one process gives.
 */
import type { StopReason } from '../machine/machine.ts';
import { hazardName } from '../machine/events.ts';
import type { Verdict } from './verdict.ts';

/** `exhausted`: every interleaving within the bound ran, none violated (only an exhaustive strategy says it). */
export type ExplorationVerdict = 'violation' | 'exhausted' | 'bounded-clean';

export type ExplorationBudget =
  | { readonly kind: 'executions'; readonly executions: number }
  /** Wall-clock: how many executions fit depends on the machine; the result is a function of those that ran. */
  | { readonly kind: 'seconds'; readonly seconds: number };

/** One shard of an exploration: execution indices i with i mod count = index. */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** One execution, small enough to cross a worker boundary (structured clone) and a shard file. */
export interface ExecutionRecord {
  /** Execution i of the exploration; a seeded strategy ran it with seed base + i. */
  readonly index: number;
  readonly seed?: number;
  /** The machine's stop reason, or why an exhaustive strategy cut the execution short. */
  readonly stop: StopReason | string;
  readonly steps: number;
  /** The subject's canonical final state; absent for an execution cut short (it has none). */
  readonly state?: string;
  readonly coverage: readonly string[];
  /** Present when the verdict is a violation: what fired and the schedule that reproduces it. */
  readonly violation?: { readonly verdict: Verdict & { ok: false }; readonly schedule: string };
}

/** How one execution ended: `ok (<stop reason>)` or the check that fired (with its hazard kind). */
export function endingOf(r: ExecutionRecord): string {
  if (r.violation === undefined) return r.state === undefined ? `cut (${r.stop})` : `ok (${r.stop})`;
  const v = r.violation.verdict;
  return v.hazard !== undefined ? `${v.check} ${hazardName(v.hazard)}` : v.check;
}

export interface Counted {
  readonly key: string;
  readonly count: number;
}

export interface FirstViolation {
  readonly index: number;
  readonly seed?: number;
  readonly verdict: Verdict & { ok: false };
  readonly schedule: string;
}

export interface ExplorationResult {
  readonly subject: string;
  readonly strategy: string;
  /** Execution i uses seed `seed + i` (seeded strategies). */
  readonly seed: number;
  readonly budget: ExplorationBudget;
  /** The depth bound (instructions per execution) and, for exhaustive strategies, the preemption bound. */
  readonly bound: { readonly maxInstructions: number; readonly preemptions?: number };
  readonly shard?: Shard;
  readonly executions: number;
  readonly violations: number;
  /** Distinct final states, most frequent first (ties by state text); executions cut short have none. */
  readonly states: readonly Counted[];
  readonly endings: readonly Counted[];
  /** Coverage point → executions that reached it, by point. */
  readonly coverage: readonly Counted[];
  readonly firstViolation?: FirstViolation;
  /** Set by an exhaustive strategy: every interleaving within the bound was explored. */
  readonly complete: boolean;
  readonly verdict: ExplorationVerdict;
}

export type ExplorationHeader = Pick<ExplorationResult, 'subject' | 'strategy' | 'seed' | 'budget' | 'bound'> & { readonly shard?: Shard };

function counted(m: Map<string, number>, byCount: boolean): Counted[] {
  const out = [...m].map(([key, count]) => ({ key, count }));
  return out.sort((a, b) => (byCount && b.count !== a.count ? b.count - a.count : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

function add(m: Map<string, number>, key: string, k: number): void {
  m.set(key, (m.get(key) ?? 0) + k);
}

function verdictOf(violations: number, complete: boolean): ExplorationVerdict {
  return violations > 0 ? 'violation' : complete ? 'exhausted' : 'bounded-clean';
}

/** The aggregate of `records` (any order); `complete` only from an exhaustive strategy that finished. */
export function aggregate(header: ExplorationHeader, records: readonly ExecutionRecord[], complete = false): ExplorationResult {
  const states = new Map<string, number>();
  const endings = new Map<string, number>();
  const coverage = new Map<string, number>();
  let first: FirstViolation | undefined;
  let violations = 0;
  for (const r of records) {
    if (r.state !== undefined) add(states, r.state, 1);
    add(endings, endingOf(r), 1);
    for (const p of r.coverage) add(coverage, p, 1);
    if (r.violation !== undefined) {
      violations++;
      if (first === undefined || r.index < first.index) {
        first = { index: r.index, ...(r.seed !== undefined ? { seed: r.seed } : {}), verdict: r.violation.verdict, schedule: r.violation.schedule };
      }
    }
  }
  return finish(header, { executions: records.length, violations, states, endings, coverage, first, complete });
}

interface Tally {
  executions: number;
  violations: number;
  states: Map<string, number>;
  endings: Map<string, number>;
  coverage: Map<string, number>;
  first: FirstViolation | undefined;
  complete: boolean;
}

/** One constructor for both paths, so a merged result and an unsharded one print the same JSON. */
function finish(h: ExplorationHeader, t: Tally): ExplorationResult {
  return {
    subject: h.subject,
    strategy: h.strategy,
    seed: h.seed,
    budget: h.budget,
    bound: h.bound,
    ...(h.shard !== undefined ? { shard: h.shard } : {}),
    executions: t.executions,
    violations: t.violations,
    states: counted(t.states, true),
    endings: counted(t.endings, true),
    coverage: counted(t.coverage, false),
    ...(t.first !== undefined ? { firstViolation: t.first } : {}),
    complete: t.complete,
    verdict: verdictOf(t.violations, t.complete),
  };
}

export class MergeError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'MergeError';
  }
}

function sameExploration(a: ExplorationResult, b: ExplorationResult): string | undefined {
  if (a.subject !== b.subject) return `subject '${a.subject}' vs '${b.subject}'`;
  if (a.strategy !== b.strategy) return `strategy ${a.strategy} vs ${b.strategy}`;
  if (a.seed !== b.seed) return `seed ${a.seed} vs ${b.seed}`;
  if (JSON.stringify(a.budget) !== JSON.stringify(b.budget)) return `budget ${JSON.stringify(a.budget)} vs ${JSON.stringify(b.budget)}`;
  if (JSON.stringify(a.bound) !== JSON.stringify(b.bound)) return `bound ${JSON.stringify(a.bound)} vs ${JSON.stringify(b.bound)}`;
  return undefined;
}

/**
 * Join the shards 0..n-1 of one exploration into the result the unsharded run gives: counts add,
 * the first violation is the one with the lowest execution index. Refuses shards of different
 * explorations, a missing or repeated shard.
 */
export function mergeShards(parts: readonly ExplorationResult[]): ExplorationResult {
  if (parts.length === 0) throw new MergeError('nothing to merge');
  const head = parts[0]!;
  const n = head.shard?.count ?? 1;
  const seen = new Set<number>();
  for (const p of parts) {
    const diff = sameExploration(head, p);
    if (diff !== undefined) throw new MergeError(`the files are shards of different explorations (${diff})`);
    const s = p.shard ?? { index: 0, count: 1 };
    if (s.count !== n) throw new MergeError(`shard ${s.index}/${s.count} does not belong with shards of ${n}`);
    if (seen.has(s.index)) throw new MergeError(`shard ${s.index}/${n} is given twice`);
    seen.add(s.index);
  }
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length > 0) throw new MergeError(`shard${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${i}/${n}`).join(', ')} missing`);
  const states = new Map<string, number>();
  const endings = new Map<string, number>();
  const coverage = new Map<string, number>();
  let first: FirstViolation | undefined;
  let executions = 0;
  let violations = 0;
  for (const p of parts) {
    executions += p.executions;
    violations += p.violations;
    for (const c of p.states) add(states, c.key, c.count);
    for (const c of p.endings) add(endings, c.key, c.count);
    for (const c of p.coverage) add(coverage, c.key, c.count);
    if (p.firstViolation !== undefined && (first === undefined || p.firstViolation.index < first.index)) first = p.firstViolation;
  }
  const { shard: _shard, ...header } = head;
  return finish(header, { executions, violations, states, endings, coverage, first, complete: parts.every((p) => p.complete) });
}
