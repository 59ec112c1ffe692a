/**
 * `npm run bench -- linux`: the real-kernel guest's speed (issue 10). Guest instructions per
 * second running the real Linux 6.1 lock code (native and PV, 4 vCPUs, random strategy, IRQs and
 * NMIs) next to the imitation running the same workload shape; and executions per second of a
 * 200-seed sweep of scenarios/linux-6.1.yaml (PV, 4 vCPUs on 2 pCPUs, SPIN_THRESHOLD knob 8), each
 * execution a fork of one boot, next to the imitation's sweep of the same scenario with the
 * imitation's guest. Seeds per point: --seeds N (default 5); --quick shortens both.
 * Boot (loading the vmlinux, boot patching) is measured apart: it happens once per process.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { packageRoot } from '../src/cli/package-root.ts';
import { linuxKernelDir } from '../src/cli/linux-kernel.ts';
import { bootLinuxScenario, runLinuxOnce } from '../src/cli/commands/run-linux.ts';
import type { GuestScenario } from '../src/cli/scenario/guest-schema.ts';
import { loadLinuxKernel, bootLinux } from '../src/linux/kernel.ts';
import { LinuxGuest } from '../src/linux/guest.ts';
import { Guest } from '../src/kernel/guest.ts';
import { hostScheduler } from '../src/kernel/host-setup.ts';
import { VECTOR } from '../src/kernel/layout.ts';
import { RandomChooser } from '../src/sched/random.ts';
import { TimedChooser } from '../src/sched/timed.ts';
import { CYCLES_PER_NS } from '../src/sched/cost-model.ts';
import { DEFAULT_SEEDS, cell, seedList, spread, type Spread } from './spread.ts';

export const describe = 'real Linux 6.1 lock code: guest instructions/s and sweep executions/s, next to the imitation';

const WORKLOAD = { criticalLoops: 10, thinkLoops: 20, taskLocks: 1 } as const;
const INJECT = { irqs: 20, nmis: 10, irqVector: VECTOR.LOCK_IRQ };

interface Speed {
  guest: 'real' | 'imitation';
  flavor: 'native' | 'pv';
  instructions_per_s: Spread;
  instructions: number;
}

export async function run(opts: { json: boolean; quick: boolean; seeds?: number }): Promise<Record<string, unknown>> {
  const seeds = seedList(opts.seeds ?? DEFAULT_SEEDS);
  const iterations = opts.quick ? 100 : 1000;
  const sweepSeeds = opts.quick ? 20 : 200;
  let t0 = performance.now();
  let dir: string;
  try {
    dir = linuxKernelDir('debian-6.1', (line) => console.error(`bench linux: ${line}`));
  } catch (e) {
    return { skipped: (e as Error).message };
  }
  const kernel = loadLinuxKernel(dir);
  const loadS = (performance.now() - t0) / 1000;

  const speeds: Speed[] = [];
  for (const flavor of ['native', 'pv'] as const) {
    t0 = performance.now();
    const base = new LinuxGuest(bootLinux(kernel, { platform: flavor === 'pv' ? 'kvm' : 'kvm-realtime' }), { vcpus: 4, spinThreshold: 64, workload: { ...WORKLOAD, iterations, irqEvery: 4 } });
    const bootS = (performance.now() - t0) / 1000;
    const real: number[] = [], imit: number[] = [];
    let nReal = 0, nImit = 0;
    for (const seed of seeds) {
      const g = base.fork();
      t0 = performance.now();
      const r = g.run({ chooser: new RandomChooser(seed), inject: INJECT, record: false });
      real.push(r.instructions / ((performance.now() - t0) / 1000));
      nReal += r.instructions;
      if (r.reason !== 'until' || !g.checkLocks().every((l) => l.ok)) throw new Error(`real ${flavor} seed ${seed}: ${r.reason}`);
      const im = new Guest({ vcpus: 4, flavor, spinThreshold: 64, seed, workload: { ...WORKLOAD, iterations, irqLockEvery: 4 } });
      t0 = performance.now();
      const ri = im.run({ chooser: new RandomChooser(seed), inject: INJECT, record: false });
      imit.push(ri.instructions / ((performance.now() - t0) / 1000));
      nImit += ri.instructions;
    }
    speeds.push({ guest: 'real', flavor, instructions_per_s: spread(real), instructions: nReal }, { guest: 'imitation', flavor, instructions_per_s: spread(imit), instructions: nImit });
    if (!opts.json) console.error(`bench linux: ${flavor} boot ${bootS.toFixed(2)} s`);
  }

  // The sweep of scenarios/linux-6.1.yaml, and of the same scenario on the imitation.
  const file = join(packageRoot(), 'scenarios', 'linux-6.1.yaml');
  const s = parse(readFileSync(file, 'utf8')) as GuestScenario;
  t0 = performance.now();
  const base = bootLinuxScenario(s, () => {}, kernel);
  const sweepBootS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  let failing = 0;
  for (let seed = 1; seed <= sweepSeeds; seed++) if (!runLinuxOnce(s, base.fork(), 'timed', seed, { seed }).ok) failing++;
  const realSweepS = (performance.now() - t0) / 1000;
  const us = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 1000 * CYCLES_PER_NS));
  const imBase = new Guest({ vcpus: s.guest.vcpus, platform: 'kvm', spinThreshold: s.guest.spinThreshold!, host: { pvUnhalt: true, realtime: false }, workload: { iterations: s.workload!.iterations!, criticalLoops: s.workload!.criticalLoops!, thinkLoops: s.workload!.thinkLoops!, taskLocks: 1, irqLockEvery: s.workload!.irqLockEvery! } });
  t0 = performance.now();
  let imFailing = 0;
  for (let seed = 1; seed <= sweepSeeds; seed++) {
    const g = imBase.fork({ seed });
    const host = hostScheduler(g, { pcpus: s.host!.pcpus!, sliceCycles: us(s.host!.sliceUs)!, switchCycles: us(s.host!.switchUs)!, wakeCycles: us(s.host!.wakeUs)! });
    const r = g.run({ chooser: new TimedChooser({ seed, host }), inject: { nmis: s.inject!.nmis!, irqs: s.inject!.irqs!, irqVector: VECTOR.LOCK_IRQ }, record: false });
    if (r.reason !== 'until' || !g.checkLocks().every((l) => l.ok)) imFailing++;
  }
  const imSweepS = (performance.now() - t0) / 1000;
  return {
    kernel: kernel.release,
    load_s: +loadS.toFixed(2),
    speeds,
    sweep: {
      scenario: 'scenarios/linux-6.1.yaml',
      seeds: sweepSeeds,
      real: { executions_per_s: +(sweepSeeds / realSweepS).toFixed(1), seconds: +realSweepS.toFixed(2), boot_s: +sweepBootS.toFixed(2), failing },
      imitation: { executions_per_s: +(sweepSeeds / imSweepS).toFixed(1), seconds: +imSweepS.toFixed(2), failing: imFailing },
    },
  };
}

export function table(r: Record<string, unknown>): string {
  if (typeof r.skipped === 'string') return `skipped: ${r.skipped}`;
  const speeds = r.speeds as Speed[];
  const sw = r.sweep as { scenario: string; seeds: number; real: { executions_per_s: number; failing: number }; imitation: { executions_per_s: number; failing: number } };
  const out = [`Linux ${String(r.kernel)} (loaded in ${String(r.load_s)} s)`, '', 'guest      flavor  instructions/s median (min–max)'];
  for (const x of speeds) out.push(`${x.guest.padEnd(10)} ${x.flavor.padEnd(7)} ${cell(x.instructions_per_s)}`);
  out.push('', `${sw.scenario}, ${sw.seeds} seeds: real ${sw.real.executions_per_s} executions/s (${sw.real.failing} failing), imitation ${sw.imitation.executions_per_s} executions/s (${sw.imitation.failing} failing)`);
  return out.join('\n');
}
