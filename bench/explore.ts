/**
 * `npm run bench -- explore`: how fast the explorer runs executions (src/check/explore.ts) —
 * random and PCT with one worker (in this thread) and with every core (the tinypool pool that
 * `check --workers` uses, its start-up included), DPOR in this thread — on the machine-level
 * text_poke_bp scenario and on the default guest scenario (the v2 switch under load); and the
 * time to the first violation of the stock broken machine scenarios (cmc-no-sync,
 * text-poke-first-byte-early) under each strategy. Wall-clock figures: the machine's load
 * average is reported with them.
 */
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { SCENARIO_DIR } from '../src/cli/default-scenario.ts';
import { packageRoot } from '../src/cli/package-root.ts';
import { pathToFileURL } from 'node:url';
import { explore, type Strategy } from '../src/check/explore.ts';
import { explorePool } from '../src/check/pool.ts';
import { seededStrategy, type SeededStrategyName } from '../src/check/seeded.ts';
import { dporStrategy } from '../src/check/dpor-strategy.ts';
import { scenarioSubject } from '../src/cli/scenario/subject.ts';
import type { CheckWorkerData } from '../src/cli/check-worker.ts';
import { hazardName } from '../src/machine/events.ts';

export const describe = 'explorer executions per second (random, PCT, DPOR; 1 worker and all) and time to first violation';

const SCENARIOS = SCENARIO_DIR;
const TPO = join(SCENARIOS, 'text-poke-order.yaml');
const NO_SYNC = join(SCENARIOS, 'cmc-no-sync.yaml');
const FIRST_BYTE_EARLY = join(SCENARIOS, 'text-poke-first-byte-early.yaml');
const GUEST = join(SCENARIOS, 'default.yaml');
/** Instructions per guest execution: the default scenario's v2 switch finishes in about 29,000. */
const GUEST_DEPTH = 100_000;
// The check worker as the CLI loads it: bundled beside a bundled bench, else through tsx.
const WORKER = import.meta.url.endsWith('.js') ? pathToFileURL(join(packageRoot(), 'dist', 'check-worker.js')) : pathToFileURL(join(packageRoot(), 'src', 'cli', 'check-worker.mjs'));

interface Row {
  scenario: string;
  strategy: string;
  workers: number;
  executions: number;
  seconds: number;
  perSecond: number;
  verdict: string;
}

interface FirstViolation {
  scenario: string;
  strategy: string;
  /** Executions run up to and including the first violating one. */
  executions: number | null;
  seconds: number;
  check: string | null;
}

function strategyOf(name: SeededStrategyName | 'dpor'): Strategy {
  return name === 'dpor' ? dporStrategy(2) : seededStrategy(name);
}

function row(path: string, strategy: string, workers: number, executions: number, s: number, verdict: string): Row {
  return { scenario: path.slice(SCENARIOS.length + 1), strategy, workers, executions, seconds: +s.toFixed(2), perSecond: Math.round(executions / s), verdict };
}

/** One thread, for a wall-clock budget. */
function inThread(path: string, name: SeededStrategyName | 'dpor', seconds: number, maxInstructions?: number): Row {
  const subject = scenarioSubject(path);
  const t0 = performance.now();
  const r = explore(subject, strategyOf(name), { budget: { kind: 'seconds', seconds }, ...(maxInstructions !== undefined ? { limits: { maxInstructions } } : {}) });
  return row(path, name, 1, r.executions, (performance.now() - t0) / 1000, r.verdict);
}

/** The pool, for a count of executions (its start-up is part of the time, and reported alone). */
async function inPool(path: string, name: SeededStrategyName, workers: number, executions: number, maxInstructions?: number): Promise<Row & { startupSeconds: number }> {
  const subject = scenarioSubject(path);
  const opts = { workers, workerFile: WORKER, workerData: { scenario: path, strategy: name } satisfies CheckWorkerData, ...(maxInstructions !== undefined ? { limits: { maxInstructions } } : {}) };
  let t0 = performance.now();
  await explorePool(subject, seededStrategy(name), { ...opts, budget: { kind: 'executions', executions: workers } , chunk: 1 });
  const startupSeconds = +((performance.now() - t0) / 1000).toFixed(2);
  t0 = performance.now();
  const r = await explorePool(subject, seededStrategy(name), { ...opts, budget: { kind: 'executions', executions } });
  // The measured pool starts up again: startupSeconds says how much of its time that is.
  return { ...row(path, name, workers, r.executions, (performance.now() - t0) / 1000, r.verdict), startupSeconds };
}

function timeToFirstViolation(path: string, name: SeededStrategyName | 'dpor', cap: number): FirstViolation {
  const subject = scenarioSubject(path);
  const t0 = performance.now();
  const r = explore(subject, strategyOf(name), { budget: { kind: 'executions', executions: cap }, stopAtViolation: true });
  const s = (performance.now() - t0) / 1000;
  const v = r.firstViolation;
  return { scenario: path.slice(SCENARIOS.length + 1), strategy: name, executions: v !== undefined ? v.index + 1 : null, seconds: +s.toFixed(3), check: v !== undefined ? (v.verdict.hazard !== undefined ? hazardName(v.verdict.hazard) : v.verdict.check) : null };
}

export async function run(opts: { quick: boolean }): Promise<Record<string, unknown>> {
  const cores = availableParallelism();
  const secs = opts.quick ? 1 : 3;
  const loadBefore = loadavg();
  const rows: Row[] = [];
  for (const name of ['random', 'pct', 'dpor'] as const) {
    const one = inThread(TPO, name, secs);
    rows.push(one);
    // The pool with one worker, then as many executions as one thread ran in `secs` times the
    // cores on every core: equal times mean linear scaling (each worker boots once and forks).
    if (name !== 'dpor') rows.push(await inPool(TPO, name, 1, Math.max(8, one.executions)));
    if (name !== 'dpor' && cores > 1) rows.push(await inPool(TPO, name, cores, Math.max(cores * 8, one.executions * cores)));
  }
  for (const name of ['random', 'pct', 'dpor'] as const) {
    // A bound on every guest execution: PCT (not spin-aware yet) and DPOR's default continuation
    // need not reach the switch's end, and a seconds budget is only read between executions.
    const one = inThread(GUEST, name, secs * 2, GUEST_DEPTH);
    rows.push(one);
    if (name !== 'dpor') rows.push(await inPool(GUEST, name, 1, Math.max(2, one.executions), GUEST_DEPTH));
    if (name !== 'dpor' && cores > 1) rows.push(await inPool(GUEST, name, cores, Math.max(cores * 2, one.executions * cores), GUEST_DEPTH));
  }
  const firstViolation = [NO_SYNC, FIRST_BYTE_EARLY].flatMap((path) => (['random', 'pct', 'dpor'] as const).map((name) => timeToFirstViolation(path, name, 10_000)));
  return {
    cores,
    loadAverage: { before: loadBefore.map((x) => +x.toFixed(2)), after: loadavg().map((x) => +x.toFixed(2)) },
    note: 'wall-clock figures on a shared machine: compare rows of one run. Pool rows run cores x the executions one thread ran and include the pool start-up (startupSeconds: tsx and the scenario boot in each worker). PCT is not spin-aware yet: its text-poke-order runs starve the patcher to the step limit (step-limit verdicts), so they all run the full 20,000 instructions',
    rows,
    firstViolation,
  };
}

export function table(result: Record<string, unknown>): string {
  const r = result as { cores: number; loadAverage: { before: number[]; after: number[] }; rows: Row[]; firstViolation: FirstViolation[] };
  const out: string[] = [];
  out.push(`cores ${r.cores}, load average ${r.loadAverage.before.join(' ')} before, ${r.loadAverage.after.join(' ')} after`);
  out.push('', '| scenario | strategy | workers | executions | s | executions/s | verdict |', '|---|---|---:|---:|---:|---:|---|');
  for (const x of r.rows) out.push(`| ${x.scenario} | ${x.strategy} | ${x.workers} | ${x.executions.toLocaleString('en-US')} | ${x.seconds}${'startupSeconds' in x ? ` (start-up ${String(x.startupSeconds)})` : ''} | ${x.perSecond.toLocaleString('en-US')} | ${x.verdict} |`);
  out.push('', '| broken scenario | strategy | executions to first violation | s | check |', '|---|---|---:|---:|---|');
  for (const x of r.firstViolation) out.push(`| ${x.scenario} | ${x.strategy} | ${x.executions ?? 'none'} | ${x.seconds} | ${x.check ?? '-'} |`);
  return out.join('\n');
}
