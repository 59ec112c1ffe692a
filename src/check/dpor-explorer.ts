/**
 * The exploration path of src/check/dpor.ts and what changes it between executions: reversing
 * races into backtrack sets (source-DPOR), BPOR's conservative points under a preemption bound,
 * the state cache's summaries and hits (src/check/dpor-cache.ts), and the move to the next branch.
 */
import { ActionKind, action, actionCpu, actionKind } from '../machine/chooser.ts';
import type { Trace } from './dpor-trace.ts';
import { preemptionCost, type PathNode, type ScheduleNode } from './dpor-chooser.ts';
import { GrowingSummary, dependsOnSummary, type FrozenSummary, type StateCache } from './dpor-cache.ts';

/**
 * BPOR's conservative points for backtracks at every node of the path: for node `i`, the last
 * node before it where a switch of vCPU happened or would be free (nothing running yet, the
 * running vCPU blocked or yielding), so that a switch the bound forbids at `i` is also tried where
 * it costs nothing (-1: none). Entry path.length is for a point after the path's end.
 */
function contextSwitches(path: PathNode[]): Int32Array {
  const out = new Int32Array(path.length + 1);
  let last = -1;
  for (let j = 0; j < path.length; j++) {
    out[j] = last;
    const n = path[j]!;
    if (n.kind !== 'schedule') continue;
    const switched = actionKind(n.chosen) === ActionKind.Step && n.running >= 0 && actionCpu(n.chosen) !== n.running;
    const free = n.running < 0 || n.yieldable || !n.enabled.includes(action(n.running, ActionKind.Step));
    if (switched || free) last = j;
  }
  out[path.length] = last;
  return out;
}

export class Explorer {
  readonly path: PathNode[] = [];
  /** The preemption bound left a branch out. */
  preemptionLimited = false;

  constructor(
    private readonly bound: number | undefined,
    private readonly cache: StateCache | undefined,
    /** Nodes from this step on get no branches (a window's end). */
    private readonly windowEnd: number = Infinity,
  ) {}

  private below(i: number): GrowingSummary {
    const n = this.path[i]!;
    return (n.below ??= new GrowingSummary());
  }

  /** The execution's events from node `from` on go into their nodes' summaries (stateful only). */
  summarize(trace: Trace, from: number): void {
    if (this.cache === undefined) return;
    for (const ev of trace.events) if (ev.node >= from) this.below(ev.node).addEvent(ev.proc, ev.fp, ev.terminal);
  }

  /** Something below the current path's end was cut by the depth bound or limited by the preemption bound. */
  markBelow(what: 'depthCut' | 'limited'): void {
    if (this.cache !== undefined && this.path.length > 0) this.below(this.path.length - 1)[what] = true;
  }

  /**
   * The execution ended at a cached state (after node path.length - 1): every summarized event may
   * race with every event of the trace it depends on (src/check/dpor-cache.ts says why this is a
   * superset of what exploring the subtree again would add).
   */
  cacheHit(trace: Trace, s: FrozenSummary): void {
    const full = new Set<number>();
    const lastOfProc = new Map<number, number>();
    trace.events.forEach((ev, x) => lastOfProc.set(ev.proc, x));
    trace.events.forEach((ev, x) => {
      if (full.has(ev.node)) return;
      const races = s.procs.some(([p, f]) => p !== ev.proc && dependsOnSummary(ev.fp, ev.proc, p, f))
        || (lastOfProc.get(ev.proc) === x && s.terminal.some((p) => p !== ev.proc));
      if (!races) return;
      full.add(ev.node);
      const node = this.path[ev.node] as ScheduleNode;
      for (const q of node.enabled) if (!node.blocked.includes(q)) this.addBacktrack(ev.node, q, false);
    });
    if (this.bound !== undefined) for (const [p] of s.procs) this.conservative(this.path.length, p);
    if (this.path.length > 0) this.below(this.path.length - 1).merge(s);
  }

  private fits(node: ScheduleNode, proc: number): boolean {
    return this.bound === undefined || node.preemptions + preemptionCost(node, proc) <= this.bound;
  }

  private addBacktrack(i: number, proc: number, conservative: boolean): void {
    const node = this.path[i] as ScheduleNode;
    if (node.step >= this.windowEnd) return;
    if (this.fits(node, proc)) node.backtrack.add(proc);
    else {
      this.preemptionLimited = true;
      if (this.cache !== undefined) this.below(i).limited = true;
    }
    if (this.bound !== undefined && !conservative) this.conservative(i, proc);
  }

  /** lastSwitch[i]: contextSwitches(path), for the path as it stands between two advance() calls. */
  private switches: Int32Array | undefined;

  /** BPOR: the same process at the last context switch before node i (all enabled there if it is not). */
  private conservative(i: number, proc: number): void {
    this.switches ??= contextSwitches(this.path);
    const j = this.switches[i]!;
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
    // An initial the bound forbids here may still start v where switching to it is free.
    if (this.bound !== undefined) for (const p of initials) if (p !== q && !this.fits(node, p)) this.conservative(i, p);
  }

  /** The current branches of nodes [0, upTo) left something out: their process will not sleep. */
  markIncomplete(upTo = this.path.length): void {
    for (let j = 0; j < upTo; j++) {
      const n = this.path[j]!;
      if (n.kind === 'schedule') n.incomplete = true;
    }
  }

  /** Node `i`'s subtree is finished: cache its summary under its key and pass it to its parent. */
  private finished(i: number): void {
    const n = this.path[i]!;
    if (this.cache === undefined || n.below === undefined) return;
    const s = n.below.freeze(this.cache);
    if (n.kind === 'schedule' && n.key !== undefined) this.cache.insert(n.key, s);
    if (i > 0) this.below(i - 1).merge(s);
  }

  /** Move to the next branch, deepest first; returns the new prefix length, or 0 when done. */
  advance(): number {
    this.switches = undefined;
    while (this.path.length > 0) {
      const node = this.path[this.path.length - 1]!;
      if (node.kind === 'choice') {
        if (node.chosen + 1 < node.values) {
          node.chosen++;
          return this.path.length;
        }
        this.finished(this.path.length - 1);
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
      this.finished(this.path.length - 1);
      this.path.pop();
    }
    return 0;
  }
}
