/**
 * Bounded exhaustive search with dynamic partial-order reduction (DESIGN.md §3, issue 9 item 2):
 * source-DPOR with sleep sets (Abdulla, Aronis, Jonsson, Sagonas, "Optimal dynamic partial order
 * reduction", POPL 2014, Algorithm 1) over the Chooser's actions — vCPU steps, store-buffer drains
 * (under TSO a drain is what makes a store visible) and NMI/IRQ injections — with every value of a
 * non-scheduling choice (old or new bytes at a legal CMC fetch) explored as a branch of its own.
 *
 * Stateless: every execution re-runs from the Subject's boot snapshot, replays the path to the
 * branch being explored, and extends it with defaults. After the run, each race x ⋖ e of a new
 * event is reversed: some initial of notdep(x, E).e goes into the backtrack set of the node
 * before x unless one is there already.
 *
 * Bounds. A preemption is a switch from a vCPU that could take another step to another vCPU's
 * step (drains and injections are never preemptions; switching away from a vCPU that just ran
 * PAUSE or closed a cycle is a yield, not a preemption). Pruning DPOR by a preemption bound is
 * unsound on its own (Coons, Musuvathi, McKinley, "Bounded partial-order reduction", OOPSLA 2013):
 * as BPOR does, every backtrack point also adds a conservative one for the same process at the
 * last context switch (or free switch point) before it, and so does every initial the bound
 * forbids; and for the sleep sets, steps of two vCPUs never commute under a bound (moving one past
 * the other changes what is a preemption). `depth` bounds instructions per execution; a branch an
 * execution cut by depth ran through does not go to sleep.
 *
 * A search that ran out of branches with no execution cut by the depth bound and no stop at
 * `maxExecutions` is `exhausted`: every interleaving within the preemption bound was explored (a
 * proof for that bound). Otherwise it is `bounded`. `preemptionLimited` says whether the
 * preemption bound left a branch out (false with `exhausted`: a proof for any number of
 * preemptions). With `reduction: false` the same explorer is plain bounded DFS over every enabled
 * action (the baseline DPOR is measured against).
 *
 * Stateful (the default with reduction, for a subject whose executions hash their own state):
 * an execution that reaches a state whose subtree is explored ends there, and the subtree's
 * summary stands in for it; src/check/dpor-cache.ts says why that stays sound. `exhausted` keeps
 * its meaning: every state reachable within the bounds was visited, with every branch DPOR needs.
 * A cache hit replaces a subtree's executions by one, so final-state counts are counts of
 * executions run, while the set of distinct final states is the same as without the cache.
 *
 * The Subject must let errors that are not user-facing through its run(): an execution ends early
 * by an ExplorationCut thrown from the chooser.
 */
import { FootprintRecorder } from '../machine/footprint.ts';
import { recordedSchedule, type Schedule } from '../sched/schedule.ts';
import { RandomChooser } from '../sched/random.ts';
import { Trace } from './dpor-trace.ts';
import { DporChooser, ExplorationCut, type CutReason } from './dpor-chooser.ts';
import { StateCache, type CacheStats, type FrozenSummary } from './dpor-cache.ts';
import { Explorer } from './dpor-explorer.ts';
import type { ExecutionLimits, Subject } from './subject.ts';
import { violation, type Verdict } from './verdict.ts';

export interface DporBounds {
  /** Preemptions per execution (undefined: unbounded). */
  preemptions?: number;
  /** Instructions per execution (default: the subject's limit). */
  depth?: number;
  /** Stop after this many executions (the search is then `bounded`). */
  maxExecutions?: number;
  /** Branch only inside this window of machine steps (the search is then `bounded`). */
  window?: DporWindow;
}

/**
 * A search directed at a window of the run (issue 9: a guest's patch window lies hundreds of
 * steps into a run whose depth-first tail DPOR would explore first): before `fromStep` a seeded
 * random schedule (no injections, no host preemptions) takes the run there, the same way in every
 * execution; nodes from `toStep` on take only their default branch. Races inside the window are
 * reversed as ever, with the events after it included. A windowed search never claims
 * `exhausted`: what the prefix and the tail leave out is unexplored.
 */
export interface DporWindow {
  readonly fromStep: number;
  readonly toStep: number;
  /** The prefix's seed (default 1). */
  readonly seed?: number;
}

/** How one execution ended. */
export type ExecutionEnd = 'finished' | 'depth-bound' | CutReason;

export interface DporExecution {
  readonly index: number;
  readonly end: ExecutionEnd;
  /** The verdict of a finished execution, or of a livelock; undefined for a cut one. */
  readonly verdict: Verdict | undefined;
  readonly finalState: string | undefined;
  readonly steps: number;
  readonly preemptions: number;
}

export interface DporOptions {
  /** Partial-order reduction (default true); false = plain bounded DFS. */
  reduction?: boolean;
  /** Stop at the first violation (default true). */
  stopAtFirstViolation?: boolean;
  /** Overrides the subject's limits (injections); `bounds.depth` overrides maxInstructions. */
  limits?: ExecutionLimits;
  /** Told about every execution as it ends. */
  onExecution?: (e: DporExecution) => void;
  /**
   * Cache explored states (stateful DPOR, src/check/dpor-cache.ts): default on with reduction, for
   * a subject whose executions hash their own state (Execution.stateHash); never without reduction.
   */
  cache?: boolean;
  /** The cache's capacity in states (default DEFAULT_MAX_STATES); beyond it, states are not kept. */
  maxStates?: number;
}

export interface DporViolation {
  readonly verdict: Verdict;
  /** The violating execution's schedule (ReplayChooser reproduces it from the same snapshot). */
  readonly schedule: Schedule;
  readonly execution: number;
  readonly steps: number;
  readonly preemptions: number;
}

export interface DporResult {
  readonly outcome: 'violation' | 'exhausted' | 'bounded';
  readonly executions: number;
  /** Distinct final states of finished executions, with how many executions ended in each. */
  readonly states: Map<string, number>;
  /** Finished executions by verdict: 'ok' or the check that failed. */
  readonly verdicts: Map<string, number>;
  readonly ends: Record<ExecutionEnd, number>;
  /** Every interleaving within the preemption bound was explored: none cut by depth or the execution cap. */
  readonly exhausted: boolean;
  /** The preemption bound left out a branch (a larger bound explores more). */
  readonly preemptionLimited: boolean;
  readonly violation?: DporViolation;
  /** The state cache's figures, when it was on. */
  readonly cache?: CacheStats;
}


/**
 * Explore `subject` within `bounds`. The first violation (by default the search stops there) comes
 * with its schedule; ReplayChooser on that schedule reproduces it from the same snapshot.
 */
export function exploreDpor(subject: Subject, bounds: DporBounds = {}, options: DporOptions = {}): DporResult {
  const reduction = options.reduction ?? true;
  const stopAtFirst = options.stopAtFirstViolation ?? true;
  const base = options.limits ?? subject.limits;
  const limits: ExecutionLimits = { ...base, ...(bounds.depth !== undefined ? { maxInstructions: bounds.depth } : {}) };
  const probe = subject.start();
  const caching = reduction && (options.cache ?? true) && probe.stateHash !== undefined;
  const cache = caching ? new StateCache(options.maxStates) : undefined;
  const window = bounds.window;
  const explorer = new Explorer(bounds.preemptions, cache, window?.toStep);
  const states = new Map<string, number>();
  const verdicts = new Map<string, number>();
  const ends: Record<ExecutionEnd, number> = { finished: 0, 'depth-bound': 0, 'sleep-blocked': 0, 'preemption-bound': 0, 'redundant-cycle': 0, livelock: 0, cached: 0 };
  let executions = 0;
  let found: DporViolation | undefined;
  let prefix = 0;
  let finishedSearch = false;
  let cut = false;
  for (;;) {
    if (bounds.maxExecutions !== undefined && executions >= bounds.maxExecutions) {
      cut = true;
      break;
    }
    const exec = executions === 0 ? probe : subject.start();
    const recorder = new FootprintRecorder(exec.machine.memory, subject.vcpus);
    exec.machine.recordFootprints(recorder);
    const trace = new Trace(subject.vcpus);
    const chooser = new DporChooser(explorer.path, prefix, exec.machine, recorder, trace, {
      reduction,
      preemptionBound: bounds.preemptions,
      ...(window !== undefined ? {
        prefix: { fromStep: window.fromStep, chooser: new RandomChooser(window.seed ?? 1, { weights: { inject: 0, preempt: 0 } }) },
        outsideWindow: (step: number) => step >= window.toStep,
      } : {}),
      ...(cache !== undefined ? { cache: { states: cache, subjectHash: () => exec.stateHash?.() } } : {}),
    });
    let end: ExecutionEnd = 'finished';
    let verdict: Verdict | undefined;
    let finalState: string | undefined;
    let lastCut: ExplorationCut | undefined;
    try {
      const r = exec.run(chooser, limits);
      const reason = r.run.reason;
      chooser.finish(reason === 'until' || reason === 'hazard' || reason === 'error');
      if (reason === 'limit') end = 'depth-bound';
      else {
        verdict = r.verdict;
        finalState = r.finalState;
      }
    } catch (e) {
      if (!(e instanceof ExplorationCut)) throw e;
      end = e.reason;
      lastCut = e;
      if (e.cycle !== undefined) {
        const cpus = e.cycle.cpus.map((c) => `vCPU ${c}`).join(', ');
        verdict = violation('livelock', e.cycle.step, `the machine state repeated with no other progress possible: ${cpus} go round a cycle forever`, e.cycle.cpus.length === 1 ? { cpu: e.cycle.cpus[0]! } : {});
      }
    }
    executions++;
    exec.machine.recordFootprints(undefined);
    for (const [x, ev] of chooser.races) explorer.reverse(trace, x, ev);
    explorer.summarize(trace, prefix - 1);
    if (chooser.boundHit) {
      explorer.preemptionLimited = true;
      explorer.markBelow('limited');
    }
    let hit: FrozenSummary | undefined;
    if (end === 'cached') {
      // The throw carried the summary; an ExplorationCut of any other reason carries none.
      hit = lastCut?.summary;
      if (hit !== undefined) {
        explorer.cacheHit(trace, hit);
        if (hit.limited) explorer.preemptionLimited = true;
      }
    }
    if (end === 'depth-bound' || hit?.depthCut === true) {
      cut = true;
      explorer.markIncomplete();
      explorer.markBelow('depthCut');
    }
    ends[end]++;
    if (finalState !== undefined) states.set(finalState, (states.get(finalState) ?? 0) + 1);
    if (verdict !== undefined) verdicts.set(verdict.ok ? 'ok' : verdict.check, (verdicts.get(verdict.ok ? 'ok' : verdict.check) ?? 0) + 1);
    const steps = exec.machine.step;
    options.onExecution?.({ index: executions - 1, end, verdict, finalState, steps, preemptions: chooser.preemptionCount });
    if (verdict !== undefined && !verdict.ok && found === undefined) {
      found = { verdict, schedule: recordedSchedule(exec.machine), execution: executions - 1, steps, preemptions: chooser.preemptionCount };
      if (stopAtFirst) break;
    }
    prefix = explorer.advance();
    if (prefix === 0) {
      finishedSearch = true;
      break;
    }
  }
  const exhausted = finishedSearch && !cut && window === undefined;
  return {
    outcome: found !== undefined ? 'violation' : exhausted ? 'exhausted' : 'bounded',
    executions,
    states,
    verdicts,
    ends,
    exhausted,
    preemptionLimited: explorer.preemptionLimited,
    ...(found !== undefined ? { violation: found } : {}),
    ...(cache !== undefined ? { cache: cache.stats() } : {}),
  };
}
