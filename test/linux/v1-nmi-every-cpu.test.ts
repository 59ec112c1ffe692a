// A finding about v1 as designed (seeds 000 and 001), reproduced on the real Linux 6.1 code: with
// NMIs on every vCPU whose handlers share one spinlock, stop_machine can stall for ever, with no
// broken step. A stopped secondary's NMI takes the NMI lock and meets the INT3 at its unlock site;
// its #BP handler acknowledges states until the site's first byte is final, which needs the
// primary; the primary waits for every secondary's acknowledgement; the other stopped secondaries'
// NMIs spin in the real slowpath for the NMI lock and never acknowledge (only the stop loop and the
// #BP handler do). The RFC's cover letter names it ("patching can potentially deadlock in case of
// multiple NMIs", seed 000) and the talk leaves it open ("if you have multiple NMIs that
// complicates matters somewhat", seed 001). Linux has such handlers: default_do_nmi() spins on
// raw_spin_trylock(&nmi_reason_lock) on any CPU for an NMI no handler claimed
// (arch/x86/kernel/nmi.c), and its raw_spin_unlock is a lock.queued_spin_unlock site.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxGuest } from '../../src/linux/guest.ts';
import { lockOpSwitchPlan } from '../../src/linux/lock-op-switch.ts';
import { switchLinuxLockOpsV1 } from '../../src/linux/v1-switch.ts';
import { lockAddress } from '../../src/linux/layout.ts';
import { NmiInInt3Chooser } from '../../src/patching/nmi-adversary.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { boot, linuxKernel } from './fixture.ts';
import { StopWindowNmiChooser } from './stop-window-nmi.ts';

const MAX_SEEDS = 6;

test('v1 as designed stalls on the real kernel when stopped vCPUs\' NMIs share a lock: one NMI holds it at an unlock INT3, the others spin for it and never acknowledge', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const plan = lockOpSwitchPlan(nat, pv);
  const sym = (name: string) => kernel.image.symbols.addressOf(name)!;
  const unlock = sym('_raw_spin_unlock');
  const site = plan.sites.find((x) => x.slot === 'lock.queued_spin_unlock' && x.address >= unlock && x.address < unlock + 0x40)!.address;
  const base = new LinuxGuest(nat, { vcpus: 4, spinThreshold: 4, workload: { iterations: 30 } });
  const nmiLock = lockAddress(base.image.nmiLock);
  // Where a waiter for the NMI lock can be: the real _raw_spin_lock and either real slowpath.
  const spinning = ['_raw_spin_lock', 'native_queued_spin_lock_slowpath', '__pv_queued_spin_lock_slowpath'].map(sym);
  let first: number | undefined;
  for (let seed = 1; seed <= MAX_SEEDS && first === undefined; seed++) {
    const g = base.fork();
    // The same adversary as the nmi-iret / int3-retry controls (broken-variants.test.ts), with NMIs
    // on every vCPU instead of vCPU 1 alone.
    const window = new StopWindowNmiChooser(new RandomChooser(seed), () => g.machine.memory.readBytes(site, 1)[0] === 0xcc);
    const chooser = new NmiInInt3Chooser(window, 6, 'poke_int3_native');
    const r = switchLinuxLockOpsV1(g, [plan], { atStep: 2000, run: { chooser, inject: { irqs: 6, nmis: 12, irqVector: VECTOR.LOCK_IRQ, preemptions: 10 }, maxInstructions: 200_000 } });
    if (r.ok) continue;
    first = seed;
    assert.equal(r.run.reason, 'limit', `seed ${seed}: ${r.run.reason} ${r.run.error?.message ?? ''}`);
    assert.ok(!r.switched && r.run.hazards.length === 0, 'no hazard: a stall, not a broken step');
    const cpus = g.machine.vcpus;
    const frames = (id: number) => cpus[id]!.serviceFrames.map((f) => f.name).join(' > ');
    assert.equal(frames(0), 'text_poke_late', 'the primary waits in stop_machine for acknowledgements');
    const holder = cpus.filter((c) => frames(c.id) === 'multi_cpu_stop > poke_int3_native');
    assert.equal(holder.length, 1, 'one stopped secondary is in the #BP handler');
    const h = holder[0]!;
    assert.ok(h.nmiBlocked && g.probes.pending[h.id]!.some((p) => p[1] === nmiLock && p[2] === 0), 'in NMI context, inside _raw_spin_unlock of the NMI lock');
    assert.notEqual(g.machine.memory.readBytes(nmiLock, 1)[0], 0, 'the NMI lock is still taken');
    const waiters = cpus.filter((c) => c.id !== 0 && c !== h && c.nmiBlocked && g.probes.pending[c.id]!.some((p) => p[1] === nmiLock && p[2] === 1));
    assert.ok(waiters.length > 0, 'other stopped secondaries\' NMIs wait for the NMI lock');
    for (const w of waiters) assert.ok(spinning.some((a) => w.rip >= a && w.rip < a + 0x400), `vCPU ${w.id} spins in the real lock code`);
    // A stall, not a slow run: 100,000 more instructions move nobody out of it.
    const before = cpus.map((c) => frames(c.id));
    const more = g.run({ chooser, maxInstructions: 100_000 });
    assert.equal(more.reason, 'limit');
    assert.deepEqual(cpus.map((c) => frames(c.id)), before);
    assert.notEqual(g.machine.memory.readBytes(nmiLock, 1)[0], 0);
  }
  assert.ok(first !== undefined, `v1 stalled within seeds 1..${MAX_SEEDS}`);
  t.diagnostic(`first stalling seed: ${first}`);
});
