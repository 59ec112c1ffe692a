/**
 * `npm run bench -- explore`: how fast the explorer runs executions (src/check/explore.ts) —
 * random and PCT with one worker (in this thread) and with every core (the tinypool pool that
 * `check --workers` uses, its start-up included), DPOR in this thread — on the machine-level
 * text_poke_bp scenario and on the default guest scenario (the v2 switch under load); and the
 * time to the first violation of every stock broken variant under each strategy: text_poke_bp's
 * broken orders as machine scenarios, and the guest variants a scenario can name (--variant).
 * Wall-clock figures: the machine's load average is reported with them.
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
import { exploreDpor } from '../src/check/dpor.ts';
import { scenarioSubject } from '../src/cli/scenario/subject.ts';
import type { CheckWorkerData } from '../src/cli/check-worker.ts';
import { hazardName } from '../src/machine/events.ts';
import type { StockVariant } from '../src/patching/variant-names.ts';

export const describe = 'explorer executions per second (random, PCT, DPOR; 1 worker and all) and time to first violation';

const SCENARIOS = SCENARIO_DIR;
const TPO = join(SCENARIOS, 'text-poke-order.yaml');
const NO_SYNC = join(SCENARIOS, 'cmc-no-sync.yaml');
const FIRST_BYTE_EARLY = join(SCENARIOS, 'text-poke-first-byte-early.yaml');
const GUEST = join(SCENARIOS, 'default.yaml');
/** The stock broken variants: text_poke_bp's broken orders at machine level, and every variant a guest scenario can name. */
const BROKEN_MACHINE = [NO_SYNC, join(SCENARIOS, 'text-poke-no-int3.yaml'), join(SCENARIOS, 'text-poke-skip-one.yaml'), FIRST_BYTE_EARLY];
const TPB_GUEST = join(SCENARIOS, 'text-poke-bp-guest.yaml');
const BROKEN_GUEST: [string, StockVariant][] = [
  [TPB_GUEST, 'no-int3'], [TPB_GUEST, 'no-sync'], [TPB_GUEST, 'skip-one'], [TPB_GUEST, 'first-before-tail'],
  [join(SCENARIOS, 'v2-guest-small.yaml'), 'no-barrier'],
];
/** Instructions per guest execution: the default scenario's v2 switch finishes in about 29,000. */
const GUEST_DEPTH = 100_000;
// The check worker as the CLI loads it: bundled beside a bundled bench, else through tsx.
const WORKER = import.meta.url.endsWith('.js') ? pathToFileURL(join(packageRoot(), 'dist', 'check-worker.js')) : pathToFileURL(join(packageRoot(), 'src', 'cli', 'check-worker.mjs'));

export interface Row {
  scenario: string;
  strategy: string;
  workers: number;
  executions: number;
  seconds: number;
  perSecond: number;
  /**
   * Executions per CPU second of this process (every thread: the workers', V8's GC and compiler
   * threads). It leaves out the time other processes hold the cores, not what they do to caches
   * and clocks: on a loaded machine it too falls, less than the wall-clock rate.
   */
  perCpuSecond: number;
  /**
   * The rate once warm: in one thread, a second window on the same subject (its lineage's decode
   * and compiled-block caches filled, V8's code optimized); in the pool, from the moment every
   * worker returned its first chunk (booted and warm) to the end.
   */
  warmPerSecond: number | null;
  warmPerCpuSecond: number | null;
  verdict: string;
}

/** CPU seconds this process used since `from` (process.cpuUsage: every thread). */
function cpuSince(from: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1e6;
}

const rate = (n: number, s: number): number => (s > 0 ? Math.round(n / s) : 0);

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

function row(path: string, strategy: string, workers: number, executions: number, s: number, cpu: number, warm: { perSecond: number; perCpuSecond: number } | null, verdict: string): Row {
  return {
    scenario: path.slice(SCENARIOS.length + 1), strategy, workers, executions, seconds: +s.toFixed(2), perSecond: rate(executions, s), perCpuSecond: rate(executions, cpu),
    warmPerSecond: warm?.perSecond ?? null, warmPerCpuSecond: warm?.perCpuSecond ?? null, verdict,
  };
}

/** One thread, for a wall-clock budget; then as long again on the same subject, warm (the seeds after the first window's). */
function inThread(path: string, name: SeededStrategyName | 'dpor', seconds: number, maxInstructions?: number): Row {
  const subject = scenarioSubject(path);
  const limits = maxInstructions !== undefined ? { limits: { maxInstructions } } : {};
  const window = (seed: number) => {
    const u0 = process.cpuUsage();
    const t0 = performance.now();
    const r = explore(subject, strategyOf(name), { budget: { kind: 'seconds', seconds }, seed, ...limits });
    return { r, s: (performance.now() - t0) / 1000, cpu: cpuSince(u0) };
  };
  const cold = window(1);
  // DPOR's tree is the same whatever the seed: its second window re-explores the first's schedules.
  const warm = window(name === 'dpor' ? 1 : 1 + cold.r.executions);
  return row(path, name, 1, cold.r.executions, cold.s, cold.cpu, { perSecond: rate(warm.r.executions, warm.s), perCpuSecond: rate(warm.r.executions, warm.cpu) }, cold.r.verdict);
}

/** The pool, for a count of executions (its start-up is part of the time, and reported alone). */
async function inPool(path: string, name: SeededStrategyName, workers: number, executions: number, maxInstructions?: number): Promise<Row & { startupSeconds: number }> {
  const subject = scenarioSubject(path);
  const opts = { workers, workerFile: WORKER, workerData: { scenario: path, strategy: name } satisfies CheckWorkerData, ...(maxInstructions !== undefined ? { limits: { maxInstructions } } : {}) };
  let t0 = performance.now();
  await explorePool(subject, seededStrategy(name), { ...opts, budget: { kind: 'executions', executions: workers } , chunk: 1 });
  const startupSeconds = +((performance.now() - t0) / 1000).toFixed(2);
  // The warm span starts when as many chunks came back as there are workers (each booted, its first chunk run).
  let chunks = 0;
  let warmFrom: { t: number; cpu: NodeJS.CpuUsage; done: number } | undefined;
  const onProgress = (done: number) => {
    if (++chunks === workers) warmFrom = { t: performance.now(), cpu: process.cpuUsage(), done };
  };
  const u0 = process.cpuUsage();
  t0 = performance.now();
  const r = await explorePool(subject, seededStrategy(name), { ...opts, budget: { kind: 'executions', executions }, onProgress });
  const s = (performance.now() - t0) / 1000, cpu = cpuSince(u0);
  const warm = warmFrom !== undefined && r.executions > warmFrom.done
    ? { perSecond: rate(r.executions - warmFrom.done, (performance.now() - warmFrom.t) / 1000), perCpuSecond: rate(r.executions - warmFrom.done, cpuSince(warmFrom.cpu)) }
    : null;
  // The measured pool starts up again: startupSeconds says how much of its time that is.
  return { ...row(path, name, workers, r.executions, s, cpu, warm, r.verdict), startupSeconds };
}

/** Executions for one pool worker: what one warm thread ran in twice `window` seconds (row `r`), at least `floor`. */
function perWorker(r: Row, window: number, floor: number): number {
  return Math.max(floor, Math.round((r.warmPerSecond ?? 0) * window * 2));
}

function timeToFirstViolation(path: string, name: SeededStrategyName | 'dpor', cap: number, variant?: StockVariant): FirstViolation {
  const subject = scenarioSubject(path, variant !== undefined ? { variant } : {});
  const t0 = performance.now();
  // DPOR within one preemption: every machine-level variant needs no more (test/check/variants.test.ts);
  // on a guest, dporStrategy directs it at the window after the hint step (src/check/dpor-strategy.ts).
  const strategy = name === 'dpor' ? dporStrategy(1) : strategyOf(name);
  const r = explore(subject, strategy, { budget: { kind: 'executions', executions: cap }, stopAtViolation: true, ...(variant !== undefined ? { limits: { maxInstructions: GUEST_DEPTH } } : {}) });
  const s = (performance.now() - t0) / 1000;
  const v = r.firstViolation;
  return { scenario: path.slice(SCENARIOS.length + 1) + (variant !== undefined ? ` --variant ${variant}` : ''), strategy: name, executions: v !== undefined ? v.index + 1 : null, seconds: +s.toFixed(3), check: v !== undefined ? (v.verdict.hazard !== undefined ? hazardName(v.verdict.hazard) : v.verdict.check) : null };
}

/** How long stateful DPOR takes to prove a scenario clean within a preemption bound (src/check/dpor-cache.ts). */
function proof(path: string, preemptions: number): { scenario: string; preemptions: number; outcome: string; executions: number; seconds: number; cachedStates: number } {
  const t0 = performance.now();
  const r = exploreDpor(scenarioSubject(path), { preemptions, maxExecutions: 50_000 });
  return { scenario: path.slice(SCENARIOS.length + 1), preemptions, outcome: r.outcome, executions: r.executions, seconds: +((performance.now() - t0) / 1000).toFixed(2), cachedStates: r.cache?.states ?? 0 };
}

/** The executions-per-second rows (text-poke-order, then the default guest scenario), `secs` seconds a one-thread window. */
export async function speedRows(secs: number, cores = availableParallelism()): Promise<Row[]> {
  const rows: Row[] = [];
  for (const name of ['random', 'pct', 'dpor'] as const) {
    const one = inThread(TPO, name, secs);
    rows.push(one);
    // The pool with one worker, then on every core, each worker given what one warm thread runs
    // in twice the window (start-up and warm-up are then not the whole of it): equal warm rates
    // per worker mean linear scaling (each worker boots once and forks).
    if (name !== 'dpor') rows.push(await inPool(TPO, name, 1, perWorker(one, secs, 8)));
    if (name !== 'dpor' && cores > 1) rows.push(await inPool(TPO, name, cores, cores * perWorker(one, secs, 8)));
  }
  for (const name of ['random', 'pct', 'dpor'] as const) {
    // A bound on every guest execution: PCT (not spin-aware yet) and DPOR's default continuation
    // need not reach the switch's end, and a seconds budget is only read between executions.
    const one = inThread(GUEST, name, secs * 2, GUEST_DEPTH);
    rows.push(one);
    if (name !== 'dpor') rows.push(await inPool(GUEST, name, 1, perWorker(one, secs * 2, 4), GUEST_DEPTH));
    if (name !== 'dpor' && cores > 1) rows.push(await inPool(GUEST, name, cores, cores * perWorker(one, secs * 2, 4), GUEST_DEPTH));
  }
  return rows;
}

export async function run(opts: { quick: boolean }): Promise<Record<string, unknown>> {
  const cores = availableParallelism();
  const loadBefore = loadavg();
  const rows = await speedRows(opts.quick ? 1 : 3, cores);
  const proofs = [proof(TPO, 1), ...(opts.quick ? [] : [proof(TPO, 2)])];
  const strategies = ['random', 'pct', 'dpor'] as const;
  const firstViolation = [
    ...BROKEN_MACHINE.flatMap((path) => strategies.map((name) => timeToFirstViolation(path, name, 10_000))),
    // Guest executions cost a hundred times more: DPOR gets 200 (directed at the window after the
    // hint step, restarting from a new random prefix every 5 executions; the rows say which it finds).
    ...BROKEN_GUEST.flatMap(([path, variant]) => strategies.map((name) => timeToFirstViolation(path, name, name === 'dpor' ? 200 : 400, variant))),
  ];
  return {
    cores,
    loadAverage: { before: loadBefore.map((x) => +x.toFixed(2)), after: loadavg().map((x) => +x.toFixed(2)) },
    note: 'wall-clock figures on a shared machine: compare rows of one run; perCpuSecond (executions per CPU second of every thread of this process) leaves out the time other processes hold the cores, but not their effect on caches. One-thread rows: a window of the given seconds from a fresh subject (perSecond), then a second window on the same subject (warmPerSecond). Pool rows give each worker what one warm thread runs in twice the window and include the pool start-up (startupSeconds: each worker loads the bundle and boots the scenario once, then forks per execution); warmPerSecond counts from the moment every worker returned its first chunk. firstViolation: executions and seconds to the first violation of each stock broken variant under each strategy (null: none within the cap: 10,000 at machine level; 400 guest executions for random and PCT, 200 for DPOR)',
    rows,
    proofs,
    firstViolation,
  };
}

export function table(result: Record<string, unknown>): string {
  const r = result as { cores: number; loadAverage: { before: number[]; after: number[] }; rows: Row[]; proofs: ReturnType<typeof proof>[]; firstViolation: FirstViolation[] };
  const out: string[] = [];
  out.push(`cores ${r.cores}, load average ${r.loadAverage.before.join(' ')} before, ${r.loadAverage.after.join(' ')} after`);
  out.push('', '| scenario | strategy | workers | executions | s | executions/s | per CPU s | warm /s | warm per CPU s | verdict |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const x of r.rows) out.push(`| ${x.scenario} | ${x.strategy} | ${x.workers} | ${x.executions.toLocaleString('en-US')} | ${x.seconds}${'startupSeconds' in x ? ` (start-up ${String(x.startupSeconds)})` : ''} | ${x.perSecond.toLocaleString('en-US')} | ${x.perCpuSecond.toLocaleString('en-US')} | ${x.warmPerSecond?.toLocaleString('en-US') ?? '-'} | ${x.warmPerCpuSecond?.toLocaleString('en-US') ?? '-'} | ${x.verdict} |`);
  out.push('', '| DPOR proof | preemptions | outcome | executions | s | states cached |', '|---|---:|---|---:|---:|---:|');
  for (const p of r.proofs) out.push(`| ${p.scenario} | ${p.preemptions} | ${p.outcome} | ${p.executions.toLocaleString('en-US')} | ${p.seconds} | ${p.cachedStates.toLocaleString('en-US')} |`);
  out.push('', '| broken scenario | strategy | executions to first violation | s | check |', '|---|---|---:|---:|---|');
  for (const x of r.firstViolation) out.push(`| ${x.scenario} | ${x.strategy} | ${x.executions ?? 'none'} | ${x.seconds} | ${x.check ?? '-'} |`);
  return out.join('\n');
}
