/**
 * Shrinking a counterexample (DESIGN.md §6): from a schedule on which a check fired, find one
 * with fewer preemptions, then fewer injections, then fewer steps, on which the same check fires.
 * The schedule is a list of runs (one decision and its repeat count: a vCPU's steps, a drain, an
 * injection); a candidate is it with runs taken out or changed, replayed leniently
 * (src/check/lenient-replay.ts): what the replay actually did is the candidate's schedule, kept
 * only when it is smaller and the same check fires. The passes, each repeated while it keeps
 * something, in the order that takes most out soonest on a long guest schedule:
 * 1. prefix: keep the first k runs, the rest runs without preempting (k = 0: no preemption at all);
 * 2. coalesce: within the whole schedule, then its halves, quarters, ..., each vCPU's runs gathered
 *    where it first runs: hundreds of a long guest schedule's preemptions go a segment at a time;
 * 3. segments: delta debugging (Zeller's ddmin, complements) over contiguous segments of runs,
 *    halves down to single runs: about (runs that matter) · log(runs) replays, not one per run;
 * 4. injections: the same over the injections alone (the NMIs and IRQs the check does not need);
 * 5. merge: a vCPU's run moved onto its own previous run, one candidate per run;
 * 6. shift: a switch point moved a few steps either way, onto a PAUSE or a halt of the vCPU left;
 * 7. trim: runs halved (fewer steps).
 * Deterministic, bounded by a replay budget, reporting progress after each replay; the result is
 * re-verified by strict replay. Preemptions are counted as CHESS counts them
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

/** The passes, in the order they run (see the file's comment). */
export type ShrinkPass = 'prefix' | 'coalesce' | 'segments' | 'injections' | 'merge' | 'shift' | 'trim';

export interface ShrinkProgress {
  readonly pass: ShrinkPass;
  readonly replays: number;
  readonly maxReplays: number;
  /** The smallest schedule so far. */
  readonly best: MeasuredSchedule;
}

export interface ShrinkOptions {
  readonly limits?: ExecutionLimits;
  /** The seed the failing execution started with (Subject.start), for subjects with randomness of their own. */
  readonly seed?: number;
  /** Candidate replays at most (default 1,000). */
  readonly maxReplays?: number;
  /** Called after every candidate replay (a long guest schedule takes a while). */
  readonly onProgress?: (p: ShrinkProgress) => void;
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

type Run = readonly [decision: number, count: number];

function runsOf(schedule: string, vcpus: number): Run[] {
  const out: [number, number][] = [];
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

/** The runs without those at the given positions (sorted, distinct). */
function without(runs: readonly Run[], drop: ReadonlySet<number>): Run[] {
  return runs.filter((_, k) => !drop.has(k));
}

/** The state of one shrink: the best schedule so far and the budget spent. */
class Shrinker {
  best: MeasuredSchedule;
  replays = 0;
  private readonly tried = new Set<string>();
  private pass: ShrinkPass = 'prefix';

  constructor(
    private readonly subject: Subject,
    private readonly target: Violation,
    original: MeasuredSchedule,
    private readonly limits: ExecutionLimits,
    private readonly seed: number | undefined,
    private readonly maxReplays: number,
    private readonly onProgress: ShrinkOptions['onProgress'],
  ) {
    this.best = original;
    this.tried.add(digest(flatten(this.runs())));
  }

  get spent(): boolean {
    return this.replays >= this.maxReplays;
  }

  runs(): Run[] {
    return runsOf(this.best.schedule, this.subject.vcpus);
  }

  enter(pass: ShrinkPass): void {
    this.pass = pass;
  }

  /** Replay the candidate; keep it when the same check fires on a smaller run. */
  attempt(candidate: readonly Run[]): boolean {
    if (this.spent) return false;
    const flat = flatten(candidate);
    // A digest, not the text: a guest's schedule can be long, and a thousand of them are kept.
    const key = digest(flat);
    if (this.tried.has(key)) return false;
    this.tried.add(key);
    this.replays++;
    const m = runWith(this.subject, new LenientReplay(flat), this.limits, this.seed);
    const kept = sameCheck(m.verdict, this.target) && smaller(m, this.best);
    if (kept) this.best = m;
    this.onProgress?.({ pass: this.pass, replays: this.replays, maxReplays: this.maxReplays, best: this.best });
    return kept;
  }
}

function digest(flat: readonly number[]): string {
  return createHash('sha256').update(Int32Array.from(flat)).digest('base64');
}

/** Pass 1: the shortest prefix tried that still fails (0, 1, ..., 31, then doubling). */
function prefixPass(s: Shrinker): boolean {
  const runs = s.runs();
  for (let k = 0; k < runs.length && !s.spent; k = k < 32 ? k + 1 : 2 * k) if (s.attempt(runs.slice(0, k))) return true;
  return false;
}

/**
 * Passes 3 and 4: ddmin's complement step over the positions `of(runs)` picks out (all runs, or the injections):
 * split them into n contiguous segments and try the schedule without each; after a kept one go on
 * with n − 1 segments of the new schedule, else with 2n, until segments are single positions.
 */
function ddminPass(s: Shrinker, of: (runs: readonly Run[]) => number[]): boolean {
  let improved = false;
  let n = 2;
  for (;;) {
    const runs = s.runs();
    const at = of(runs);
    if (at.length === 0 || s.spent) return improved;
    n = Math.min(n, at.length);
    const size = Math.ceil(at.length / n);
    let kept = false;
    for (let start = 0; start < at.length && !kept; start += size) kept = s.attempt(without(runs, new Set(at.slice(start, start + size))));
    if (kept) {
      improved = true;
      n = Math.max(n - 1, 2);
    } else if (size === 1) return improved;
    else n = Math.min(2 * n, at.length);
  }
}

/** The vCPU a run belongs to: a step's or a drain's vCPU, an injection's target. */
const ownerOf = (d: number): number => (d < 0 ? -1 : actionCpu(d));

/**
 * The runs with each vCPU's runs gathered where that vCPU first runs in them (in their order):
 * every switch between vCPUs inside the span but the first of each goes, and with it the
 * preemptions it cost. A choice (d < 0) stays with the run before it.
 */
function coalesce(span: readonly Run[]): Run[] {
  const groups = new Map<number, Run[]>();
  let owner = -1;
  for (const r of span) {
    if (r[0] >= 0) owner = ownerOf(r[0]);
    let g = groups.get(owner);
    if (g === undefined) groups.set(owner, (g = []));
    g.push(r);
  }
  return [...groups.values()].flat();
}

/**
 * Pass 2: gather each vCPU's runs (coalesce) within segments of the schedule, the whole first,
 * then halves, quarters, ... down to three runs (the least span where gathering changes
 * anything): a long guest schedule's hundreds of preemptions go a segment at a time.
 */
function coalescePass(s: Shrinker): boolean {
  let improved = false;
  for (let n = 1; !s.spent; n *= 2) {
    let runs = s.runs();
    const size = Math.ceil(runs.length / n);
    if (size < 3) return improved;
    for (let start = 0; start < runs.length && !s.spent; start += size) {
      const span = runs.slice(start, start + size);
      if (s.attempt([...runs.slice(0, start), ...coalesce(span), ...runs.slice(start + size)])) {
        improved = true;
        runs = s.runs();
      }
    }
  }
  return improved;
}

/** The nearest step run of run k's vCPU before it (dir -1) or after it (dir 1); -1: none. */
function sameCpuRun(runs: readonly Run[], k: number, dir: -1 | 1): number {
  const cpu = actionCpu(runs[k]![0]);
  for (let j = k + dir; j >= 0 && j < runs.length; j += dir) if (isStep(runs[j]![0]) && actionCpu(runs[j]![0]) === cpu) return j;
  return -1;
}

/** Pass 5: each vCPU run moved onto the same vCPU's previous run; after a kept one, on from there. */
function mergePass(s: Shrinker): boolean {
  let improved = false;
  for (let k = 1; !s.spent; k++) {
    const runs = s.runs();
    if (k >= runs.length) return improved;
    if (!isStep(runs[k]![0])) continue;
    const j = sameCpuRun(runs, k, -1);
    if (j < 0) continue;
    const moved = runs.map((r, i) => (i === j ? ([r[0], r[1] + runs[k]![1]] as const) : r)).filter((_, i) => i !== k);
    if (s.attempt(moved)) improved = true;
  }
  return improved;
}

/**
 * Pass 6: each switch point shifted: in `A×n B… A×p` move x = 1, 2, 4, ... of A's steps across
 * the other vCPUs' runs, either way, so that A is switched away from at a PAUSE or a halt (not a
 * preemption) instead of in the middle of its work.
 */
function shiftPass(s: Shrinker): boolean {
  let improved = false;
  for (let k = 0; !s.spent; k++) {
    const runs = s.runs();
    if (k >= runs.length) return improved;
    if (!isStep(runs[k]![0])) continue;
    const j = sameCpuRun(runs, k, 1);
    if (j < 0 || j === k + 1) continue;
    const [n, p] = [runs[k]![1], runs[j]![1]];
    const shifted = (x: number) => runs.map((r, i) => (i === k ? ([r[0], n + x] as const) : i === j ? ([r[0], p - x] as const) : r)).filter((r) => r[1] > 0);
    for (let x = 1; (x <= p || x < n) && !s.spent; x *= 2) {
      if ((x <= p && s.attempt(shifted(x))) || (x < n && s.attempt(shifted(-x)))) {
        improved = true;
        break;
      }
    }
  }
  return improved;
}

/** Pass 7: each run of two or more halved. */
function trimPass(s: Shrinker): boolean {
  let improved = false;
  for (let k = 0; !s.spent; k++) {
    const runs = s.runs();
    if (k >= runs.length) return improved;
    if (runs[k]![1] < 2) continue;
    if (s.attempt(runs.map((r, i) => (i === k ? ([r[0], r[1] >> 1] as const) : r)))) improved = true;
  }
  return improved;
}

const ALL = (runs: readonly Run[]): number[] => runs.map((_, k) => k);
const INJECTIONS = (runs: readonly Run[]): number[] => runs.flatMap((r, k) => (isInjection(r[0]) ? [k] : []));

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
  const seed = opts.seed;
  const original = measureSchedule(subject, schedule, limits, seed);
  if (!sameCheck(original.verdict, target)) {
    throw new ShrinkError(`the schedule does not reproduce the violation (${target.check}): its replay ended ${original.verdict.ok ? 'clean' : `in ${original.verdict.check}`}`);
  }
  if (!shrinkable(target)) return { ...original, verdict: original.verdict as Violation, original, replays: 0 };
  // A candidate needs no more than twice the original's length to be worth keeping: a bound, so a
  // candidate whose non-preemptive finish loops (a guest's spinning vCPU) ends early and is dropped.
  const bound = 2 * original.steps + 1000;
  const candidateLimits: ExecutionLimits = { ...limits, maxInstructions: Math.min(limits?.maxInstructions ?? subject.limits.maxInstructions ?? bound, bound) };
  const s = new Shrinker(subject, target, original, candidateLimits, seed, opts.maxReplays ?? 1000, opts.onProgress);
  const passes: [ShrinkPass, () => boolean][] = [
    ['prefix', () => prefixPass(s)],
    ['coalesce', () => coalescePass(s)],
    ['segments', () => ddminPass(s, ALL)],
    ['injections', () => ddminPass(s, INJECTIONS)],
    ['merge', () => mergePass(s)],
    ['shift', () => shiftPass(s)],
    ['trim', () => trimPass(s)],
  ];
  // Round after round while any pass keeps something; a pass that keeps one re-runs (the prefix
  // of a shorter schedule, a new segmentation).
  for (let improved = true; improved && !s.spent; ) {
    improved = false;
    for (const [name, run] of passes) {
      s.enter(name);
      while (!s.spent && run()) improved = true;
    }
  }
  // Re-verify: the kept schedule, replayed strictly, is the same run.
  const best = s.best;
  const verified = measureSchedule(subject, best.schedule, limits, seed);
  if (verified.schedule !== best.schedule || !sameCheck(verified.verdict, target)) {
    throw new Error(`shrink: the shrunk schedule does not replay to itself (${best.schedule.slice(0, 80)})`);
  }
  return { ...verified, verdict: verified.verdict as Violation, original, replays: s.replays };
}
