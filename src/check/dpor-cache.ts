/**
 * DPOR's state cache (stateful DPOR; issue 9: "correct text_poke_bp on 2 vCPUs and one site is
 * exhausted at bound 2"). When an execution reaches a state whose subtree the search has already
 * explored completely, it ends there. Naive visited-state pruning under DPOR is unsound: the races
 * between the events of the pruned subtree and the events of the current path would have put
 * backtrack points on the current path, and they are lost (Yang, Chen, Gopalakrishnan, Kirby,
 * "Efficient stateful dynamic partial order reduction", SPIN 2008, §3). The scheme here is theirs
 * in its simplest, conservative form:
 *
 * - Every node of the exploration path accumulates a summary of the events explored below it: per
 *   process, the union of the footprints of its events, and whether a process ended a run (a
 *   terminal event). When a node's subtree is finished (the node is popped), its summary is final
 *   and is cached under the node's key; it is merged into its parent's. A hit merges the cached
 *   summary into the path the same way, so a summary covers the pruned subtrees below it too.
 * - On a hit, src/check/dpor.ts treats every summarized event as if it ran next, racing with every
 *   event of the current execution it may depend on, with no happens-before to spare any: each such
 *   event's node gets every enabled process into its backtrack set (a superset of the initials
 *   source-DPOR would add, Abdulla et al. 2014 Algorithm 1), and every summarized process gets
 *   BPOR's conservative point at the last context switch before the hit (Coons et al. 2013), the
 *   point a race inside the pruned subtree may have sent above it.
 * - A hit is only ever against a finished subtree: an unfinished node is an ancestor on the current
 *   path, so its state is already in the execution's own cycle table, which is consulted first
 *   (src/check/dpor-chooser.ts), and the cache is not.
 *
 * The key holds everything that decides what the search explores below a node: the machine's state
 * hash (src/check/state-hash.ts, which covers the text bytes' cross-modifying-code record), the
 * subject's own state beyond the machine (Execution.stateHash: without it nothing is cached), the
 * injections taken by kind (the budget left), the preemptions taken, the running vCPU and whether
 * it just paused, and the sleep set with its footprints. What a subtree explored below a state
 * does not depend on the path that reached it otherwise: the races inside the subtree only involve
 * events inside it.
 *
 * Flags travel with the summaries: a subtree cut by the depth bound makes a search that hits it
 * `bounded`, one the preemption bound limited makes it preemption-limited. What the cache does not
 * keep: livelock detection sees the cycles closed within one execution; a cycle through states of
 * earlier executions ends at a hit instead (the search still visits every state of it).
 *
 * Memory is bounded: at `maxStates` entries the cache stops taking new ones (reported as `full`);
 * summaries are interned, so the many states with one future footprint share one object.
 */
import { ActionKind, actionCpu, actionKind } from '../machine/chooser.ts';
import { isDataGranule, type Footprint } from '../machine/footprint.ts';
import { Lanes } from './state-hash.ts';
import type { SleepEntry } from './dpor-chooser.ts';

/** The cache's default capacity (states); about 100 bytes each, summaries being shared. */
export const DEFAULT_MAX_STATES = 1_000_000;

/** The union of one process's event footprints, as sorted arrays (frozen) or sets (growing). */
interface FrozenFootprint {
  readonly reads: Float64Array;
  readonly writes: Float64Array;
  readonly fetches: Float64Array;
}

/** A finished subtree's summary: shared, never changed. */
export interface FrozenSummary {
  readonly procs: readonly (readonly [number, FrozenFootprint])[];
  readonly terminal: readonly number[];
  readonly depthCut: boolean;
  readonly limited: boolean;
}

/** The summary a path node grows while its subtree is explored. */
export class GrowingSummary {
  private readonly procs = new Map<number, { reads: Set<number>; writes: Set<number>; fetches: Set<number> }>();
  private readonly terminal = new Set<number>();
  /** Frozen summaries merged already (interned: one merge each is enough). */
  private readonly merged = new Set<FrozenSummary>();
  depthCut = false;
  limited = false;

  private of(proc: number) {
    let p = this.procs.get(proc);
    if (p === undefined) this.procs.set(proc, (p = { reads: new Set(), writes: new Set(), fetches: new Set() }));
    return p;
  }

  addEvent(proc: number, fp: Footprint, terminal: boolean): void {
    const p = this.of(proc);
    for (const g of fp.reads) p.reads.add(g);
    for (const g of fp.writes) p.writes.add(g);
    for (const g of fp.fetches) p.fetches.add(g);
    if (terminal) this.terminal.add(proc);
  }

  merge(s: FrozenSummary): void {
    if (this.merged.has(s)) return;
    this.merged.add(s);
    for (const [proc, f] of s.procs) {
      const p = this.of(proc);
      for (const g of f.reads) p.reads.add(g);
      for (const g of f.writes) p.writes.add(g);
      for (const g of f.fetches) p.fetches.add(g);
    }
    for (const t of s.terminal) this.terminal.add(t);
    this.depthCut ||= s.depthCut;
    this.limited ||= s.limited;
  }

  /** The summary as it stands, interned in `cache`. */
  freeze(cache: StateCache): FrozenSummary {
    const sorted = (s: Set<number>) => Float64Array.from(s).sort();
    const procs = [...this.procs].sort((a, b) => a[0] - b[0]).map(([proc, p]) => [proc, { reads: sorted(p.reads), writes: sorted(p.writes), fetches: sorted(p.fetches) }] as const);
    return cache.intern({ procs, terminal: [...this.terminal].sort((a, b) => a - b), depthCut: this.depthCut, limited: this.limited });
  }
}

function has(a: Float64Array, g: number): boolean {
  let lo = 0, hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1, v = a[mid]!;
    if (v === g) return true;
    if (v < g) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/**
 * May an event (fp, proc) depend on some event of process `p` summarized by `f`? The same relation
 * as src/check/dpor-trace.ts's `dependent`, over the union: one writes what the other reads, writes
 * or fetches; a vCPU's steps and its own drains do not conflict on plain data granules.
 */
export function dependsOnSummary(fp: Footprint, proc: number, p: number, f: FrozenFootprint): boolean {
  const kx = actionKind(proc), kp = actionKind(p);
  const ownBuffer = actionCpu(proc) === actionCpu(p) && ((kx === ActionKind.Step && kp === ActionKind.Drain) || (kx === ActionKind.Drain && kp === ActionKind.Step));
  for (const w of fp.writes) {
    if (has(f.fetches, w)) return true;
    if (ownBuffer && isDataGranule(w)) continue;
    if (has(f.writes, w) || has(f.reads, w)) return true;
  }
  for (const w of f.writes) {
    if (fp.fetches.includes(w)) return true;
    if (ownBuffer && isDataGranule(w)) continue;
    if (fp.writes.includes(w) || fp.reads.includes(w)) return true;
  }
  return false;
}

/** The part of a node's key that is not machine state. */
export interface KeyParts {
  readonly preemptions: number;
  readonly running: number;
  readonly runningPaused: boolean;
  readonly sleep: readonly SleepEntry[];
}

/** The cache key of a state (see the module comment for what it must hold). */
export function cacheKey(stateHash: number, subjectHash: number, parts: KeyParts): number {
  const h = new Lanes();
  h.add(stateHash);
  h.add(subjectHash);
  h.add(parts.preemptions);
  h.add(parts.running);
  h.add(parts.runningPaused ? 1 : 0);
  const sleep = [...parts.sleep].sort((a, b) => a.proc - b.proc);
  h.add(sleep.length);
  for (const s of sleep) {
    h.add(s.proc);
    if (s.fp === null) {
      h.add(-1);
      continue;
    }
    for (const list of [s.fp.reads, s.fp.writes, s.fp.fetches]) {
      h.add(list.length);
      for (const g of [...list].sort((a, b) => a - b)) h.add(g);
    }
  }
  return h.value();
}

export interface CacheStats {
  /** States cached (subtrees finished and kept). */
  readonly states: number;
  readonly hits: number;
  /** Distinct summaries (the cache's memory is mostly these). */
  readonly summaries: number;
  /** The cache reached its capacity and stopped taking states. */
  readonly full: boolean;
  readonly maxStates: number;
}

export class StateCache {
  private readonly entries = new Map<number, FrozenSummary>();
  private readonly interned = new Map<number, FrozenSummary[]>();
  hits = 0;
  full = false;

  constructor(readonly maxStates: number = DEFAULT_MAX_STATES) {}

  lookup(key: number): FrozenSummary | undefined {
    const s = this.entries.get(key);
    if (s !== undefined) this.hits++;
    return s;
  }

  /** A finished subtree's summary under its key (dropped once the cache is full). */
  insert(key: number, s: FrozenSummary): void {
    if (this.entries.has(key)) return;
    if (this.entries.size >= this.maxStates) {
      this.full = true;
      return;
    }
    this.entries.set(key, s);
  }

  intern(s: FrozenSummary): FrozenSummary {
    const h = new Lanes();
    for (const [proc, f] of s.procs) {
      h.add(proc);
      for (const a of [f.reads, f.writes, f.fetches]) {
        h.add(a.length);
        for (const g of a) h.add(g);
      }
    }
    for (const t of s.terminal) h.add(t);
    h.add((s.depthCut ? 1 : 0) | (s.limited ? 2 : 0));
    const k = h.value();
    const bucket = this.interned.get(k) ?? [];
    const same = bucket.find((o) => sameSummary(o, s));
    if (same !== undefined) return same;
    bucket.push(s);
    this.interned.set(k, bucket);
    return s;
  }

  stats(): CacheStats {
    let summaries = 0;
    for (const b of this.interned.values()) summaries += b.length;
    return { states: this.entries.size, hits: this.hits, summaries, full: this.full, maxStates: this.maxStates };
  }
}

function sameArray(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameSummary(a: FrozenSummary, b: FrozenSummary): boolean {
  if (a.depthCut !== b.depthCut || a.limited !== b.limited || a.procs.length !== b.procs.length || a.terminal.length !== b.terminal.length) return false;
  if (a.terminal.some((t, i) => t !== b.terminal[i])) return false;
  return a.procs.every(([p, f], i) => {
    const [q, g] = b.procs[i]!;
    return p === q && sameArray(f.reads, g.reads) && sameArray(f.writes, g.writes) && sameArray(f.fetches, g.fetches);
  });
}
