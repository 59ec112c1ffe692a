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
import { spawn } from 'node:child_process';
import { childArgs } from './_child.ts';
import { availableParallelism } from 'node:os';

export const describe = 'adaptive (v2 switch on the REALTIME hint) vs static native and PV locks while the host alternates under/over-commit (8 vCPUs)';

const OVER_RATIOS = RATIOS.filter((r) => r > 1);
/**
 * Full: a switch under over-commit takes four text_poke_sync rounds and the barrier, each waiting
 * for every vCPU to be scheduled (a host rotation, ~10 ms at CFS slices): ~50 ms; over-commit
 * phases of 150 ms leave most of each phase to the steady state. Under-commit switches take µs.
 * Quick: host slices of 200 µs, so a rotation (and the switch) is short enough for 10 ms phases.
 */
const FULL: Omit<AdaptiveConfig, 'ratio'> = { phases: 3, underMs: 5, overMs: 150 };
const QUICK: Omit<AdaptiveConfig, 'ratio'> = { phases: 3, underMs: 0.5, overMs: 10, sliceUs: 200 };

export interface AdaptiveRow {
  ratio: number;
  phase: number;
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

/** One row per phase from the three guests' runs at one ratio. */
export function phaseRows(ratio: number, runs: readonly GuestRun[]): AdaptiveRow[] {
  const by = (k: GuestKind) => runs.find((r) => r.kind === k)!;
  const native = by('native'), pv = by('pv'), adaptive = by('adaptive');
  return adaptive.phases.map((a, i): AdaptiveRow => {
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

/** The three guests at one ratio, one after the other in this process. */
export function runRatio(cfg: AdaptiveConfig): { rows: AdaptiveRow[]; runs: GuestRun[] } {
  const runs = (['native', 'pv', 'adaptive'] as const).map((k) => runGuest(k, cfg));
  return { rows: phaseRows(cfg.ratio, runs), runs };
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

function summarize(ratio: number, rows: AdaptiveRow[], runs: readonly GuestRun[]): Record<string, unknown> {
  const rate = (k: GuestKind) => {
    const g = runs.find((x) => x.kind === k)!;
    const acq = g.phases.reduce((a, p) => a + p.acquisitions, 0);
    const cycles = g.phases.reduce((a, p) => a + (p.end - p.start), 0);
    return acq / (cycles / CYCLES_PER_NS / 1e9);
  };
  const a = rate('adaptive'), n = rate('native'), p = rate('pv');
  const changes = rows.filter((r) => r.switch_result !== null);
  const lat = changes.filter((r) => r.switch_us !== null).map((r) => r.switch_us!);
  return {
    ratio,
    geomean_adaptive_over_best: geomean(rows.map((r) => r.adaptive_over_best)),
    whole_run_acq_per_sim_s: { native: Math.round(n), pv: Math.round(p), adaptive: Math.round(a) },
    adaptive_over_native: +(a / n).toFixed(3),
    adaptive_over_pv: +(a / p).toFixed(3),
    hint_changes: changes.length,
    switched: changes.filter((r) => r.switch_result === 'switched').length,
    late: changes.filter((r) => r.switch_result === 'late').length,
    eagain: changes.filter((r) => r.switch_result === 'eagain').length,
    not_started: changes.filter((r) => r.switch_result === 'not-started').length,
    retries: changes.reduce((t, r) => t + (r.switch_retries ?? 0), 0),
    max_switch_us: lat.length > 0 ? Math.max(...lat) : null,
    wall_s: +runs.reduce((t, r) => t + r.wall_s, 0).toFixed(1),
  };
}

export async function run(opts: { json: boolean; quick: boolean }): Promise<Record<string, unknown>> {
  const base = opts.quick ? QUICK : FULL;
  const ratios = opts.quick ? [3] : OVER_RATIOS;
  const kinds = ['native', 'pv', 'adaptive'] as const;
  const width = Math.max(1, availableParallelism());
  const t0 = performance.now();
  const jobs = ratios.flatMap((ratio) => kinds.map((kind) => async () => {
    const r = await runGuestChild(kind, { ...base, ratio });
    if (!opts.json) process.stderr.write(`  ratio ${ratio} ${kind}: ${r.wall_s} s\n`);
    return r;
  }));
  const all = await pool(jobs, width);
  const rows: AdaptiveRow[] = [];
  const byRatio: Record<string, unknown>[] = [];
  ratios.forEach((ratio, i) => {
    const runs = all.slice(3 * i, 3 * i + 3);
    const rs = phaseRows(ratio, runs);
    rows.push(...rs);
    byRatio.push(summarize(ratio, rs, runs));
  });
  const rate = (k: GuestKind) => {
    const ps = all.filter((g) => g.kind === k).flatMap((g) => g.phases);
    return ps.reduce((a, p) => a + p.acquisitions, 0) / (ps.reduce((a, p) => a + (p.end - p.start), 0) / CYCLES_PER_NS / 1e9);
  };
  const summary = {
    by_ratio: byRatio,
    all_ratios: {
      geomean_adaptive_over_best: geomean(rows.map((r) => r.adaptive_over_best)),
      adaptive_over_native: +(rate('adaptive') / rate('native')).toFixed(3),
      adaptive_over_pv: +(rate('adaptive') / rate('pv')).toFixed(3),
      hint_changes: rows.filter((r) => r.switch_result !== null).length,
      switched_within_phase: rows.filter((r) => r.switch_result === 'switched').length,
    },
  };
  return {
    vcpus: VCPUS,
    under_commit: { ratio: UNDER_RATIO, pcpus: Math.round(VCPUS / UNDER_RATIO), hint: 'realtime' },
    over_commit_ratios: ratios,
    phases_per_ratio: base.phases,
    simulated_ms: { under: base.underMs, over: base.overMs },
    host_slice: base.sliceUs === undefined ? 'CFS (cfsSliceCycles for the pCPU count)' : `${base.sliceUs} µs`,
    seed: SEED,
    workload: { critical_section_ns: 200, think_ns: THINK_CYCLES / CYCLES_PER_NS, locks: TASK_LOCKS, note: 'bench locks with 10 µs think time: with 1 µs the lock is never free of waiters and v2 cannot switch' },
    v2: { patcher_cpu: V2_OPTIONS.patcherCpu, max_wait_spins: 20_000, max_retries: 3, note: 'v2 defaults' },
    rows,
    summary,
    processes: width,
    wall_s: +((performance.now() - t0) / 1000).toFixed(1),
  };
}

export function table(r: Record<string, unknown>): string {
  const rows = r.rows as AdaptiveRow[];
  const n = (x: number) => x.toLocaleString('en-US').padStart(10);
  const out = [
    'ratio  phase  commit  pCPUs  hint      native/s    pv/s        adaptive/s  flavor  best    adapt/best  switch µs (v2 µs, retries)  after the switch: ms, adapt/best',
    '-----  -----  ------  -----  --------  ----------  ----------  ----------  ------  ------  ----------  --------------------------  ---------------------------------',
  ];
  for (const x of rows) {
    const sw = x.switch_result === null ? '-' : x.switch_result === 'switched' || x.switch_result === 'late'
      ? `${x.switch_us} (${x.switch_v2_us}, ${x.switch_retries})${x.switch_result === 'late' ? ' late' : ''}` : x.switch_result;
    const after = x.after_switch ? `${x.after_switch.ms} ms, ${x.after_switch.adaptive_over_best.toFixed(3)}` : '-';
    out.push(`${String(x.ratio).padStart(5)}  ${String(x.phase).padStart(5)}  ${x.commit.padEnd(6)}  ${String(x.pcpus).padStart(5)}  ${x.hint.padEnd(8)}  ${n(x.native_acq_per_sim_s)}  ${n(x.pv_acq_per_sim_s)}  ${n(x.adaptive_acq_per_sim_s)}  ${x.adaptive_flavor.padEnd(6)}  ${x.best_static.padEnd(6)}  ${x.adaptive_over_best.toFixed(3).padStart(10)}  ${sw.padEnd(26)}  ${after}`);
  }
  out.push('');
  type Sum = { ratio: number; geomean_adaptive_over_best: number; adaptive_over_native: number; adaptive_over_pv: number; hint_changes: number; switched: number; late: number; eagain: number };
  const summary = r.summary as { by_ratio: Sum[]; all_ratios: { geomean_adaptive_over_best: number; adaptive_over_native: number; adaptive_over_pv: number; hint_changes: number; switched_within_phase: number } };
  for (const s of summary.by_ratio) {
    out.push(`ratio ${s.ratio}: adaptive/best per phase (geomean) ${s.geomean_adaptive_over_best}; whole run adaptive/native ${s.adaptive_over_native}, adaptive/pv ${s.adaptive_over_pv}; of ${s.hint_changes} hint changes ${s.switched} switched within their phase, ${s.late} late, ${s.eagain} -EAGAIN`);
  }
  const t = summary.all_ratios;
  out.push(`all ratios: adaptive/best per phase (geomean) ${t.geomean_adaptive_over_best}; adaptive/native ${t.adaptive_over_native}, adaptive/pv ${t.adaptive_over_pv}; ${t.switched_within_phase} of ${t.hint_changes} hint changes switched within their phase`);
  const sim = r.simulated_ms as { under: number; over: number };
  out.push(`acquisitions per simulated second; phases of ${sim.under} ms (under) and ${sim.over} ms (over) simulated, host slice ${r.host_slice as string}; ${r.wall_s} s wall on ${r.processes} processes`);
  return out.join('\n');
}
