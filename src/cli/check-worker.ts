/**
 * A worker of `pvpatch check --workers N` (src/check/pool.ts): builds the scenario's subject and
 * the strategy once, when the worker starts, from the pool's workerData, then runs the chunks of
 * execution indices it is handed.
 */
import { Tinypool } from 'tinypool';
import { runSeeded } from '../check/explore.ts';
import type { ChunkTask } from '../check/pool.ts';
import type { ExecutionRecord } from '../check/exploration.ts';
import { seededStrategy, type SeededStrategyName } from '../check/seeded.ts';
import { scenarioSubject } from './scenario/subject.ts';
import type { SwitchProtocol } from '../patching/hint-switch.ts';

export interface CheckWorkerData {
  readonly scenario: string;
  readonly strategy: SeededStrategyName;
  readonly preemptions?: number;
  readonly protocol?: SwitchProtocol;
}

const spec = Tinypool.workerData as CheckWorkerData;
// Built once per worker: the boot snapshot every execution of this worker forks from.
const subject = scenarioSubject(spec.scenario, spec.protocol !== undefined ? { protocol: spec.protocol } : {});
const strategy = seededStrategy(spec.strategy, spec.preemptions !== undefined ? { preemptions: spec.preemptions } : {});

export default function runChunk(task: ChunkTask): ExecutionRecord[] {
  return task.indices.map((i) => runSeeded(subject, strategy, task.limits, task.seedBase, i));
}
