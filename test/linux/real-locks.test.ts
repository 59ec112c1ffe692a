// The real Linux 6.1 lock code (Debian's cloud vmlinux) in pvpatch's machine: 4 vCPUs whose tasks,
// IRQ and NMI handlers call the kernel's own _raw_spin_lock/_irqsave. Each lock flavour the boot
// can choose keeps every counter exact; on an over-committed host PV waiters halt in the real
// kvm_wait and are woken by the real kvm_kick_cpu; a slowpath that returns without the lock is
// caught by the probes at the real functions' entries and returns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxGuest, type LinuxLockFlavor } from '../../src/linux/guest.ts';
import type { LinuxBootOptions } from '../../src/linux/kernel.ts';
import { MUTUAL_EXCLUSION } from '../../src/linux/lock-probes.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { HostScheduler } from '../../src/host/scheduler.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { hazardName } from '../../src/machine/events.ts';
import { boot, linuxKernel } from './fixture.ts';

const SEEDS = 3;
const FLAVORS: readonly [LinuxLockFlavor, LinuxBootOptions, string][] = [
  ['native', { platform: 'kvm-realtime' }, 'native_queued_spin_lock_slowpath'],
  ['pv', { platform: 'kvm' }, '__pv_queued_spin_lock_slowpath'],
  // kvm_spinlock_init keeps virt_spin_lock_key on only when the host lacks PV_UNHALT.
  ['virt-spin-lock', { platform: 'kvm', pvUnhalt: false }, 'native_queued_spin_lock_slowpath'],
];

for (const [flavor, options, slowpath] of FLAVORS) {
  test(`${flavor}: the real lock functions keep every counter exact under 4 vCPUs with IRQs and NMIs (${SEEDS} seeds)`, (t) => {
    const { kernel, reason } = linuxKernel();
    if (kernel === undefined) return t.skip(reason);
    const g0 = new LinuxGuest(boot(kernel, options), { vcpus: 4, spinThreshold: 4, workload: { iterations: 16 } });
    assert.equal(g0.flavor, flavor);
    let slowpaths = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const g = g0.fork();
      const r = g.run({ chooser: new RandomChooser(seed), inject: { irqs: 6, nmis: 3, irqVector: VECTOR.LOCK_IRQ } });
      assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${r.error?.message ?? ''} ${r.hazards.map(hazardName).join(', ')}`);
      for (const l of g.checkLocks()) assert.ok(l.ok, `seed ${seed}: ${l.role} lock ${l.index}: counter ${l.counter} != acquisitions ${l.acquisitions}`);
      const c = g.probes.counts;
      assert.equal(c._raw_spin_lock + c._raw_spin_lock_irqsave, c._raw_spin_unlock + c._raw_spin_unlock_irqrestore);
      assert.ok(c._raw_spin_lock_irqsave > 0, 'the _irqsave variants ran');
      assert.deepEqual(g.lostWakeups(), []);
      slowpaths += c[slowpath as keyof typeof c];
      const other = slowpath === 'native_queued_spin_lock_slowpath' ? c.__pv_queued_spin_lock_slowpath : c.native_queued_spin_lock_slowpath;
      assert.equal(other, 0, 'only the flavour the boot chose runs');
    }
    assert.ok(slowpaths > SEEDS, `${slowpath} ran (${slowpaths} times)`);
  });
}

test('pv on an over-committed host (4 vCPUs on 2 pCPUs, timed): waiters halt in the real kvm_wait and the real kvm_kick_cpu wakes them', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const g0 = new LinuxGuest(boot(kernel, { platform: 'kvm' }), { vcpus: 4, spinThreshold: 8, workload: { iterations: 30 } });
  let halts = 0, kicks = 0;
  for (let seed = 1; seed <= 3; seed++) {
    const g = g0.fork();
    const host = new HostScheduler({ pcpus: 2, sliceCycles: 2_000, switchCycles: 500, wakeCycles: 500 }, g.machine.vcpus, g.machine.memory, (c, p) => g.host!.setPreempted(c, p));
    const r = g.run({ chooser: new TimedChooser({ seed, host }), inject: { irqs: 4, nmis: 2, irqVector: VECTOR.LOCK_IRQ } });
    assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${r.error?.message ?? ''}`);
    for (const l of g.checkLocks()) assert.ok(l.ok, `seed ${seed}: lock ${l.index}`);
    assert.ok(host.stats.preemptions > 0, 'the host preempted vCPUs');
    assert.deepEqual(g.lostWakeups(), [], 'no vCPU left halted in kvm_wait');
    assert.equal(g.probes.kicks, g.host!.stats.kicks, 'every kvm_kick_cpu reached the host as KVM_HC_KICK_CPU');
    halts += g.probes.halts;
    kicks += g.probes.kicks;
  }
  assert.ok(halts > 0 && kicks > 0, `halts ${halts}, kicks ${kicks}`);
});

test('a native slowpath that returns without taking the lock is caught at the real _raw_spin_lock return', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const g = new LinuxGuest(boot(kernel, { platform: 'kvm-realtime' }), { vcpus: 4, workload: { iterations: 16 } });
  // The first byte of native_queued_spin_lock_slowpath becomes RET: a contended locker returns at once.
  g.machine.memory.writeBytes(kernel.image.symbols.addressOf('native_queued_spin_lock_slowpath')!, [0xc3]);
  const r = g.run({ chooser: new RandomChooser(1) });
  assert.equal(r.reason, 'hazard');
  assert.equal(hazardName(r.hazards[0]!), MUTUAL_EXCLUSION);
  assert.match((r.hazards[0] as { message: string }).message, /acquires lock 0x[0-9a-f]+, which vCPU \d holds/);
});

test('the real kvm_wait returns at once in NMI context: NMI waiters reach it and never halt; without nmi_enter()\'s count they do', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const pv = boot(kernel, { platform: 'kvm' });
  const nmis = { nmis: 60, irqs: 0 };
  const g = new LinuxGuest(pv, { vcpus: 4, spinThreshold: 1, workload: { iterations: 20, handlerLoops: 60 } });
  const r = g.run({ chooser: new RandomChooser(1), inject: nmis });
  assert.equal(r.reason, 'until');
  assert.ok(g.checkLocks().every((l) => l.ok));
  assert.ok(g.probes.waitsInNmi > 0, 'NMI waiters reached kvm_wait');
  assert.equal(g.probes.haltsInNmi, 0);
  const control = new LinuxGuest(pv, { vcpus: 4, spinThreshold: 1, workload: { iterations: 20, handlerLoops: 60, nmiEnter: false } });
  control.run({ chooser: new RandomChooser(1), inject: nmis });
  assert.equal(control.probes.waitsInNmi, 0, 'in_nmi() is false without nmi_enter');
  assert.ok(control.probes.haltsInNmi > 0, 'and NMI waiters halt inside the NMI handler');
});

test('determinism: the same boot, seed and strategy give the same run, decision for decision', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const g0 = new LinuxGuest(boot(kernel, { platform: 'kvm' }), { vcpus: 4, spinThreshold: 4, workload: { iterations: 10 } });
  const once = () => {
    const g = g0.fork();
    const r = g.run({ chooser: new RandomChooser(9), inject: { irqs: 4, nmis: 2, irqVector: VECTOR.LOCK_IRQ, preemptions: 4 } });
    return { steps: r.steps, decisions: [...g.machine.decisions], counts: g.probes.counts, halts: g.probes.halts };
  };
  assert.deepEqual(once(), once());
});
