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
 * last context switch before it. `depth` bounds instructions per execution. A search that never
 * left anything out because of a bound and ran out of branches is `exhausted`; otherwise it is
 * `bounded`. With `reduction: false` the same explorer is plain bounded DFS over every enabled
 * action (the baseline DPOR is measured against).
 *
 * The Subject must let errors that are not user-facing through its run(): an execution ends early
 * by an ExplorationCut thrown from the chooser.
 */
import { ActionKind, actionCpu, actionKind } from '../machine/chooser.ts';
import { FootprintRecorder } from '../machine/footprint.ts';
import type { Decision } from '../machine/machine.ts';
import { Trace } from './dpor-trace.ts';
import { DporChooser, ExplorationCut, preemptionCost, type CutReason, type PathNode, type ScheduleNode } from './dpor-chooser.ts';
import type { ExecutionLimits, Subject } from './subject.ts';
import { violation, type Verdict } from './verdict.ts';

export interface DporBounds {
  /** Preemptions per execution (undefined: unbounded). */
  preemptions?: number;
  /** Instructions per execution (default: the subject's limit). */
  depth?: number;
  /** Stop after this many executions (the search is then `bounded`). */
  maxExecutions?: number;
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
}

export interface DporViolation {
  readonly verdict: Verdict;
  /** The decision list of the violating execution, as ReplayChooser takes it. */
  readonly schedule: number[];
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
  /** Every branch within the bounds was explored and no bound cut anything. */
  readonly exhausted: boolean;
  /** Some execution or branch was left out because of a bound. */
  readonly bounded: boolean;
  readonly violation?: DporViolation;
}

/** A machine's run-length encoded decision log as the flat decision list ReplayChooser takes. */
export function replayDecisions(log: readonly Decision[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < log.length; i += 2) for (let k = 0; k < log[i + 1]!; k++) out.push(log[i]!);
  return out;
}

/** The last node before `i` where the running vCPU changed (BPOR's conservative point), or -1. */
function lastContextSwitch(path: PathNode[], i: number): number {
  for (let j = i - 1; j >= 0; j--) {
    const n = path[j]!;
    if (n.kind === 'schedule' && actionKind(n.chosen) === ActionKind.Step && n.running >= 0 && actionCpu(n.chosen) !== n.running) return j;
  }
  return -1;
}

class Explorer {
  readonly path: PathNode[] = [];
  bounded = false;

  constructor(private readonly bound: number | undefined) {}

  private fits(node: ScheduleNode, proc: number): boolean {
    return this.bound === undefined || node.preemptions + preemptionCost(node, proc) <= this.bound;
  }

  private addBacktrack(i: number, proc: number, conservative: boolean): void {
    const node = this.path[i] as ScheduleNode;
    if (this.fits(node, proc)) node.backtrack.add(proc);
    else this.bounded = true;
    if (this.bound === undefined || conservative) return;
    const j = lastContextSwitch(this.path, i);
    if (j < 0) return;
    const at = this.path[j] as ScheduleNode;
    const procs = at.enabled.includes(proc) ? [proc] : at.enabled;
    for (const p of procs) if (!at.blocked.includes(p)) this.addBacktrack(j, p, true);
  }

  /** Reverse race x ⋖ e (source-DPOR, Algorithm 1 lines 4-8). */
  reverse(trace: Trace, x: number, e: number): void {
    const i = trace.events[x]!.node;
    const node = this.path[i] as ScheduleNode;
    const initials = trace.initials(x, e).filter((q) => node.enabled.includes(q) && !node.blocked.includes(q));
    if (initials.length === 0) return; // x enabled e: not reversible
    if (initials.some((q) => q === node.chosen || node.backtrack.has(q) || node.done.has(q))) return;
    const q = initials.find((p) => this.fits(node, p)) ?? initials[0]!;
    this.addBacktrack(i, q, false);
  }

  markIncomplete(): void {
    for (const n of this.path) if (n.kind === 'schedule') n.incomplete = true;
  }

  /** Move to the next branch, deepest first; returns the new prefix length, or 0 when done. */
  advance(): number {
    while (this.path.length > 0) {
      const node = this.path[this.path.length - 1]!;
      if (node.kind === 'choice') {
        if (node.chosen + 1 < node.values) {
          node.chosen++;
          return this.path.length;
        }
        this.path.pop();
        continue;
      }
      node.done.set(node.chosen, { proc: node.chosen, fp: node.chosenFp, complete: !node.incomplete });
      node.incomplete = false;
      node.chosenFp = null;
      const next = [...node.backtrack]
        .sort((a, b) => a - b)
        .find((q) => !node.done.has(q) && !node.blocked.includes(q) && !node.sleep.some((s) => s.proc === q));
      if (next !== undefined) {
        node.chosen = next;
        return this.path.length;
      }
      this.path.pop();
    }
    return 0;
  }
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
  const explorer = new Explorer(bounds.preemptions);
  const states = new Map<string, number>();
  const verdicts = new Map<string, number>();
  const ends: Record<ExecutionEnd, number> = { finished: 0, 'depth-bound': 0, 'sleep-blocked': 0, 'preemption-bound': 0, 'redundant-cycle': 0, livelock: 0 };
  let executions = 0;
  let found: DporViolation | undefined;
  let prefix = 0;
  let finishedSearch = false;
  for (;;) {
    if (bounds.maxExecutions !== undefined && executions >= bounds.maxExecutions) {
      explorer.bounded = true;
      break;
    }
    const exec = subject.start();
    const recorder = new FootprintRecorder(exec.machine.memory, subject.vcpus);
    exec.machine.recordFootprints(recorder);
    const trace = new Trace(subject.vcpus);
    const chooser = new DporChooser(explorer.path, prefix, exec.machine, recorder, trace, { reduction, preemptionBound: bounds.preemptions });
    let end: ExecutionEnd = 'finished';
    let verdict: Verdict | undefined;
    let finalState: string | undefined;
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
      if (e.cycle !== undefined) {
        const cpus = e.cycle.cpus.map((c) => `vCPU ${c}`).join(', ');
        verdict = violation('livelock', e.cycle.step, `the machine state repeated with no other progress possible: ${cpus} go round a cycle forever`, e.cycle.cpus.length === 1 ? { cpu: e.cycle.cpus[0]! } : {});
      }
    }
    executions++;
    exec.machine.recordFootprints(undefined);
    for (const [x, ev] of chooser.races) explorer.reverse(trace, x, ev);
    if (chooser.boundHit) explorer.bounded = true;
    if (end === 'depth-bound') {
      explorer.bounded = true;
      explorer.markIncomplete();
    }
    ends[end]++;
    if (finalState !== undefined) states.set(finalState, (states.get(finalState) ?? 0) + 1);
    if (verdict !== undefined) verdicts.set(verdict.ok ? 'ok' : verdict.check, (verdicts.get(verdict.ok ? 'ok' : verdict.check) ?? 0) + 1);
    const steps = exec.machine.step;
    options.onExecution?.({ index: executions - 1, end, verdict, finalState, steps, preemptions: chooser.preemptionCount });
    if (verdict !== undefined && !verdict.ok && found === undefined) {
      found = { verdict, schedule: replayDecisions(exec.machine.decisions), execution: executions - 1, steps, preemptions: chooser.preemptionCount };
      if (stopAtFirst) break;
    }
    prefix = explorer.advance();
    if (prefix === 0) {
      finishedSearch = true;
      break;
    }
  }
  const exhausted = finishedSearch && !explorer.bounded;
  return {
    outcome: found !== undefined ? 'violation' : exhausted ? 'exhausted' : 'bounded',
    executions,
    states,
    verdicts,
    ends,
    exhausted,
    bounded: explorer.bounded,
    ...(found !== undefined ? { violation: found } : {}),
  };
}
