/**
 * The real Linux 6.1 lock code in `npm run bench -- locks` (issue 10): the same 8 vCPUs, the same
 * host model (src/host/scheduler.ts with the CFS slice, switch and wake costs and PLE the
 * imitation's rows use), the same fixed simulated time per run, but the kernel's own
 * _raw_spin_lock / _raw_spin_unlock and slowpaths, booted three ways:
 * - native: KVM with KVM_HINTS_REALTIME (kvm_spinlock_init keeps native qspinlock);
 * - pv: KVM with PV_UNHALT (the PV slowpath, kvm_wait's HLT, kvm_kick_cpu's KICK_CPU);
 * - test-and-set: KVM without PV_UNHALT (kvm_spinlock_init returns early, virt_spin_lock_key
 *   stays on: native_queued_spin_lock_slowpath's virt_spin_lock() test-and-set loop).
 * SPIN_THRESHOLD is the kernel's own 1 << 15. The workload is the real-kernel guest's task loop
 * (src/linux/workload.ts) with the imitation's udelay() critical section (200 ns) and think time
 * (1 µs), each with the imitation's seeded ±50 % jitter (the run's seed seeds it, as the imitation's).
 */
import type { LockRow } from './locks.ts';
import { LinuxGuest, lockFlavorOf } from '../src/linux/guest.ts';
import { bootLinux, type LinuxBootOptions, type LinuxKernel } from '../src/linux/kernel.ts';
import { HostScheduler } from '../src/host/scheduler.ts';
import { HOST_COSTS, cfsSliceCycles } from '../src/host/costs.ts';
import { pcpusFor } from '../src/kernel/host-setup.ts';
import { TimedChooser } from '../src/sched/timed.ts';
import { CYCLES_PER_NS } from '../src/sched/cost-model.ts';

export type RealFlavor = 'native' | 'pv' | 'test-and-set';
export const REAL_FLAVORS: readonly RealFlavor[] = ['native', 'pv', 'test-and-set'];

/** The imitation's shape: udelay() of 600 cycles (200 ns) inside, 3000 (1 µs) between acquisitions. */
export const REAL_LOCK_WORKLOAD = { iterations: 1e9, criticalLoops: 0, thinkLoops: 0, criticalCycles: 600, thinkCycles: 3000, taskLocks: 1, irqEvery: 0 } as const;

const BOOTS: Record<RealFlavor, LinuxBootOptions> = {
  native: { platform: 'kvm-realtime', pvUnhalt: true },
  pv: { platform: 'kvm', pvUnhalt: true },
  'test-and-set': { platform: 'kvm', pvUnhalt: false },
};

/** A row of the real kernel's lock bench: the imitation's row (bench/locks.ts) with its flavour. */
export type RealLockRow = Omit<LockRow, 'flavor'> & { flavor: RealFlavor };

/** One booted guest per flavour (a boot reproduces every boot-time text write), forked per run. */
export class RealLockBench {
  private readonly guests = new Map<RealFlavor, LinuxGuest>();
  constructor(private readonly kernel: LinuxKernel, private readonly vcpus: number) {}

  private guest(flavor: RealFlavor, seed: number): LinuxGuest {
    let g = this.guests.get(flavor);
    if (g === undefined) {
      const b = bootLinux(this.kernel, BOOTS[flavor]);
      const got = lockFlavorOf(b) === 'virt-spin-lock' ? 'test-and-set' : lockFlavorOf(b);
      if (got !== flavor) throw new Error(`the ${flavor} boot chose ${got} locks`);
      g = new LinuxGuest(b, { vcpus: this.vcpus, workload: REAL_LOCK_WORKLOAD });
      g.machine.tracing = false;
      this.guests.set(flavor, g);
    }
    return g.fork({ seed });
  }

  runOne(flavor: RealFlavor, ratio: number, simMs: number, seed: number): RealLockRow {
    const g = this.guest(flavor, seed);
    const n = this.vcpus;
    const pcpus = pcpusFor(n, ratio);
    const kvm = g.host!;
    const host = new HostScheduler(
      { pcpus, sliceCycles: cfsSliceCycles(pcpus, Math.ceil(n / pcpus)), switchCycles: HOST_COSTS.contextSwitch.cycles, wakeCycles: HOST_COSTS.wakeup.cycles, ple: { window: HOST_COSTS.pleWindow.cycles, gap: HOST_COSTS.pleGap.cycles } },
      g.machine.vcpus, g.machine.memory, (cpu, p) => kvm.setPreempted(cpu, p),
    );
    const chooser = new TimedChooser({ seed, host });
    const end = simMs * 1e6 * CYCLES_PER_NS;
    const t0 = performance.now();
    const r = g.run({ chooser, maxInstructions: 2e9, record: false, until: () => chooser.now >= end });
    const wall = (performance.now() - t0) / 1000;
    if (r.reason !== 'until' || r.hazards.length > 0) throw new Error(`real ${flavor} at ratio ${ratio} seed ${seed} stopped early: ${r.reason} ${r.error?.message ?? ''}`);
    const lock = g.checkLocks()[0]!;
    // Stopped at a fixed time, not at a quiet point: the holder may have bumped the counter and not yet its own count.
    if (lock.counter - lock.acquisitions < 0 || lock.counter - lock.acquisitions > 1) throw new Error(`real ${flavor} at ratio ${ratio}: the lock lost an increment (${lock.counter}/${lock.acquisitions})`);
    const waits = [...g.probes.waits].sort((a, b) => a - b);
    const p99 = waits.length === 0 ? 0 : waits[Math.min(waits.length - 1, Math.floor(waits.length * 0.99))]!;
    return {
      ratio, pcpus, flavor,
      acquisitions_per_sim_s: Math.round(lock.acquisitions / (simMs / 1000)),
      p99_wait_ns: Math.round(p99 / CYCLES_PER_NS),
      acquisitions: lock.acquisitions,
      halts: g.probes.halts,
      kicks: kvm.stats.kicks,
      preemptions: host.stats.preemptions,
      instructions: r.instructions,
      wall_s: +wall.toFixed(2),
    };
  }
}
