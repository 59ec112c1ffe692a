/**
 * `pvpatch check <scenario>`: explore a scenario's interleavings (DESIGN.md §3, §6) and say what
 * was explored and whether any broke a check — `violation` with a shrunk, replayable
 * counterexample, `exhausted` (an exhaustive strategy ran every interleaving within its bound) or
 * `bounded-clean`. Random and PCT executions split over workers and shards; results are the same
 * whatever the split.
 */
import { readScheduleFile } from '../schedule-file.ts';
import { MAX_VCPUS } from '../../machine/machine.ts';
import { availableParallelism } from 'node:os';
import { explore, type Strategy } from '../../check/explore.ts';
import type { ExplorationBudget, ExplorationResult, Shard } from '../../check/exploration.ts';
import { seededStrategy, type SeededStrategyName } from '../../check/seeded.ts';
import { parseCondition } from '../../check/condition.ts';
import type { Subject } from '../../check/subject.ts';
import type { SwitchProtocol } from '../../patching/hint-switch.ts';
import { ScenarioError } from '../scenario/errors.ts';
import { choiceOf, chosenSubject } from '../subject-choice.ts';
import type { StockVariant } from '../../patching/variants.ts';
import { defaultScenarioPath } from '../default-scenario.ts';
import { checkExitCode, checkText, finishCheck } from './check-report.ts';
import { explorePool } from '../../check/pool.ts';
import { dporStrategy } from '../../check/dpor-strategy.ts';
import type { CheckWorkerData } from '../check-worker.ts';

import type { CheckStrategyName } from './definitions.ts';

export interface CheckFlags {
  strategy?: CheckStrategyName;
  preemptions?: string;
  depth?: string;
  budget?: string;
  executions?: string;
  workers?: string;
  shard?: string;
  seed?: string;
  json?: boolean;
  expect?: string;
  scheduleFile?: string;
  scheduleOut?: string;
  protocol?: SwitchProtocol;
  variant?: StockVariant;
  protocolFile?: string;
}

function intFlag(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const k = Number(v);
  if (!Number.isSafeInteger(k) || k < min) throw new ScenarioError(`--${name} must be an integer ≥ ${min}, not '${v}'`);
  return k;
}

export function parseShard(v: string | undefined): Shard | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (m === null || count < 1 || index >= count) throw new ScenarioError(`--shard must be i/n with 0 ≤ i < n (e.g. 0/4), not '${v}'`);
  return { index, count };
}

/**
 * A sweep's default; DPOR's over a whole run is larger, as it is asked to finish (text-poke-order
 * at bound 2: 2,521). A DPOR search directed at a guest's window (Subject.focusStep) never
 * finishes and its executions are long: it gets the sweep's.
 */
const DEFAULT_EXECUTIONS = 1000;
const DEFAULT_DPOR_EXECUTIONS = 20_000;

function defaultBudget(flags: CheckFlags, subject: Subject): ExplorationBudget {
  return { kind: 'executions', executions: flags.strategy === 'dpor' && subject.focusStep === undefined ? DEFAULT_DPOR_EXECUTIONS : DEFAULT_EXECUTIONS };
}

/** The budget the flags give (undefined: none given), checked before anything boots. */
function budgetOf(flags: CheckFlags): ExplorationBudget | undefined {
  if (flags.budget !== undefined && flags.executions !== undefined) throw new ScenarioError('give --budget SECONDS or --executions N, not both');
  if (flags.budget !== undefined) {
    const s = Number(flags.budget);
    if (!Number.isFinite(s) || s <= 0) throw new ScenarioError(`--budget must be a number of seconds > 0, not '${flags.budget}'`);
    return { kind: 'seconds', seconds: s };
  }
  const n = intFlag(flags.executions, 'executions', 1);
  return n === undefined ? undefined : { kind: 'executions', executions: n };
}

function strategyOf(flags: CheckFlags): Strategy {
  if (flags.scheduleFile !== undefined) {
    if (flags.strategy !== undefined) throw new ScenarioError('--schedule-file checks one recorded schedule; it cannot be combined with --strategy');
    return { kind: 'replay', name: 'replay', schedule: readScheduleFile(flags.scheduleFile, MAX_VCPUS) };
  }
  const name = flags.strategy ?? 'random';
  const preemptions = intFlag(flags.preemptions, 'preemptions', 0);
  if (preemptions !== undefined && name === 'random') throw new ScenarioError('--preemptions bounds dpor and sets pct\'s change points; random has no such bound');
  if (name === 'dpor') return dporStrategy(preemptions);
  return seededStrategy(name, preemptions !== undefined ? { preemptions } : {});
}

/** Where the executions run: in this process, or spread over a worker pool (seeded strategies only). */
async function runExploration(path: string, subject: Subject, strategy: Strategy, flags: CheckFlags, opts: { budget: ExplorationBudget; seed: number; shard?: Shard; maxInstructions?: number }): Promise<ExplorationResult> {
  const workers = intFlag(flags.workers, 'workers', 1) ?? availableParallelism();
  const limits = opts.maxInstructions !== undefined ? { maxInstructions: opts.maxInstructions } : undefined;
  const common = { budget: opts.budget, seed: opts.seed, ...(opts.shard ? { shard: opts.shard } : {}), ...(limits ? { limits } : {}) };
  if (strategy.kind === 'seeded' && workers > 1) {
    const workerData: CheckWorkerData = {
      scenario: path,
      strategy: strategy.name as SeededStrategyName,
      ...(flags.preemptions !== undefined ? { preemptions: Number(flags.preemptions) } : {}),
      ...choiceOf(flags),
    };
    return explorePool(subject, strategy, { ...common, workers, workerData, workerFile: checkWorkerFile() });
  }
  return explore(subject, strategy, common);
}

export async function checkCommand(file: string | undefined, flags: CheckFlags): Promise<number> {
  const path = file ?? defaultScenarioPath();
  const strategy = strategyOf(flags);
  const given = budgetOf(flags);
  const shard = parseShard(flags.shard);
  const seed = intFlag(flags.seed, 'seed', 0) ?? 1;
  const maxInstructions = intFlag(flags.depth, 'depth', 1);
  const expect = flags.expect !== undefined ? parseCondition(flags.expect) : undefined;
  if (strategy.kind === 'replay' && shard !== undefined) throw new ScenarioError('--shard splits an exploration; --schedule-file checks one schedule');
  const subject = await chosenSubject(path, flags);
  const budget = given ?? defaultBudget(flags, subject);
  const result = await runExploration(path, subject, strategy, flags, { budget, seed, ...(shard ? { shard } : {}), ...(maxInstructions ? { maxInstructions } : {}) });
  const report = finishCheck(subject, result, {
    ...(expect ? { expect } : {}),
    ...(flags.scheduleOut ? { scheduleOut: flags.scheduleOut } : {}),
    choice: choiceOf(flags),
  });
  process.stdout.write(flags.json ? JSON.stringify(report) + '\n' : checkText(report));
  return checkExitCode(report);
}


/**
 * The module each worker thread loads: the bundled dist/check-worker.js beside a bundled CLI
 * (scripts/build.mjs), else the TypeScript worker through its tsx-registering wrapper.
 */
function checkWorkerFile(): URL {
  return import.meta.url.endsWith('.js') ? new URL('./check-worker.js', import.meta.url) : new URL('../check-worker.mjs', import.meta.url);
}
