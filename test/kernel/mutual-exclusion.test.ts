// Both lock flavours keep mutual exclusion on every seed of a sweep, with IRQ and NMI handlers
// taking locks too (seed 000: "some NMI handlers use locks"), and every run finishes: no vCPU is
// left halted on a free lock (no lost wake-up).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { HostScheduler } from '../../src/host/scheduler.ts';
import { VECTOR } from '../../src/kernel/layout.ts';

const SEEDS = 40;

for (const flavor of ['native', 'pv'] as const) {
  test(`${flavor} qspinlock: mutual exclusion and completion on ${SEEDS} random seeds with IRQs and NMIs`, () => {
    let slowpaths = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const g = new Guest({ vcpus: 4, flavor, spinThreshold: seed % 2 === 0 ? 4 : 8, seed, workload: { iterations: 12 } });
      const r = g.run({ chooser: new RandomChooser(seed), inject: { nmis: 3, irqs: 6, irqVector: VECTOR.LOCK_IRQ } });
      assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${r.error?.message ?? ''}`);
      for (const l of g.checkLocks()) assert.ok(l.ok, `seed ${seed}: ${l.role} lock ${l.index}: counter ${l.counter} != acquisitions ${l.acquisitions}`);
      assert.equal(r.hazards.length, 0);
      slowpaths += g.stats.slowpaths;
    }
    assert.ok(slowpaths > SEEDS, 'the sweep exercised the slowpath');
  });
}

test('PV waiters halt and are kicked; native waiters never halt', () => {
  const pv = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 4, workload: { iterations: 20 } });
  pv.run({ chooser: new RandomChooser(5) });
  assert.ok(pv.host!.stats.kicks > 0);
  assert.ok(pv.haltsInKvmWait() > 0);
  const native = new Guest({ vcpus: 4, flavor: 'native', workload: { iterations: 20 } });
  native.run({ chooser: new RandomChooser(5) });
  assert.equal(native.host!.stats.kicks, 0);
  assert.equal(native.haltsInKvmWait(), 0);
});

for (const flavor of ['native', 'pv'] as const) {
  test(`${flavor} locks finish under host over-commit (4 vCPUs on 2 pCPUs, timed)`, () => {
    for (let seed = 1; seed <= 5; seed++) {
      const g = new Guest({ vcpus: 4, flavor, spinThreshold: 64, workload: { iterations: 15 } });
      const host = new HostScheduler({ pcpus: 2, sliceCycles: 2_000, switchCycles: 500, wakeCycles: 500 }, g.machine.vcpus, g.machine.memory, (c, p) => g.host!.setPreempted(c, p));
      const r = g.run({ chooser: new TimedChooser({ seed, host }), inject: { irqs: 4, nmis: 2, irqVector: VECTOR.LOCK_IRQ } });
      assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${r.error?.message ?? ''}`);
      for (const l of g.checkLocks()) assert.ok(l.ok, `seed ${seed}: lock ${l.index}`);
      assert.ok(host.stats.preemptions > 0, 'the host preempted vCPUs');
    }
  });
}
