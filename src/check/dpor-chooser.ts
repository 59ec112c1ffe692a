/**
 * One DPOR execution as a Chooser: it replays the exploration path's decisions up to the branch
 * being explored, then extends the path with new scheduling nodes, taking a default at each
 * (continue the running vCPU, else drain, else the lowest vCPU, else inject). Every action's
 * footprint goes into the execution's Trace; the races of new events are kept for the explorer.
 *
 * Spinning (DESIGN.md §3: a vCPU spinning on PAUSE is not a useful choice forever): at each
 * scheduling point the machine state is hashed. When a state repeats within the execution, the
 * processes that moved since its first occurrence went round a cycle:
 * - if every enabled vCPU step and drain took part, nothing else can happen: a livelock;
 * - if this execution's branch point lies inside the cycle, the cycle only re-enters a state whose
 *   futures the branch's ancestors explore: the execution ends (redundant);
 * - otherwise the cycling processes yield (CHESS-style fair scheduling): they may not be chosen at
 *   this node, and switching away from them is no preemption.
 *
 * State caching (src/check/dpor-cache.ts): at a new node whose state did not repeat within the
 * execution, the node's cache key is looked up; a hit ends the execution (`cached`) and hands the
 * cached summary to the explorer. A node of a subject that cannot hash its own state has no key.
 *
 * A window (src/check/dpor.ts's DporWindow): before its first step, a seeded chooser of the
 * settings decides, the same way in every execution; those actions make no nodes and no events
 * (a race with one of them could only branch before the window).
 */
import { ActionKind, action, actionCpu, actionKind, type Chooser, type ChoiceKind, type CostClass, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import type { Machine } from '../machine/machine.ts';
import type { Footprint, FootprintRecorder } from '../machine/footprint.ts';
import { dependent, type Trace } from './dpor-trace.ts';
import { textByteAddress } from '../machine/footprint.ts';
import { machineStateHash } from './state-hash.ts';
import { cacheKey, type FrozenSummary, type GrowingSummary, type StateCache } from './dpor-cache.ts';

/** A process that need not be explored here: explored before (fp: its next event), or ⊤ (null). */
export interface SleepEntry {
  readonly proc: number;
  readonly fp: Footprint | null;
}

export interface ScheduleNode {
  readonly kind: 'schedule';
  /** Enabled actions, in the machine's order. */
  readonly enabled: readonly number[];
  /** The vCPU of the last step before this node (-1: none yet). */
  readonly running: number;
  /** Switching away from `running` here costs no preemption (it just spun: PAUSE or a cycle). */
  readonly yieldable: boolean;
  /** Preemptions before this node. */
  readonly preemptions: number;
  /** The machine's step count at this node (a window's end is a step). */
  readonly step: number;
  readonly sleep: readonly SleepEntry[];
  /** Processes of a cycle that closed here: not to be chosen here. */
  readonly blocked: readonly number[];
  /** Processes still to explore from here. */
  readonly backtrack: Set<number>;
  /** Processes explored from here, with their event's footprint; `complete`: no bound cut below. */
  readonly done: Map<number, SleepEntry & { readonly complete: boolean }>;
  chosen: number;
  /** Union of the chosen event's footprints over the executions of this branch. */
  chosenFp: Footprint | null;
  /** An execution below the current branch was cut by the depth bound. */
  incomplete: boolean;
  /** The state cache's key of this node (undefined: not cacheable). */
  readonly key: number | undefined;
  /** What was explored below this node so far (src/check/dpor-cache.ts). */
  below: GrowingSummary | undefined;
}

/** A non-scheduling choice (old or new bytes at a legal CMC fetch): every value is explored. */
export interface ChoiceNode {
  readonly kind: 'choice';
  readonly values: number;
  chosen: number;
  below: GrowingSummary | undefined;
}

export type PathNode = ScheduleNode | ChoiceNode;

/** Why an execution ended before the machine stopped it. */
export type CutReason = 'sleep-blocked' | 'preemption-bound' | 'redundant-cycle' | 'livelock' | 'cached';

/** Thrown out of the machine's run loop to end an execution early (not a user-facing error). */
export class ExplorationCut extends Error {
  constructor(
    readonly reason: CutReason,
    /** For a livelock: the vCPUs going round the cycle, and the step where it closed. */
    readonly cycle: { cpus: number[]; step: number } | undefined = undefined,
    /** For a cache hit: what the search explored below the state. */
    readonly summary: FrozenSummary | undefined = undefined,
  ) {
    super(`exploration cut: ${reason}`);
    this.name = 'ExplorationCut';
  }
}

/** The preemption cost of choosing `proc` at `node`: a switch away from a vCPU that could continue. */
export function preemptionCost(node: ScheduleNode, proc: number): number {
  if (actionKind(proc) !== ActionKind.Step || node.running < 0 || actionCpu(proc) === node.running || node.yieldable) return 0;
  return node.enabled.includes(action(node.running, ActionKind.Step)) ? 1 : 0;
}

function unionFp(a: Footprint | null, b: Footprint): Footprint {
  if (a === null) return b;
  const u = (x: readonly number[], y: readonly number[]) => [...x, ...y.filter((g) => !x.includes(g))];
  return { reads: u(a.reads, b.reads), writes: u(a.writes, b.writes), fetches: u(a.fetches, b.fetches) };
}

export interface ExecutionSettings {
  /** Partial-order reduction (races and sleep sets) on, or plain bounded DFS over every enabled action. */
  readonly reduction: boolean;
  readonly preemptionBound: number | undefined;
  /** The state cache, and the subject's hash of its own state (undefined: none caching). */
  readonly cache?: { readonly states: StateCache; readonly subjectHash: () => number | undefined };
  /** Decides every point before step `fromStep` (a window's prefix), fresh for each execution. */
  readonly prefix?: { readonly fromStep: number; readonly chooser: Chooser };
  /** Nodes at these steps get no branches but their default (beyond a window's end). */
  readonly outsideWindow?: (step: number) => boolean;
}

export class DporChooser implements Chooser {
  readonly name = 'dpor';
  /** (x, e) pairs: event x races with new event e. */
  readonly races: [number, number][] = [];
  /** A default choice was impossible within the preemption bound, or DFS left an action out. */
  boundHit = false;
  private pos = 0;
  private current: { proc: number; node: number; buffered: number; drained: number } | undefined;
  private sleep: readonly SleepEntry[] = [];
  private preemptions = 0;
  private running = -1;
  private runningPaused = false;
  /** Injections taken, by action kind (the run's budgets left are part of the state). */
  private readonly injections = new Int32Array(8);
  /** Text bytes this execution wrote (their cross-modifying-code record is state). */
  private readonly textWritten = new Set<number>();
  private readonly seen = new Map<number, number>();
  private readonly initialBuffer: number[];

  constructor(
    private readonly path: PathNode[],
    /** Nodes [0, prefix) are replayed; node prefix-1 is the branch being explored (-1: first run). */
    private readonly prefix: number,
    private readonly machine: Machine,
    private readonly recorder: FootprintRecorder,
    private readonly trace: Trace,
    private readonly settings: ExecutionSettings,
  ) {
    this.initialBuffer = machine.vcpus.map((c) => c.storeBuffer.length);
  }

  /** Preemptions taken so far. */
  get preemptionCount(): number {
    return this.preemptions;
  }

  /** The prefix chooser while the machine is before the window's first step. */
  private get inPrefix(): Chooser | undefined {
    const p = this.settings.prefix;
    return p !== undefined && this.machine.step < p.fromStep ? p.chooser : undefined;
  }

  /** A prefix action is taken: no node, no event; what the state hash needs is kept. */
  private prefixAction(a: number): void {
    const kind = actionKind(a);
    if (kind === ActionKind.Step) this.running = actionCpu(a);
    else if (kind !== ActionKind.Drain) this.injections[kind]!++;
  }

  /** The footprint of the prefix's last action (or of none): only its text writes are kept. */
  private flushPrefix(): void {
    for (const w of this.recorder.take().writes) {
      const t = textByteAddress(w);
      if (t >= 0) this.textWritten.add(t);
    }
  }

  next(point: SchedulingPoint): number {
    const prefix = this.inPrefix;
    if (prefix !== undefined) {
      this.flushPrefix();
      const i = prefix.next(point);
      if (i >= 0 && i < point.count) this.prefixAction(point.actions[i]!);
      return i;
    }
    if (this.settings.prefix !== undefined && this.current === undefined && this.pos === 0) this.flushPrefix();
    const proc = this.point(point.actions.subarray(0, point.count));
    return point.actions.subarray(0, point.count).indexOf(proc);
  }

  forced(a: number): void {
    const prefix = this.inPrefix;
    if (prefix !== undefined) {
      this.flushPrefix();
      prefix.forced?.(a);
      this.prefixAction(a);
      return;
    }
    if (this.settings.prefix !== undefined && this.current === undefined && this.pos === 0) this.flushPrefix();
    this.point(Int32Array.of(a));
  }

  observe(vcpu: Vcpu, kind: ActionKind, cost: CostClass): void {
    this.inPrefix?.observe?.(vcpu, kind, cost);
  }

  choose(kind: string, n: number): number {
    const prefix = this.inPrefix;
    if (prefix !== undefined) return prefix.choose(kind as ChoiceKind, n);
    const k = this.pos++;
    if (k < this.prefix) {
      const node = this.path[k]!;
      if (node.kind !== 'choice' || node.values !== n) throw new Error(`DPOR replay diverged at node ${k}: expected a choice`);
      return node.chosen;
    }
    this.path.push({ kind: 'choice', values: n, chosen: 0, below: undefined });
    return 0;
  }

  /** Record the last action of the run (call once the run has returned). */
  finish(terminal: boolean): void {
    this.finishEvent(terminal);
  }

  private point(actions: Int32Array): number {
    this.finishEvent(false);
    const k = this.pos++;
    let node: ScheduleNode;
    if (k < this.prefix) {
      const n = this.path[k]!;
      if (n.kind !== 'schedule' || n.enabled.length !== actions.length || n.enabled.some((a, i) => a !== actions[i])) {
        throw new Error(`DPOR replay diverged at node ${k}: the run is not deterministic`);
      }
      node = n;
      this.remember(k);
    } else {
      node = this.extend(k, Array.from(actions));
    }
    const proc = node.chosen;
    this.preemptions += preemptionCost(node, proc);
    const cpu = actionCpu(proc);
    this.current = { proc, node: k, buffered: this.recorder.buffered[cpu]!, drained: this.recorder.drained[cpu]! };
    return proc;
  }

  /** Put the state at node k in the cycle table; returns its hash and the node where it was first seen. */
  private remember(k: number): { hash: number | undefined; first: number | undefined } {
    const hash = machineStateHash(this.machine, this.recorder, this.injections, this.textWritten);
    if (hash === undefined) return { hash, first: undefined };
    const first = this.seen.get(hash);
    if (first === undefined) this.seen.set(hash, k);
    return { hash, first };
  }

  /** The cache key of a new node at a state that did not repeat (undefined: not cacheable). */
  private keyOf(hash: number | undefined): number | undefined {
    const cache = this.settings.cache;
    if (cache === undefined || hash === undefined) return undefined;
    const own = cache.subjectHash();
    if (own === undefined) return undefined;
    return cacheKey(hash, own, { preemptions: this.preemptions, running: this.running, runningPaused: this.runningPaused, sleep: this.sleep });
  }

  private extend(k: number, enabled: number[]): ScheduleNode {
    let blocked: number[] = [];
    let yieldable = this.runningPaused;
    const { hash, first } = this.remember(k);
    let key: number | undefined;
    if (first === undefined) {
      key = this.keyOf(hash);
      const hit = key === undefined ? undefined : this.settings.cache!.states.lookup(key);
      if (hit !== undefined) throw new ExplorationCut('cached', undefined, hit);
    } else {
      const cycle = new Set<number>();
      const ev = this.trace.events;
      for (let i = ev.length - 1; i >= 0 && ev[i]!.node >= first; i--) cycle.add(ev[i]!.proc);
      const starved = enabled.filter((a) => !cycle.has(a) && (actionKind(a) === ActionKind.Step || actionKind(a) === ActionKind.Drain));
      if (starved.length === 0) {
        const cpus = [...new Set([...cycle].map(actionCpu))].sort((a, b) => a - b);
        throw new ExplorationCut('livelock', { cpus, step: this.machine.step });
      }
      if (this.prefix - 1 >= first) throw new ExplorationCut('redundant-cycle');
      blocked = enabled.filter((a) => cycle.has(a));
      yieldable = true;
    }
    const node: ScheduleNode = {
      kind: 'schedule',
      enabled,
      running: this.running,
      yieldable,
      preemptions: this.preemptions,
      step: this.machine.step,
      sleep: this.sleep,
      blocked,
      backtrack: new Set(),
      done: new Map(),
      chosen: -1,
      chosenFp: null,
      incomplete: false,
      key,
      below: undefined,
    };
    const bound = this.settings.preemptionBound;
    const fits = (a: number) => bound === undefined || node.preemptions + preemptionCost(node, a) <= bound;
    const open = enabled.filter((a) => !blocked.includes(a) && !node.sleep.some((s) => s.proc === a));
    if (open.length === 0) throw new ExplorationCut('sleep-blocked');
    const byKind = (kind: ActionKind) => open.filter((a) => actionKind(a) === kind && fits(a));
    // The default branch: continue the running vCPU, unless it just paused inside a kernel
    // service, or anywhere while some vCPU is inside one: a service's spin is invisible to the
    // state hash (its generator's locals), so no cycle would ever end the spin, and the vCPU it
    // waits for would never run. The switch is free (the node is yieldable).
    const own = action(this.running, ActionKind.Step);
    const others = byKind(ActionKind.Step).filter((a) => a !== own);
    const serviceSpin = this.runningPaused && others.length > 0 && (hash === undefined || this.machine.vcpus[this.running]!.serviceFrames.length > 0);
    const stay = this.running >= 0 && open.includes(own) && !serviceSpin ? [own] : [];
    // Away from a spin, round-robin from the running vCPU: two spinners never starve a third.
    if (serviceSpin) {
      const n = this.machine.vcpus.length, after = (a: number) => (actionCpu(a) - this.running - 1 + n) % n;
      others.sort((a, b) => after(a) - after(b));
    }
    const pick = [...stay, ...byKind(ActionKind.Drain), ...others, ...(serviceSpin ? [own] : []), ...byKind(ActionKind.Nmi), ...byKind(ActionKind.Irq)][0];
    if (!this.settings.reduction && !this.settings.outsideWindow?.(node.step)) {
      for (const a of open) {
        if (fits(a)) node.backtrack.add(a);
        else this.boundHit = true;
      }
    }
    if (pick === undefined) {
      this.boundHit = true;
      throw new ExplorationCut('preemption-bound');
    }
    node.chosen = pick;
    this.path.push(node);
    return node;
  }

  /**
   * Under a preemption bound, steps of two vCPUs do not commute for the sleep sets: moving one past
   * the other changes which vCPU runs and so what counts as a preemption (the bound's own
   * dependence, Coons et al. 2013). Drains and injections never change that.
   */
  private boundDependent(a: number, b: number): boolean {
    return this.settings.preemptionBound !== undefined && actionKind(a) === ActionKind.Step && actionKind(b) === ActionKind.Step && actionCpu(a) !== actionCpu(b);
  }

  private finishEvent(terminal: boolean): void {
    const cur = this.current;
    if (cur === undefined) return;
    this.current = undefined;
    const fp = this.recorder.take();
    const cpu = actionCpu(cur.proc), kind = actionKind(cur.proc);
    const buffered: [number, number] = [cur.buffered, this.recorder.buffered[cpu]!];
    const drains = kind === ActionKind.Drain && this.recorder.drained[cpu]! > cur.drained ? cur.drained - this.initialBuffer[cpu]! : -1;
    const races = this.trace.add(cur.proc, cur.node, fp, terminal, buffered, drains);
    const e = this.trace.events.length - 1;
    const node = this.path[cur.node] as ScheduleNode;
    node.chosenFp = unionFp(node.chosenFp, fp);
    if (this.settings.reduction) {
      if (cur.node >= this.prefix - 1) for (const x of races) this.races.push([x, e]);
      if (node.sleep.length === 0 && node.done.size === 0) this.sleep = node.sleep;
      else {
        const inherited = [...node.sleep, ...[...node.done.values()].filter((d) => d.complete)];
        this.sleep = inherited.filter((s) => s.proc !== cur.proc && s.fp !== null && !dependent(s.fp, s.proc, fp, cur.proc) && !this.boundDependent(s.proc, cur.proc));
      }
    }
    if (kind === ActionKind.Step) {
      const c = this.machine.vcpus[cpu]!;
      this.running = cpu;
      this.runningPaused = c.lastPause === c.retired - 1;
    } else if (kind !== ActionKind.Drain) this.injections[kind]!++;
    for (const w of fp.writes) {
      const a = textByteAddress(w);
      if (a >= 0) this.textWritten.add(a);
    }
  }
}
