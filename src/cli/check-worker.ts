/**
 * A worker of `pvpatch check --workers N` (src/check/pool.ts): builds the scenario's subject and
 * the strategy once, when the worker starts, from the pool's workerData, then runs the chunks of
 * execution indices it is handed.
 */
import { Tinypool } from 'tinypool';
import { runSeeded } from '../check/explore.ts';
import type { ChunkResult, ChunkTask } from '../check/pool.ts';
import { seededStrategy, type SeededStrategyName } from '../check/seeded.ts';
import { chosenSubject, type SubjectChoice } from './subject-choice.ts';

export interface CheckWorkerData extends SubjectChoice {
  readonly scenario: string;
  readonly strategy: SeededStrategyName;
  readonly preemptions?: number;
}

const spec = Tinypool.workerData as CheckWorkerData;
// Built once per worker: the boot snapshot every execution of this worker forks from.
const subject = await chosenSubject(spec.scenario, spec);
const strategy = seededStrategy(spec.strategy, spec.preemptions !== undefined ? { preemptions: spec.preemptions } : {});

export default function runChunk(task: ChunkTask): ChunkResult {
  const t0 = performance.now();
  const records = task.indices.map((i) => runSeeded(subject, strategy, task.limits, task.seedBase, i));
  // The time sizes the next chunks (src/check/pool.ts), nothing else.
  return { records, ms: performance.now() - t0 };
}
