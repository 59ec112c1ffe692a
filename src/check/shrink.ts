/**
 * Shrinking a counterexample (DESIGN.md §6): from a schedule on which a check fired, find one
 * with fewer preemptions, then fewer injections, then fewer steps, on which the same check fires.
 * Each candidate is the current schedule with one thing taken out — its tail after some decision
 * (the rest runs without preempting), an injection, one vCPU's run of steps (moved earlier or
 * left to run later), half of a run — replayed leniently (src/check/lenient-replay.ts); what the
 * replay actually did is the new schedule, and a candidate is kept only when it is smaller and
 * the same check fires. Greedy to a fixed point, deterministic, bounded by a replay budget. The
 * result is re-verified by strict replay. Preemptions are counted as CHESS counts them
 * (src/check/preemptions.ts): a switch away from a busy loop is one, so a vCPU that never halts
 * or pauses costs a preemption each time another vCPU runs after it.
 */
import { createHash } from 'node:crypto';
import { ActionKind, actionCpu, actionKind } from '../machine/chooser.ts';
import { hazardName } from '../machine/events.ts';
import { ReplayChooser } from '../sched/replay.ts';
import { encodeDecision, formatSchedule, parseSchedule } from '../sched/schedule.ts';
import { CountingChooser } from './preemptions.ts';
import { LenientReplay } from './lenient-replay.ts';
import type { ExecutionLimits, Subject } from './subject.ts';
import type { Verdict } from './verdict.ts';

export type Violation = Verdict & { ok: false };

/** A schedule with what it costs a reader, and the verdict its run reached. */
export interface MeasuredSchedule {
  /** Exact: a strict replay (ReplayChooser) reproduces the run. */
  readonly schedule: string;
  readonly verdict: Verdict;
  readonly preemptions: number;
  readonly injections: number;
  /** Actions of the run (instruction steps, drains, injections). */
  readonly steps: number;
}

export interface ShrinkResult extends MeasuredSchedule {
  readonly verdict: Violation;
  readonly original: MeasuredSchedule;
  /** Candidate replays tried. */
  readonly replays: number;
}

export interface ShrinkOptions {
  readonly limits?: ExecutionLimits;
  /** The seed the failing execution started with (Subject.start), for subjects with randomness of their own. */
  readonly seed?: number;
  /** Candidate replays at most (default 1,000). */
  readonly maxReplays?: number;
}

export class ShrinkError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ShrinkError';
  }
}

/** The same check: kind, and for a hazard its name (an oracle's, e.g. non-atomic-switch). */
export function sameCheck(a: Verdict, b: Violation): boolean {
  const name = (v: Verdict) => (!v.ok && v.hazard !== undefined ? hazardName(v.hazard) : undefined);
  return !a.ok && a.check === b.check && name(a) === name(b);
}

function runWith(subject: Subject, chooser: LenientReplay | ReplayChooser, limits: ExecutionLimits | undefined, seed: number | undefined): MeasuredSchedule {
  const exec = subject.start(seed);
  const counting = new CountingChooser(chooser);
  const r = exec.run(counting, limits);
  return { schedule: formatSchedule(exec.machine.decisions), verdict: r.verdict, preemptions: counting.preemptions, injections: counting.injections, steps: r.run.steps };
}

/** Replay `schedule` exactly and measure it (a decision that does not fit is a ScheduleError). */
export function measureSchedule(subject: Subject, schedule: string, limits?: ExecutionLimits, seed?: number): MeasuredSchedule {
  return runWith(subject, new ReplayChooser(schedule, subject.vcpus), limits, seed);
}

function smaller(a: MeasuredSchedule, b: MeasuredSchedule): boolean {
  if (a.preemptions !== b.preemptions) return a.preemptions < b.preemptions;
  if (a.injections !== b.injections) return a.injections < b.injections;
  return a.steps < b.steps;
}

type Run = [decision: number, count: number];

function runsOf(schedule: string, vcpus: number): Run[] {
  const out: Run[] = [];
  for (const e of parseSchedule(schedule, vcpus).entries) {
    const d = encodeDecision(e.decision);
    const last = out[out.length - 1];
    if (last !== undefined && last[0] === d) last[1] += e.count;
    else out.push([d, e.count]);
  }
  return out;
}

function flatten(runs: readonly Run[]): number[] {
  const out: number[] = [];
  for (const [d, k] of runs) for (let i = 0; i < k; i++) out.push(d);
  return out;
}

const isStep = (d: number): boolean => d >= 0 && actionKind(d) === ActionKind.Step;
const isInjection = (d: number): boolean => d >= 0 && (actionKind(d) === ActionKind.Nmi || actionKind(d) === ActionKind.Irq);

/** One way to cut a schedule, applied only when tried (a schedule can have tens of thousands of runs). */
type Cut =
  /** Keep the first k runs; the rest runs without preemptions (k = 0: the non-preemptive schedule). */
  | { readonly kind: 'prefix'; readonly k: number }
  /** Leave out run k (an injection, or a vCPU's steps, which then happen later). */
  | { readonly kind: 'drop'; readonly k: number }
  /** Move run k's steps to the end of run j, the same vCPU's previous run. */
  | { readonly kind: 'move'; readonly k: number; readonly j: number }
  /** Halve run k. */
  | { readonly kind: 'half'; readonly k: number };

/** The cuts in the order tried: the biggest first. */
function cutsOf(runs: readonly Run[]): Cut[] {
  const out: Cut[] = [];
  const ks = new Set<number>();
  for (let k = 0; k < Math.min(runs.length, 32); k++) ks.add(k);
  for (let k = 32; k < runs.length; k *= 2) ks.add(k);
  for (const k of ks) out.push({ kind: 'prefix', k });
  for (let k = 0; k < runs.length; k++) if (isInjection(runs[k]![0])) out.push({ kind: 'drop', k });
  const lastRunOf = new Map<number, number>();
  for (let k = 0; k < runs.length; k++) {
    const d = runs[k]![0];
    if (!isStep(d)) continue;
    const j = lastRunOf.get(actionCpu(d));
    if (j !== undefined) out.push({ kind: 'move', k, j });
    out.push({ kind: 'drop', k });
    lastRunOf.set(actionCpu(d), k);
  }
  for (let k = 0; k < runs.length; k++) if (runs[k]![1] >= 2) out.push({ kind: 'half', k });
  return out;
}

function applyCut(runs: readonly Run[], c: Cut): Run[] {
  switch (c.kind) {
    case 'prefix': return runs.slice(0, c.k);
    case 'drop': return [...runs.slice(0, c.k), ...runs.slice(c.k + 1)];
    case 'move': {
      const out = runs.map((r) => [r[0], r[1]] as Run);
      out[c.j]![1] += runs[c.k]![1];
      out.splice(c.k, 1);
      return out;
    }
    case 'half': return [...runs.slice(0, c.k), [runs[c.k]![0], runs[c.k]![1] >> 1], ...runs.slice(c.k + 1)];
  }
}

/**
 * A liveness verdict is not shrunk: with fewer preemptions a run that fails to make progress
 * becomes one vCPU looping while the others never run, an unfair schedule that proves nothing.
 */
export function shrinkable(v: Violation): boolean {
  return v.check !== 'step-limit' && v.check !== 'livelock';
}

/**
 * Shrink `schedule`, on which `target` fired (a liveness verdict is only re-verified, see
 * shrinkable). Throws ShrinkError when the schedule does not reproduce the target (the caller
 * handed a schedule of another run).
 */
export function shrink(subject: Subject, schedule: string, target: Violation, opts: ShrinkOptions = {}): ShrinkResult {
  const limits = opts.limits;
  const maxReplays = opts.maxReplays ?? 1000;
  const seed = opts.seed;
  const original = measureSchedule(subject, schedule, limits, seed);
  if (!sameCheck(original.verdict, target)) {
    throw new ShrinkError(`the schedule does not reproduce the violation (${target.check}): its replay ended ${original.verdict.ok ? 'clean' : `in ${original.verdict.check}`}`);
  }
  let best = original;
  let replays = 0;
  if (!shrinkable(target)) return { ...original, verdict: original.verdict as Violation, original, replays };
  // A candidate needs no more than twice the original's length to be worth keeping: a bound, so a
  // candidate whose non-preemptive finish loops (a guest's spinning vCPU) ends early and is dropped.
  const bound = 2 * original.steps + 1000;
  const candidateLimits: ExecutionLimits = { ...limits, maxInstructions: Math.min(limits?.maxInstructions ?? subject.limits.maxInstructions ?? bound, bound) };
  const tried = new Set<string>([createHash('sha256').update(best.schedule).digest('base64')]);
  // Passes over the candidates; after a kept one, the pass goes on at the same position of the new
  // schedule's candidates (the cuts before it were tried already), and one pass without any kept
  // candidate ends the search.
  for (let improved = true; improved && replays < maxReplays; ) {
    improved = false;
    let runs = runsOf(best.schedule, subject.vcpus);
    let cuts = cutsOf(runs);
    for (let pos = 0; pos < cuts.length && replays < maxReplays; pos++) {
      const c = applyCut(runs, cuts[pos]!);
      // A digest, not the text: a guest's schedule can be long, and a thousand of them are kept.
      const key = createHash('sha256').update(formatSchedule(c.flat())).digest('base64');
      if (tried.has(key)) continue;
      tried.add(key);
      replays++;
      const m = runWith(subject, new LenientReplay(flatten(c)), candidateLimits, seed);
      if (sameCheck(m.verdict, target) && smaller(m, best)) {
        best = m;
        improved = true;
        runs = runsOf(best.schedule, subject.vcpus);
        cuts = cutsOf(runs);
      }
    }
  }
  // Re-verify: the kept schedule, replayed strictly, is the same run.
  const verified = measureSchedule(subject, best.schedule, limits, seed);
  if (verified.schedule !== best.schedule || !sameCheck(verified.verdict, target)) {
    throw new Error(`shrink: the shrunk schedule does not replay to itself (${best.schedule.slice(0, 80)})`);
  }
  return { ...verified, verdict: verified.verdict as Violation, original, replays };
}
