/**
 * `npm run bench -- locks`: simulated lock throughput and p99 wait of native vs paravirt qspinlock,
 * 8 vCPUs on 16, 8, 5, 4, 3 and 2 physical CPUs (over-commit 0.5 … 4), timed strategy, every cost
 * from src/sched/cost-model.ts and src/host/costs.ts. Each run lasts a fixed simulated time, so the
 * figures are steady-state rates, not the time to finish a fixed amount of work. Every point runs
 * 5 seeds (the host's and the workload's randomness; --seeds N): over-commit points are bimodal
 * (a lock holder is preempted or not), which the min–max and the per-seed values show.
 * With the Debian 6.1 vmlinux in the cache, the real kernel's lock code runs every point too
 * (native, PV, test-and-set: bench/linux-locks.ts), rows marked `real`.
 */
import { Guest } from '../src/kernel/guest.ts';
import { hostScheduler } from '../src/kernel/host-setup.ts';
import { TimedChooser } from '../src/sched/timed.ts';
import { CYCLES_PER_NS } from '../src/sched/cost-model.ts';
import { HOST_COSTS } from '../src/host/costs.ts';
import { DEFAULT_SEEDS, cell, seedList, spread, type Spread } from './spread.ts';
import { linuxKernelDir } from '../src/cli/linux-kernel.ts';
import { loadLinuxKernel } from '../src/linux/kernel.ts';
import { REAL_FLAVORS, RealLockBench, type RealLockRow } from './linux-locks.ts';

export const describe = 'native vs PV qspinlock throughput and p99 wait under host over-commit (8 vCPUs), imitation and real Linux 6.1';

export const VCPUS = 8;
export const RATIOS = [0.5, 1, 1.5, 2, 3, 4];
/** Task loop: one shared lock, udelay() critical section 200 ns and think time 1 µs (±50 % jitter). */
export const LOCK_WORKLOAD = { iterations: 1e9, criticalLoops: 0, thinkLoops: 0, criticalCycles: 600, thinkCycles: 3000, taskLocks: 1, irqLockEvery: 0 } as const;

export interface LockRow {
  ratio: number;
  pcpus: number;
  flavor: 'native' | 'pv';
  acquisitions_per_sim_s: number;
  p99_wait_ns: number;
  acquisitions: number;
  halts: number;
  kicks: number;
  preemptions: number;
  instructions: number;
  wall_s: number;
}


export function runOne(flavor: 'native' | 'pv', ratio: number, simMs: number, seed = 1): LockRow {
  const g = new Guest({
    vcpus: VCPUS,
    flavor,
    seed,
    workload: LOCK_WORKLOAD,
  });
  const sched = hostScheduler(g, { overcommit: ratio });
  const chooser = new TimedChooser({ seed, host: sched });
  const end = simMs * 1e6 * CYCLES_PER_NS;
  const t0 = performance.now();
  const r = g.run({ chooser, maxInstructions: 2e9, record: false, until: () => chooser.now >= end });
  const wall = (performance.now() - t0) / 1000;
  if (r.reason !== 'until') throw new Error(`${flavor} at ratio ${ratio} stopped early: ${r.reason} ${r.error?.message ?? ''}`);
  const locks = g.checkLocks();
  if (!locks.every((l) => l.ok)) throw new Error(`${flavor} at ratio ${ratio}: a lock lost an increment`);
  const acquisitions = locks[0]!.acquisitions;
  return {
    ratio,
    pcpus: sched.opts.pcpus,
    flavor,
    acquisitions_per_sim_s: Math.round(acquisitions / (simMs / 1000)),
    p99_wait_ns: Math.round(g.waitPercentile(99) / CYCLES_PER_NS),
    acquisitions,
    halts: g.haltsInKvmWait(),
    kicks: g.host!.stats.kicks,
    preemptions: sched.stats.preemptions,
    instructions: r.instructions,
    wall_s: +wall.toFixed(2),
  };
}

/** One point (ratio, flavour) over every seed: each figure as a spread (bench/spread.ts). */
export interface LockPoint {
  /** The imitation's lock code, or the real Linux 6.1 kernel's (bench/linux-locks.ts). */
  guest: 'imitation' | 'real';
  ratio: number;
  pcpus: number;
  flavor: 'native' | 'pv' | 'test-and-set';
  seeds: number[];
  acquisitions_per_sim_s: Spread;
  p99_wait_ns: Spread;
  halts: Spread;
  kicks: Spread;
  preemptions: Spread;
}

function point(runs: (LockRow | RealLockRow)[], seeds: number[], guest: LockPoint['guest']): LockPoint {
  const f = (k: 'acquisitions_per_sim_s' | 'p99_wait_ns' | 'halts' | 'kicks' | 'preemptions') => spread(runs.map((r) => r[k]));
  return { guest, ratio: runs[0]!.ratio, pcpus: runs[0]!.pcpus, flavor: runs[0]!.flavor, seeds, acquisitions_per_sim_s: f('acquisitions_per_sim_s'), p99_wait_ns: f('p99_wait_ns'), halts: f('halts'), kicks: f('kicks'), preemptions: f('preemptions') };
}

export async function run(opts: { quick: boolean; seeds?: number }): Promise<Record<string, unknown>> {
  const simMs = opts.quick ? 5 : 20;
  const seeds = seedList(opts.seeds ?? DEFAULT_SEEDS);
  const runs: LockRow[] = [];
  const rows: LockPoint[] = [];
  for (const ratio of RATIOS) {
    for (const flavor of ['native', 'pv'] as const) {
      const mine = seeds.map((seed) => runOne(flavor, ratio, simMs, seed));
      runs.push(...mine);
      rows.push(point(mine, seeds, 'imitation'));
      process.stderr.write(`  ratio ${ratio} ${flavor}: done (${seeds.length} seeds)\n`);
    }
  }
  // The real kernel's lock code on the same host model, when its vmlinux is in the cache.
  let real: RealLockBench | undefined, realSkipped: string | undefined;
  try {
    real = new RealLockBench(loadLinuxKernel(linuxKernelDir('debian-6.1', (line) => process.stderr.write(`bench locks: ${line}\n`))), VCPUS);
  } catch (e) {
    realSkipped = (e as Error).message;
  }
  const realRuns: RealLockRow[] = [];
  if (real !== undefined) {
    for (const ratio of RATIOS) {
      for (const flavor of REAL_FLAVORS) {
        const mine = seeds.map((seed) => real.runOne(flavor, ratio, simMs, seed));
        realRuns.push(...mine);
        rows.push(point(mine, seeds, 'real'));
        process.stderr.write(`  ratio ${ratio} real ${flavor}: done (${seeds.length} seeds)\n`);
      }
    }
  }
  const pvRuns = runs.filter((r) => r.flavor === 'pv');
  const guestIps = Math.round(pvRuns.reduce((a, r) => a + r.instructions, 0) / pvRuns.reduce((a, r) => a + r.wall_s, 0));
  const crossover = RATIOS.map((ratio) => {
    const n = rows.find((r) => r.guest === 'imitation' && r.ratio === ratio && r.flavor === 'native')!;
    const p = rows.find((r) => r.guest === 'imitation' && r.ratio === ratio && r.flavor === 'pv')!;
    return { ratio, winner: n.acquisitions_per_sim_s.median >= p.acquisitions_per_sim_s.median ? 'native' : 'pv', pv_over_native: +(p.acquisitions_per_sim_s.median / Math.max(1, n.acquisitions_per_sim_s.median)).toFixed(3) };
  });
  return {
    bench: 'locks',
    vcpus: VCPUS,
    simulated_ms_per_run: simMs,
    seeds,
    workload: { critical_section_ns: 200, think_ns: 1000, locks: 1 },
    host: { slice: 'CFS: max(6 ms·(1+log2 pCPUs) / vCPUs per pCPU, 0.75 ms·(1+log2 pCPUs))', switch_cycles: HOST_COSTS.contextSwitch.cycles, wake_cycles: HOST_COSTS.wakeup.cycles },
    spin_threshold: 1 << 15,
    rows,
    runs,
    real_runs: realRuns,
    ...(realSkipped !== undefined ? { real_skipped: realSkipped } : {}),
    real_spin_threshold: 1 << 15,
    crossover,
    guest_ips: guestIps,
  };
}

export function table(r: Record<string, unknown>): string {
  const rows = r.rows as LockPoint[];
  const out = ['guest      ratio  pCPUs  flavor        acq/sim-s median (min–max)     p99 wait ns median (min–max)  preemptions median (min–max)  acq/sim-s per seed', '---------  -----  -----  ------------  ------------------------------  ----------------------------  ----------------------------  ------------------'];
  for (const x of rows) {
    out.push(`${x.guest.padEnd(9)}  ${String(x.ratio).padStart(5)}  ${String(x.pcpus).padStart(5)}  ${x.flavor.padEnd(12)}  ${cell(x.acquisitions_per_sim_s).padEnd(30)}  ${cell(x.p99_wait_ns).padEnd(28)}  ${cell(x.preemptions).padEnd(28)}  ${x.acquisitions_per_sim_s.values.map((v) => v.toLocaleString('en-US')).join(' ')}`);
  }
  const c = r.crossover as { ratio: number; winner: string; pv_over_native: number }[];
  if (typeof r.real_skipped === 'string') out.push('', `real kernel rows skipped: ${r.real_skipped}`);
  out.push('', 'imitation winner by ratio (medians): ' + c.map((x) => `${x.ratio}: ${x.winner} (pv/native ${x.pv_over_native})`).join(', '));
  const best = RATIOS.map((ratio) => rows.filter((x) => x.guest === 'real' && x.ratio === ratio).sort((a, b) => b.acquisitions_per_sim_s.median - a.acquisitions_per_sim_s.median)[0]).filter((x) => x !== undefined);
  if (best.length > 0) out.push('real kernel winner by ratio (medians): ' + best.map((x) => `${x.ratio}: ${x.flavor}`).join(', '));
  out.push(`seeds ${(r.seeds as number[]).join(', ')}, ${r.simulated_ms_per_run as number} ms simulated per run; guest instructions per wall-second (PV runs): ${(r.guest_ips as number).toLocaleString('en-US')}`);
  return out.join('\n');
}
