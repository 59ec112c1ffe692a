/**
 * `npm run bench -- adaptive`: lock throughput of a guest that switches its pv_lock_ops when the
 * host changes KVM_HINTS_REALTIME (v2, src/patching/v2.ts + trigger.ts), against static native and
 * static PV guests, while the host alternates between under-commit (8 vCPUs on 8 pCPUs, REALTIME
 * granted: native is right) and over-commit at ratio r (REALTIME revoked: PV is right) — seed 000's
 * stale hint, made to move. The three guests run the same workload, seed and host changes
 * (bench/_adaptive-guest.ts); only the adaptive guest listens to the hint. Per phase: acquisitions
 * per simulated second, adaptive / best static, the latency of the switch the phase's hint change
 * caused, and the same rates from the end of that switch to the end of the phase (steady state).
 */
import { CYCLES_PER_NS } from '../src/sched/cost-model.ts';
import type { Flavor } from '../src/kernel/pv-ops.ts';
import { RATIOS, VCPUS } from './locks.ts';
import { SEED, TASK_LOCKS, THINK_CYCLES, UNDER_RATIO, V2_OPTIONS, runGuest, type AdaptiveConfig, type Commit, type GuestKind, type GuestRun, type PhaseMeasure } from './_adaptive-guest.ts';
import { DEFAULT_SEEDS, cell, seedList, spearman, spread, type Spread } from './spread.ts';
import { spawn } from 'node:child_process';
import { childArgs } from './_child.ts';
import { availableParallelism } from 'node:os';

export const describe = 'adaptive (v2 switch on the REALTIME hint) vs static native and PV locks while the host alternates under/over-commit (8 vCPUs)';

const OVER_RATIOS = RATIOS.filter((r) => r > 1);
/**
 * Full: a switch under over-commit takes four text_poke_sync rounds and the barrier, each waiting
 * for every vCPU to be scheduled (a host rotation, ~10 ms at CFS slices): ~50 ms; over-commit
 * phases of 100 ms leave half of each phase or more to the steady state. Under-commit switches take µs.
 * Quick: host slices of 200 µs, so a rotation (and the switch) is short enough for 10 ms phases.
 */
const FULL: Omit<AdaptiveConfig, 'ratio'> = { phases: 3, underMs: 5, overMs: 100 };
const QUICK: Omit<AdaptiveConfig, 'ratio'> = { phases: 3, underMs: 0.5, overMs: 10, sliceUs: 200 };

/** One phase of one seed's three runs. */
export interface SeedRow {
  ratio: number;
  phase: number;
  seed: number;
  /** Host preemptions of each guest's vCPUs within the phase. */
  preemptions: { native: number; pv: number; adaptive: number };
  commit: Commit;
  pcpus: number;
  hint: 'realtime' | 'revoked';
  native_acq_per_sim_s: number;
  pv_acq_per_sim_s: number;
  adaptive_acq_per_sim_s: number;
  /** The adaptive guest's flavour at the phase's end. */
  adaptive_flavor: Flavor;
  best_static: 'native' | 'pv';
  adaptive_over_best: number;
  /**
   * The switch this phase's hint change asked for (native when REALTIME is granted, PV when it is
   * revoked), started by the patcher within the phase: µs from the hint change to its end (which
   * may come after the phase's end: 'late'); null in phase 0 and when it did not switch.
   */
  switch_us: number | null;
  /** The v2 protocol alone: the patcher's start to done. */
  switch_v2_us: number | null;
  switch_retries: number | null;
  /**
   * switched (within the phase); late (switched after the phase ended); eagain (every attempt
   * aborted); not-started (the patcher did not reach its checkpoint within the phase); null in phase 0.
   */
  switch_result: 'switched' | 'late' | 'eagain' | 'not-started' | null;
  /**
   * Acquisitions per simulated second of the three guests from the end of the switch (the next
   * sample) to the end of the phase: the steady state; null when no switch ended within the phase.
   */
  after_switch: { ms: number; native: number; pv: number; adaptive: number; adaptive_over_best: number } | null;
}

const perSimSecond = (p: PhaseMeasure) => Math.round(p.acquisitions / ((p.end - p.start) / CYCLES_PER_NS / 1e9));

/** Rate from the first sample at or after `from` to the end of the phase. */
function rateSince(p: PhaseMeasure, from: number): { ms: number; rate: number } | null {
  const k = p.samples.findIndex(([t]) => t >= from);
  if (k < 0 || k === p.samples.length - 1) return null;
  const [t0, a0] = p.samples[k]!, [t1, a1] = p.samples[p.samples.length - 1]!;
  return { ms: (t1 - t0) / CYCLES_PER_NS / 1e6, rate: Math.round((a1 - a0) / ((t1 - t0) / CYCLES_PER_NS / 1e9)) };
}
const us = (cycles: number) => +(cycles / CYCLES_PER_NS / 1000).toFixed(1);

/** One row per phase from the three guests' runs at one ratio and one seed. */
export function phaseRows(ratio: number, seed: number, runs: readonly GuestRun[]): SeedRow[] {
  const by = (k: GuestKind) => runs.find((r) => r.kind === k)!;
  const native = by('native'), pv = by('pv'), adaptive = by('adaptive');
  return adaptive.phases.map((a, i): SeedRow => {
    const n = perSimSecond(native.phases[i]!), p = perSimSecond(pv.phases[i]!), x = perSimSecond(a);
    const want: Flavor = a.commit === 'under' ? 'native' : 'pv';
    const s = i === 0 ? undefined : adaptive.switches.find((w) => w.to === want && w.phases[0]!.time >= a.start && w.phases[0]!.time < a.end);
    const done = s?.phases.find((q) => q.phase === 'done');
    const inPhase = done !== undefined && done.time < a.end;
    const since = inPhase ? [native, pv, adaptive].map((g) => rateSince(g.phases[i]!, done.time)) : [];
    const after = since.length === 3 && since.every((x) => x !== null) ? since.map((x) => x!) : undefined;
    return {
      ratio,
      phase: i,
      seed,
      preemptions: { native: native.phases[i]!.preemptions, pv: pv.phases[i]!.preemptions, adaptive: a.preemptions },
      commit: a.commit,
      pcpus: a.pcpus,
      hint: a.commit === 'under' ? 'realtime' : 'revoked',
      native_acq_per_sim_s: n,
      pv_acq_per_sim_s: p,
      adaptive_acq_per_sim_s: x,
      adaptive_flavor: a.flavor,
      best_static: n >= p ? 'native' : 'pv',
      adaptive_over_best: +(x / Math.max(1, n, p)).toFixed(3),
      switch_us: done ? us(done.time - a.start) : null,
      switch_v2_us: s && done ? us(done.time - s.phases[0]!.time) : null,
      switch_retries: s ? s.retries : null,
      switch_result: i === 0 ? null : !s ? 'not-started' : !s.ok ? 'eagain' : inPhase ? 'switched' : 'late',
      after_switch: after
        ? { ms: +after[2]!.ms.toFixed(1), native: after[0]!.rate, pv: after[1]!.rate, adaptive: after[2]!.rate, adaptive_over_best: +(after[2]!.rate / Math.max(1, after[0]!.rate, after[1]!.rate)).toFixed(3) }
        : null,
    };
  });
}

/**
 * One phase over every seed: each guest's rate as a spread, adaptive / best static from the
 * medians (issue 13: one seed is noise), the same ratio seed by seed, and each guest's host
 * preemptions in the phase — the evidence for what moves a rate (lock-holder preemption happens
 * or not: a bimodal workload under over-commit).
 */
export interface AdaptiveRow {
  ratio: number;
  phase: number;
  commit: Commit;
  pcpus: number;
  hint: 'realtime' | 'revoked';
  seeds: number[];
  native_acq_per_sim_s: Spread;
  pv_acq_per_sim_s: Spread;
  adaptive_acq_per_sim_s: Spread;
  best_static: 'native' | 'pv';
  /** median(adaptive) / max(median(native), median(pv)). */
  adaptive_over_best: number;
  adaptive_over_best_per_seed: Spread;
  preemptions: { native: Spread; pv: Spread; adaptive: Spread };
  /** Over the seeds whose switch ended within the phase; null when none did (or phase 0). */
  switch_us: Spread | null;
  /** How this phase's switch ended, per seed (phase 0: none asked for). */
  switch_results: Partial<Record<NonNullable<SeedRow['switch_result']>, number>>;
  /** adaptive / best static from the end of the switch to the end of the phase, over the seeds where it switched. */
  after_switch_adaptive_over_best: Spread | null;
  /**
   * Spearman's ρ between host preemptions and rate over all of the phase's runs (3 guests × seeds):
   * near -1 when the host's regime (lock-holder preemption and PLE yields, or not), not the lock
   * flavour, sets the rate; null when the preemptions do not vary (under-commit).
   */
  rate_vs_preemptions: number | null;
  /** Why a figure above 1.05 is not a win, from the evidence above; absent otherwise. */
  note?: string;
}

export function aggregateRows(perSeed: readonly SeedRow[]): AdaptiveRow[] {
  const keys = [...new Set(perSeed.map((r) => `${r.ratio}/${r.phase}`))];
  return keys.map((key): AdaptiveRow => {
    const rs = perSeed.filter((r) => `${r.ratio}/${r.phase}` === key).sort((a, b) => a.seed - b.seed);
    const first = rs[0]!;
    const native = spread(rs.map((r) => r.native_acq_per_sim_s)), pv = spread(rs.map((r) => r.pv_acq_per_sim_s)), adaptive = spread(rs.map((r) => r.adaptive_acq_per_sim_s));
    const lat = rs.filter((r) => r.switch_result === 'switched' && r.switch_us !== null).map((r) => r.switch_us!);
    const after = rs.filter((r) => r.after_switch !== null).map((r) => r.after_switch!.adaptive_over_best);
    const results: AdaptiveRow['switch_results'] = {};
    for (const r of rs) if (r.switch_result !== null) results[r.switch_result] = (results[r.switch_result] ?? 0) + 1;
    return {
      ratio: first.ratio, phase: first.phase, commit: first.commit, pcpus: first.pcpus, hint: first.hint,
      seeds: rs.map((r) => r.seed),
      native_acq_per_sim_s: native, pv_acq_per_sim_s: pv, adaptive_acq_per_sim_s: adaptive,
      best_static: native.median >= pv.median ? 'native' : 'pv',
      adaptive_over_best: +(adaptive.median / Math.max(1, native.median, pv.median)).toFixed(3),
      adaptive_over_best_per_seed: spread(rs.map((r) => r.adaptive_over_best), 3),
      preemptions: { native: spread(rs.map((r) => r.preemptions.native)), pv: spread(rs.map((r) => r.preemptions.pv)), adaptive: spread(rs.map((r) => r.preemptions.adaptive)) },
      switch_us: lat.length > 0 ? spread(lat, 1) : null,
      switch_results: results,
      after_switch_adaptive_over_best: after.length > 0 ? spread(after, 3) : null,
      ...evidence(rs, +(adaptive.median / Math.max(1, native.median, pv.median)).toFixed(3)),
    };
  });
}

/** The preemption/rate correlation of a phase, and a note when adaptive/best is above 1.05. */
function evidence(rs: readonly SeedRow[], ratio: number): Pick<AdaptiveRow, 'rate_vs_preemptions' | 'note'> {
  const kinds = ['native', 'pv', 'adaptive'] as const;
  const rates = rs.flatMap((r) => [r.native_acq_per_sim_s, r.pv_acq_per_sim_s, r.adaptive_acq_per_sim_s]);
  const pre = rs.flatMap((r) => kinds.map((k) => r.preemptions[k]));
  const rho = spearman(pre, rates);
  if (ratio <= 1.05) return { rate_vs_preemptions: rho };
  const bimodal = rho !== null && rho < -0.7;
  return {
    rate_vs_preemptions: rho,
    note: bimodal
      ? `rates follow the host's preemptions (Spearman ρ ${rho} over ${rates.length} runs), whatever the flavour: the phase is bimodal and the medians of ${rs.length} seeds still fall on different modes`
      : `not explained by host preemptions (ρ ${rho ?? 'n/a'}); see the per-seed rows`,
  };
}

/** runGuest in a child process (bench/_adaptive-child.ts). */
function runGuestChild(kind: GuestKind, cfg: AdaptiveConfig): Promise<GuestRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, childArgs('_adaptive-child', JSON.stringify({ kind, cfg })), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as GuestRun) : reject(new Error(err.trim() || `${kind} at ratio ${cfg.ratio}: exit ${code}`))));
  });
}

/** Run every job, `width` at a time. */
async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const out = new Array<T>(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, worker));
  return out;
}

const geomean = (xs: number[]) => +Math.exp(xs.reduce((a, x) => a + Math.log(Math.max(x, 1e-6)), 0) / xs.length).toFixed(3);

function summarize(ratio: number, rows: AdaptiveRow[]): Record<string, unknown> {
  const changes = rows.filter((r) => r.phase > 0);
  const count = (k: NonNullable<SeedRow['switch_result']>) => changes.reduce((t, r) => t + (r.switch_results[k] ?? 0), 0);
  return {
    ratio,
    geomean_adaptive_over_best: geomean(rows.map((r) => r.adaptive_over_best)),
    phases_above_1_05: rows.filter((r) => r.adaptive_over_best > 1.05).map((r) => r.phase),
    hint_changes: changes.reduce((t, r) => t + r.seeds.length, 0),
    switched: count('switched'),
    late: count('late'),
    eagain: count('eagain'),
    not_started: count('not-started'),
  };
}

export interface AdaptiveSweep {
  base: Omit<AdaptiveConfig, 'ratio' | 'seed'>;
  ratios: readonly number[];
  seeds: readonly number[];
  /** Run each guest in a child process (the bench, to use every core) or here (tests). */
  children: boolean;
  progress?: (line: string) => void;
}

/** Every ratio × seed × guest; the per-seed rows and their aggregate per phase. */
export async function sweep(s: AdaptiveSweep): Promise<{ rows: AdaptiveRow[]; per_seed: SeedRow[]; runs: GuestRun[] }> {
  const kinds = ['native', 'pv', 'adaptive'] as const;
  const combos = s.ratios.flatMap((ratio) => s.seeds.map((seed) => ({ ratio, seed })));
  const jobs = combos.flatMap(({ ratio, seed }) => kinds.map((kind) => async () => {
    const cfg = { ...s.base, ratio, seed };
    const r = s.children ? await runGuestChild(kind, cfg) : runGuest(kind, cfg);
    s.progress?.(`  ratio ${ratio} seed ${seed} ${kind}: ${r.wall_s} s`);
    return r;
  }));
  const runs = await pool(jobs, s.children ? Math.max(1, availableParallelism()) : 1);
  const perSeed = combos.flatMap(({ ratio, seed }, i) => phaseRows(ratio, seed, runs.slice(3 * i, 3 * i + 3)));
  return { rows: aggregateRows(perSeed), per_seed: perSeed, runs };
}

export async function run(opts: { json: boolean; quick: boolean; seeds?: number }): Promise<Record<string, unknown>> {
  const base = opts.quick ? QUICK : FULL;
  const ratios = opts.quick ? [3] : OVER_RATIOS;
  const seeds = seedList(opts.seeds ?? DEFAULT_SEEDS, SEED);
  const t0 = performance.now();
  const { rows, per_seed, runs } = await sweep({ base, ratios, seeds, children: true, ...(opts.json ? {} : { progress: (l: string) => process.stderr.write(l + '\n') }) });
  const byRatio = ratios.map((ratio) => summarize(ratio, rows.filter((r) => r.ratio === ratio)));
  return {
    bench: 'adaptive',
    vcpus: VCPUS,
    under_commit: { ratio: UNDER_RATIO, pcpus: Math.round(VCPUS / UNDER_RATIO), hint: 'realtime' },
    over_commit_ratios: ratios,
    phases_per_ratio: base.phases,
    simulated_ms: { under: base.underMs, over: base.overMs },
    host_slice: base.sliceUs === undefined ? 'CFS (cfsSliceCycles for the pCPU count)' : `${base.sliceUs} µs`,
    seeds,
    workload: { critical_section_ns: 200, think_ns: THINK_CYCLES / CYCLES_PER_NS, locks: TASK_LOCKS, note: 'bench locks with 10 µs think time: with 1 µs the lock is never free of waiters and v2 cannot switch' },
    v2: { patcher_cpu: V2_OPTIONS.patcherCpu, max_wait_spins: 20_000, max_retries: 3, note: 'v2 defaults' },
    rows,
    per_seed,
    summary: {
      by_ratio: byRatio,
      all_ratios: { geomean_adaptive_over_best: geomean(rows.map((r) => r.adaptive_over_best)), rows_above_1_05: rows.filter((r) => r.adaptive_over_best > 1.05).length, rows: rows.length },
    },
    processes: Math.max(1, availableParallelism()),
    guest_runs: runs.length,
    wall_s: +((performance.now() - t0) / 1000).toFixed(1),
  };
}

export function table(r: Record<string, unknown>): string {
  const rows = r.rows as AdaptiveRow[];
  const out = [
    'ratio  phase  commit  pCPUs  native/s median (min–max)    pv/s median (min–max)        adaptive/s median (min–max)  adapt/best  per seed (min–max)   preemptions native / pv / adaptive (medians)  switches',
  ];
  const notes: string[] = [];
  for (const x of rows) {
    const sw = Object.entries(x.switch_results).map(([k, v]) => `${v} ${k}`).join(', ') || '-';
    const lat = x.switch_us ? `, ${cell(x.switch_us, 1)} µs` : '';
    if (x.note) notes.push(`ratio ${x.ratio} phase ${x.phase}: adaptive/best ${x.adaptive_over_best}: ${x.note}`);
    out.push(`${String(x.ratio).padStart(5)}  ${String(x.phase).padStart(5)}  ${x.commit.padEnd(6)}  ${String(x.pcpus).padStart(5)}  ${cell(x.native_acq_per_sim_s).padEnd(27)}  ${cell(x.pv_acq_per_sim_s).padEnd(27)}  ${cell(x.adaptive_acq_per_sim_s).padEnd(27)}  ${x.adaptive_over_best.toFixed(3).padStart(10)}  ${`${x.adaptive_over_best_per_seed.min.toFixed(3)}–${x.adaptive_over_best_per_seed.max.toFixed(3)}`.padEnd(19)}  ${`${x.preemptions.native.median} / ${x.preemptions.pv.median} / ${x.preemptions.adaptive.median}`.padEnd(44)}  ${sw}${lat}`);
  }
  const rho = rows.filter((x) => x.rate_vs_preemptions !== null).map((x) => `ratio ${x.ratio} phase ${x.phase} ${x.rate_vs_preemptions}`);
  out.push('', `rate vs host preemptions, Spearman ρ over every run of the phase: ${rho.join('; ') || '-'}`, ...notes);
  out.push('');
  type Sum = { ratio: number; geomean_adaptive_over_best: number; phases_above_1_05: number[]; hint_changes: number; switched: number; late: number; eagain: number; not_started: number };
  const summary = r.summary as { by_ratio: Sum[]; all_ratios: { geomean_adaptive_over_best: number; rows_above_1_05: number; rows: number } };
  for (const s of summary.by_ratio) {
    out.push(`ratio ${s.ratio}: adaptive/best per phase (geomean of medians) ${s.geomean_adaptive_over_best}; phases above 1.05: ${s.phases_above_1_05.join(', ') || 'none'}; of ${s.hint_changes} hint changes ${s.switched} switched within their phase, ${s.late} late, ${s.eagain} -EAGAIN, ${s.not_started} not started`);
  }
  const t = summary.all_ratios;
  out.push(`all ratios: adaptive/best (geomean of medians) ${t.geomean_adaptive_over_best}; ${t.rows_above_1_05} of ${t.rows} phases above 1.05`);
  const sim = r.simulated_ms as { under: number; over: number };
  out.push(`acquisitions per simulated second over seeds ${(r.seeds as number[]).join(', ')}; phases of ${sim.under} ms (under) and ${sim.over} ms (over) simulated, host slice ${r.host_slice as string}; ${r.guest_runs as number} guest runs, ${r.wall_s} s wall on ${r.processes} processes`);
  return out.join('\n');
}
