/**
 * The happens-before bookkeeping of one execution for DPOR: events (one per action) with their
 * footprints and vector clocks, the dependence relation, the races of each new event, and the
 * initials of a reversed race (Abdulla et al., "Optimal dynamic partial order reduction", POPL
 * 2014, §4: races e ⋖ e', notdep(e, E), I_[E'](v)).
 *
 * A process is an action of the Chooser interface (`cpu * 4 + kind`): a vCPU's steps, its
 * store-buffer drains, and the NMI and IRQ injections into it are four processes. Happens-before
 * is program order within a process, the order of dependent events, and "a store is buffered
 * before the drain that commits it".
 */
import { ActionKind, actionCpu, actionKind } from '../machine/chooser.ts';
import { isPseudo, type Footprint } from '../machine/footprint.ts';

export interface TraceEvent {
  /** The process (an action). */
  readonly proc: number;
  /** Index of the scheduling node in the exploration path where it was taken. */
  readonly node: number;
  readonly fp: Footprint;
  /** 1-based position among its process's events. */
  readonly seq: number;
  /** For every process, how many of its events happen before (or are) this one. */
  readonly vc: Int32Array;
  /** The run ended after it (a stop condition, a hazard): it disables every other process. */
  readonly terminal: boolean;
}

/**
 * Do two events of different processes conflict? One writes what the other reads, writes or
 * fetches. A vCPU's steps and its own drains never conflict on data: a load that its buffer would
 * forward reads the same value from memory once the store has drained. They do conflict on text
 * (instruction fetch does not see the buffer) and on the store buffer itself.
 */
export function dependent(a: Footprint, pa: number, b: Footprint, pb: number): boolean {
  const ka = actionKind(pa), kb = actionKind(pb);
  const ownBuffer = actionCpu(pa) === actionCpu(pb) && ((ka === ActionKind.Step && kb === ActionKind.Drain) || (ka === ActionKind.Drain && kb === ActionKind.Step));
  return writesHit(a.writes, b, ownBuffer) || writesHit(b.writes, a, ownBuffer);
}

function writesHit(writes: readonly number[], other: Footprint, ownBuffer: boolean): boolean {
  for (const w of writes) {
    if (other.fetches.includes(w)) return true;
    if (ownBuffer && !isPseudo(w)) continue;
    if (other.writes.includes(w) || other.reads.includes(w)) return true;
  }
  return false;
}

function join(into: Int32Array, from: Int32Array): void {
  for (let i = 0; i < into.length; i++) if (from[i]! > into[i]!) into[i] = from[i]!;
}

/** Last event of each process that read, wrote or fetched one location. */
class LastAccess {
  private readonly map = new Map<number, Int32Array>();
  constructor(private readonly procs: number) {}

  get(g: number): Int32Array | undefined {
    return this.map.get(g);
  }

  set(g: number, proc: number, event: number): void {
    let a = this.map.get(g);
    if (a === undefined) {
      a = new Int32Array(this.procs).fill(-1);
      this.map.set(g, a);
    }
    a[proc] = event;
  }
}

export class Trace {
  readonly events: TraceEvent[] = [];
  private readonly lastOfProc: Int32Array;
  private readonly seqOfProc: Int32Array;
  private readonly lastWrite: LastAccess;
  private readonly lastRead: LastAccess;
  private readonly lastFetch: LastAccess;
  /** Per vCPU: the event that buffered its k-th store. */
  private readonly storeIssuer: number[][];

  constructor(readonly vcpus: number) {
    const procs = vcpus * 4;
    this.lastOfProc = new Int32Array(procs).fill(-1);
    this.seqOfProc = new Int32Array(procs);
    this.lastWrite = new LastAccess(procs);
    this.lastRead = new LastAccess(procs);
    this.lastFetch = new LastAccess(procs);
    this.storeIssuer = Array.from({ length: vcpus }, () => []);
  }

  /**
   * Append an event; returns the earlier events it races with (x ⋖ e: dependent, of another
   * process, and ordered before e by no other event). `buffered` is the range of store numbers
   * it put into its vCPU's buffer; `drains` the store number a drain event committed (-1: none).
   */
  add(proc: number, node: number, fp: Footprint, terminal: boolean, buffered: readonly [number, number], drains: number): number[] {
    const procs = this.lastOfProc.length;
    const prev = this.lastOfProc[proc]!;
    const clock = prev >= 0 ? this.events[prev]!.vc.slice() : new Int32Array(procs);
    const cpu = actionCpu(proc);
    if (drains >= 0) {
      const issuer = this.storeIssuer[cpu]![drains];
      if (issuer !== undefined) join(clock, this.events[issuer]!.vc);
    }
    const candidates = new Set<number>();
    if (terminal) {
      for (let q = 0; q < procs; q++) if (q !== proc && this.lastOfProc[q]! >= 0) candidates.add(this.lastOfProc[q]!);
    } else {
      const from = (index: LastAccess, g: number) => {
        const a = index.get(g);
        if (a !== undefined) for (let q = 0; q < procs; q++) if (q !== proc && a[q]! >= 0) candidates.add(a[q]!);
      };
      for (const g of fp.reads) from(this.lastWrite, g);
      for (const g of fp.fetches) from(this.lastWrite, g);
      for (const g of fp.writes) {
        from(this.lastWrite, g);
        from(this.lastRead, g);
        from(this.lastFetch, g);
      }
    }
    const races: number[] = [];
    const sorted = [...candidates].sort((a, b) => b - a);
    for (const x of sorted) {
      const ex = this.events[x]!;
      if (!terminal && !dependent(ex.fp, ex.proc, fp, proc)) continue;
      if (clock[ex.proc]! >= ex.seq) continue; // already ordered through a later event
      races.push(x);
      join(clock, ex.vc);
    }
    const seq = ++this.seqOfProc[proc]!;
    clock[proc] = seq;
    const index = this.events.length;
    this.events.push({ proc, node, fp, seq, vc: clock, terminal });
    this.lastOfProc[proc] = index;
    for (const g of fp.reads) this.lastRead.set(g, proc, index);
    for (const g of fp.fetches) this.lastFetch.set(g, proc, index);
    for (const g of fp.writes) this.lastWrite.set(g, proc, index);
    for (let k = buffered[0]; k < buffered[1]; k++) this.storeIssuer[cpu]![k] = index;
    return races;
  }

  /** x happens before y (x earlier in the trace). */
  happensBefore(x: number, y: number): boolean {
    const ex = this.events[x]!;
    return this.events[y]!.vc[ex.proc]! >= ex.seq;
  }

  /**
   * The processes that can start v = notdep(x, E).proc(e) from the state before x: the first
   * event of each process in v that no other event of v happens before.
   */
  initials(x: number, e: number): number[] {
    const first = new Map<number, number>();
    for (let y = x + 1; y <= e; y++) {
      if (y !== e && this.happensBefore(x, y)) continue;
      const q = this.events[y]!.proc;
      if (!first.has(q)) first.set(q, y);
    }
    const out: number[] = [];
    for (const [q, y] of first) {
      let initial = true;
      for (const [r, w] of first) if (r !== q && w < y && this.happensBefore(w, y)) { initial = false; break; }
      if (initial) out.push(q);
    }
    return out.sort((a, b) => a - b);
  }
}
