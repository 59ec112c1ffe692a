/**
 * Seeded explorations over a worker pool (tinypool): the main thread hands out chunks of
 * execution indices, each worker builds the subject once (from `workerData`, in its own module:
 * see src/cli/check-worker.ts) and runs its chunks with `runSeeded`. Records are aggregated by
 * index, so the result is the one `explore` gives in one thread, whatever the number of workers
 * and however the indices were cut into chunks. Chunks grow until each takes about
 * CHUNK_TARGET_MS of a worker's time (ChunkSizer), so that messaging stays a small part of a
 * worker's time whether an execution takes 100 µs (a machine scenario) or 50 ms (a guest switch).
 * The CLI and the benches load the bundled worker (dist/check-worker.js); from the sources, a
 * worker module that registers tsx's loader itself (src/cli/check-worker.mjs).
 */
import { Tinypool } from 'tinypool';
import { budgetAllows, headerOf, limitsFor, shardIndices, type ExploreOptions, type SeededStrategy } from './explore.ts';
import { aggregate, type ExecutionRecord, type ExplorationResult } from './exploration.ts';
import type { ExecutionLimits, Subject } from './subject.ts';

/** One chunk of work for a worker. */
export interface ChunkTask {
  readonly indices: readonly number[];
  readonly seedBase: number;
  readonly limits: ExecutionLimits;
}

/** What a worker returns for a chunk: its records, and the milliseconds it spent on them (sizing only). */
export interface ChunkResult {
  readonly records: ExecutionRecord[];
  readonly ms: number;
}

/** A chunk's worker time to aim at: long enough that a message round trip (~0.1 ms) is noise, short enough to balance the tail. */
export const CHUNK_TARGET_MS = 50;
/** The first chunks, before any execution was timed. */
export const FIRST_CHUNK = 8;
const MAX_CHUNK = 4096;

/**
 * The size of the next chunk, from the worker time the finished ones took. Only how work is cut
 * depends on it, never which executions run or what they find (records are aggregated by index).
 */
export class ChunkSizer {
  private executions = 0;
  private ms = 0;

  constructor(private readonly first = FIRST_CHUNK, private readonly targetMs = CHUNK_TARGET_MS) {}

  /** A chunk of `executions` took `ms` of a worker's time. */
  finished(executions: number, ms: number): void {
    this.executions += executions;
    this.ms += ms;
  }

  /**
   * Executions for the next chunk; `left` (when the budget is a count) is how many remain to hand
   * out, shared by `workers`: no chunk takes more than its share of two rounds, so the last
   * chunks end together.
   */
  next(workers: number, left = Infinity): number {
    let n = this.executions === 0 ? this.first : Math.round(this.targetMs / Math.max(this.ms / this.executions, 1e-3));
    n = Math.min(Math.max(n, 1), MAX_CHUNK, Math.max(1, Math.ceil(left / (2 * workers))));
    return n;
  }
}

export interface PoolOptions extends Omit<ExploreOptions, 'onExecution'> {
  readonly workers: number;
  /** The worker module (JavaScript, or one that loads TypeScript itself): its default export runs a ChunkTask and returns its records. */
  readonly workerFile: URL;
  /** What the worker builds its subject and strategy from (structured-cloneable). */
  readonly workerData: unknown;
  /** Executions per chunk; default: sized by ChunkSizer. */
  readonly chunk?: number;
  /** Told, after each chunk comes back, how many executions have come back so far (progress, benches). */
  readonly onProgress?: (done: number) => void;
}

export async function explorePool(subject: Subject, strategy: SeededStrategy, opts: PoolOptions): Promise<ExplorationResult> {
  const limits = limitsFor(subject, opts.limits);
  const header = headerOf(subject, strategy, opts, limits);
  const seedBase = opts.seed ?? 1;
  const sizer = new ChunkSizer();
  const shardCount = opts.shard?.count ?? 1;
  const now = opts.now ?? (() => performance.now());
  const pool = new Tinypool({
    filename: opts.workerFile.href,
    minThreads: opts.workers,
    maxThreads: opts.workers,
    workerData: opts.workerData,
  });
  const records: ExecutionRecord[] = [];
  let violationAt = Infinity;
  let failure: Error | undefined;
  try {
    const indices = shardIndices(opts.shard);
    const started = now();
    let exhausted = false;
    let nextIndex = opts.shard?.index ?? 0;
    const nextChunk = (): number[] => {
      const out: number[] = [];
      const left = opts.budget.kind === 'executions' ? Math.ceil((opts.budget.executions - nextIndex) / shardCount) : Infinity;
      const size = opts.chunk ?? sizer.next(opts.workers, left);
      while (out.length < size && !exhausted) {
        const i = indices.next().value as number;
        if (!budgetAllows(opts.budget, i, started, now())) { exhausted = true; break; }
        out.push(i);
        nextIndex = i + shardCount;
      }
      return out;
    };
    // Keep two chunks per worker in flight; stop handing out work once the budget is spent or a violation came back (stopAtViolation).
    const inFlight = new Set<Promise<void>>();
    const launch = (): boolean => {
      if (failure !== undefined || (opts.stopAtViolation === true && violationAt < Infinity)) return false;
      const ind = nextChunk();
      if (ind.length === 0) return false;
      const task: ChunkTask = { indices: ind, seedBase, limits };
      const p: Promise<void> = pool.run(task).then(
        ({ records: rs, ms }: ChunkResult) => {
          sizer.finished(rs.length, ms);
          for (const r of rs) {
            records.push(r);
            if (r.violation !== undefined) violationAt = Math.min(violationAt, r.index);
          }
          inFlight.delete(p);
          opts.onProgress?.(records.length);
        },
        (e: unknown) => {
          // Keep the first failure; the chunks still in flight finish before it is thrown.
          failure ??= e instanceof Error ? e : new Error(String(e));
          inFlight.delete(p);
        },
      );
      inFlight.add(p);
      return true;
    };
    for (let k = 0; k < opts.workers * 2; k++) if (!launch()) break;
    while (inFlight.size > 0) {
      await Promise.race(inFlight);
      while (inFlight.size < opts.workers * 2 && launch());
    }
  } finally {
    await pool.destroy();
  }
  if (failure !== undefined) throw failure;
  records.sort((a, b) => a.index - b.index);
  // With stopAtViolation one thread stops right after the first violation: so do we.
  const kept = opts.stopAtViolation === true ? records.filter((r) => r.index <= violationAt) : records;
  return aggregate(header, kept);
}
