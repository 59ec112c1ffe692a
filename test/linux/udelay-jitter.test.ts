// The real-kernel workload's udelay() has the imitation's seeded jitter (src/kernel/guest.ts,
// ±50 %): without it, fixed 200 ns / 1 µs phases put the vCPUs into a lock-step where each finds
// the lock free (README, bench locks). The jitter is the guest's own seeded randomness: the same
// seed gives the same run, another seed another one, and delayJitter 0 the fixed delays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxGuest, type LinuxGuestOptions } from '../../src/linux/guest.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { boot, linuxKernel } from './fixture.ts';

const WORKLOAD = { iterations: 12, criticalLoops: 0, thinkLoops: 0, criticalCycles: 600, thinkCycles: 3000, taskLocks: 1, irqEvery: 0 };

/** Each vCPU's clock when every task is done: the sum of its delays and its lock work. */
function clocks(g0: LinuxGuest, seed: number): number[] {
  const g = g0.fork({ seed });
  const r = g.run({ chooser: new TimedChooser({ seed: 1 }) });
  assert.equal(r.reason, 'until', `${r.reason} ${r.error?.message ?? ''}`);
  for (const l of g.checkLocks()) assert.ok(l.ok, `lock ${l.index}: ${l.counter} != ${l.acquisitions}`);
  return g.machine.vcpus.map((c) => c.time);
}

function guest(extra: Partial<LinuxGuestOptions>): LinuxGuest | undefined {
  const { kernel } = linuxKernel();
  if (kernel === undefined) return undefined;
  return new LinuxGuest(boot(kernel, { platform: 'kvm-realtime' }), { vcpus: 2, workload: WORKLOAD, ...extra });
}

test('udelay() jitters by seed: the same seed gives the same clocks, other seeds other ones', (t) => {
  const g0 = guest({});
  if (g0 === undefined) return t.skip(linuxKernel().reason);
  const a = clocks(g0, 1);
  assert.deepEqual(clocks(g0, 1), a, 'deterministic for a seed');
  const others = [2, 3, 4].map((s) => clocks(g0, s));
  assert.ok(others.some((o) => o.some((x, i) => x !== a[i])), `seeds 2..4 ran with the same delays as seed 1: ${a}`);
  // ±50 % around a fixed 12 × 3,600 cycles of udelay(): every clock stays within the bounds.
  const fixed = 12 * 3600;
  for (const o of [a, ...others]) for (const x of o) assert.ok(x >= fixed * 0.5 && x <= fixed * 1.5 + 100_000, `clock ${x} outside the jitter's bounds`);
});

test('delayJitter 0 gives the fixed delays whatever the seed', (t) => {
  const g0 = guest({ delayJitter: 0 });
  if (g0 === undefined) return t.skip(linuxKernel().reason);
  const a = clocks(g0, 1);
  for (const s of [2, 3]) assert.deepEqual(clocks(g0, s), a);
});

test('a delayJitter outside 0..1 is refused with one line', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  assert.throws(() => guest({ delayJitter: 2 }), /delayJitter must be in 0\.\.1/);
});
