/**
 * Seeded explorations over a worker pool (tinypool): the main thread hands out chunks of
 * execution indices, each worker builds the subject once (from `workerData`, in its own module:
 * see src/cli/check-worker.ts) and runs its chunks with `runSeeded`. Records are aggregated by
 * index, so the result is the one `explore` gives in one thread, whatever the number of workers.
 * Workers run TypeScript through tsx's loader (the repository has no build step), which the
 * worker module registers itself (src/cli/check-worker.mjs).
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

export interface PoolOptions extends Omit<ExploreOptions, 'onExecution'> {
  readonly workers: number;
  /** The worker module (JavaScript, or one that loads TypeScript itself): its default export runs a ChunkTask and returns its records. */
  readonly workerFile: URL;
  /** What the worker builds its subject and strategy from (structured-cloneable). */
  readonly workerData: unknown;
  /** Executions per chunk (default 8). */
  readonly chunk?: number;
}

export async function explorePool(subject: Subject, strategy: SeededStrategy, opts: PoolOptions): Promise<ExplorationResult> {
  const limits = limitsFor(subject, opts.limits);
  const header = headerOf(subject, strategy, opts, limits);
  const seedBase = opts.seed ?? 1;
  const chunk = opts.chunk ?? 8;
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
    const nextChunk = (): number[] => {
      const out: number[] = [];
      while (out.length < chunk && !exhausted) {
        const i = indices.next().value as number;
        if (!budgetAllows(opts.budget, i, started, now())) { exhausted = true; break; }
        out.push(i);
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
        (rs: ExecutionRecord[]) => {
          for (const r of rs) {
            records.push(r);
            if (r.violation !== undefined) violationAt = Math.min(violationAt, r.index);
          }
          inFlight.delete(p);
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
