// The host scheduler's pCPU count changing while the guest runs (HostScheduler.setPcpus): how the
// host moves between under- and over-commit (seed 000: the REALTIME hint goes stale exactly then).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { HostScheduler } from '../../src/host/scheduler.ts';
import { cfsSliceCycles } from '../../src/host/costs.ts';
import { percpuBase, PERCPU } from '../../src/kernel/layout.ts';
import { STEAL_TIME_PREEMPTED_OFFSET } from '../../src/host/kvm-abi.ts';

/** A PV guest of 4 vCPUs on 4 pCPUs, each vCPU looping on its own lock (no lock waits). */
function boot(): { g: Guest; host: HostScheduler; chooser: TimedChooser } {
  const g = new Guest({ vcpus: 4, flavor: 'pv', workload: { iterations: 1e9, criticalLoops: 0, thinkLoops: 0, criticalCycles: 300, thinkCycles: 600, taskLocks: 4, irqLockEvery: 0 } });
  const host = new HostScheduler({ pcpus: 4, sliceCycles: 20_000, switchCycles: 100, wakeCycles: 100 }, g.machine.vcpus, g.machine.memory, (c, p) => g.host!.setPreempted(c, p));
  return { g, host, chooser: new TimedChooser({ seed: 1, host }) };
}

function runFor(g: Guest, chooser: TimedChooser, cycles: number): void {
  const end = chooser.now + cycles;
  const r = g.run({ chooser, record: false, maxInstructions: 1e7, until: () => chooser.now >= end });
  assert.equal(r.reason, 'until', r.error?.message);
}

const preemptedByte = (g: Guest, cpu: number) => g.machine.memory.readBytes(percpuBase(cpu) + PERCPU.stealTime + STEAL_TIME_PREEMPTED_OFFSET, 1)[0];
const acquisitions = (g: Guest, cpu: number) => g.machine.memory.readU64(percpuBase(cpu) + PERCPU.acquisitions + 8 * cpu);
const running = (host: HostScheduler) => [0, 1, 2, 3].filter((c) => host.isRunning(c));

test('taking pCPUs away deschedules the vCPUs on them at once: queued, steal time preempted = 1', () => {
  const { g, host, chooser } = boot();
  runFor(g, chooser, 100_000);
  assert.deepEqual(running(host), [0, 1, 2, 3]);
  assert.equal(host.stats.preemptions, 0);
  host.setPcpus(2, chooser.now, 20_000);
  assert.equal(host.opts.pcpus, 2);
  assert.deepEqual(running(host), [0, 1], 'vCPUs 2 and 3 ran on pCPUs 2 and 3');
  assert.equal(host.stats.preemptions, 2);
  assert.deepEqual([2, 3].map((c) => [g.machine.vcpus[c]!.preempted, preemptedByte(g, c)]), [[true, 1], [true, 1]]);
  assert.deepEqual([0, 1].map((c) => preemptedByte(g, c)), [0, 0]);
  assert.ok(host.nextEvent() < Infinity, 'a slice end is due: someone waits');
});

test('with fewer pCPUs than vCPUs the host time-slices: every vCPU keeps making progress', () => {
  const { g, host, chooser } = boot();
  runFor(g, chooser, 50_000);
  host.setPcpus(2, chooser.now, 20_000);
  const before = [0, 1, 2, 3].map((c) => acquisitions(g, c));
  runFor(g, chooser, 400_000);
  assert.ok(host.stats.preemptions > 10, `${host.stats.preemptions} preemptions`);
  for (const c of [0, 1, 2, 3]) assert.ok(acquisitions(g, c) > before[c]!, `vCPU ${c} took its lock again`);
  assert.ok(host.stats.steal.every((s) => s > 0), 'every vCPU waited for a pCPU');
});

test('adding pCPUs back runs every queued vCPU: no more preemptions, steal time preempted = 0', () => {
  const { g, host, chooser } = boot();
  runFor(g, chooser, 50_000);
  host.setPcpus(1, chooser.now, 20_000);
  runFor(g, chooser, 100_000);
  host.setPcpus(4, chooser.now, 20_000);
  assert.deepEqual(running(host), [0, 1, 2, 3]);
  assert.equal(host.nextEvent(), Infinity, 'nobody waits, no slice end matters');
  const preemptions = host.stats.preemptions;
  runFor(g, chooser, 200_000);
  assert.equal(host.stats.preemptions, preemptions);
  assert.deepEqual([0, 1, 2, 3].map((c) => preemptedByte(g, c)), [0, 0, 0, 0]);
});

test('the slice follows the pCPU count (CFS) and applies to the running vCPUs from when each was picked', () => {
  const { g, host, chooser } = boot();
  host.setPcpus(3, chooser.now);
  assert.equal(host.opts.sliceCycles, cfsSliceCycles(3, 2));
  host.setPcpus(8, chooser.now);
  assert.equal(host.opts.sliceCycles, cfsSliceCycles(8, 1));
  // A long slice, then a short one: vCPU 0 has run longer than the new slice, so it goes at the
  // next check once someone waits.
  const before = host.stats.preemptions;
  host.setPcpus(2, chooser.now, 10_000_000);
  runFor(g, chooser, 100_000);
  assert.equal(host.stats.preemptions - before, 2, 'only the vCPUs on the pCPUs taken away');
  host.setPcpus(2, chooser.now, 20_000);
  runFor(g, chooser, 5_000);
  assert.ok(host.stats.preemptions - before > 2, 'the running vCPUs were over the new slice');
  assert.throws(() => host.setPcpus(0, chooser.now), /at least one physical CPU/);
});

/**
 * Lock-holder preemption: 4 vCPUs on one native lock, 2 pCPUs, long slices (10 ms). Without PLE a
 * waiter that spins on a descheduled holder burns its whole slice; with PLE (KVM's ple_window 4096,
 * ple_gap 128) it exits after ~4096 cycles of PAUSEs and yields its pCPU to a descheduled vCPU.
 */
function contended(ple: boolean) {
  const g = new Guest({ vcpus: 4, flavor: 'native', workload: { iterations: 1e9, criticalLoops: 0, thinkLoops: 0, criticalCycles: 600, thinkCycles: 3000, taskLocks: 1, irqLockEvery: 0 } });
  const host = new HostScheduler({ pcpus: 2, sliceCycles: 30_000_000, switchCycles: 6000, wakeCycles: 15000, ...(ple ? { ple: { window: 4096, gap: 128 } } : {}) }, g.machine.vcpus, g.machine.memory, (c, p) => g.host!.setPreempted(c, p));
  const chooser = new TimedChooser({ seed: 1, host });
  runFor(g, chooser, 60_000_000);
  return { host, acquisitions: g.checkLocks()[0]!.acquisitions };
}

test('pause-loop exiting: a waiter spinning on a descheduled holder yields its pCPU, so the lock moves on', () => {
  const off = contended(false), on = contended(true);
  assert.equal(off.host.stats.pleYields, 0);
  assert.ok(on.host.stats.pleYields > 100, `PLE yields ${on.host.stats.pleYields}`);
  assert.ok(on.acquisitions > 1.2 * off.acquisitions, `acquisitions with PLE ${on.acquisitions}, without ${off.acquisitions}`);
});
