// v1 (stop_machine, RFC patches 15–19) switching the real Linux 6.1 lock-op sites in the middle of
// the load: 4 vCPUs keep locking (tasks, IRQs, NMIs, host preemptions) until stop_machine stops
// them at preemptible points; every site goes through INT3, tail, first byte. With the PV hash
// allocated first every lock stays exact and the text ends byte-identical to a fresh boot of the
// final flavour; without it the first PV waiter that hashes its lock faults in the real pv_hash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxGuest } from '../../src/linux/guest.ts';
import { lockOpSwitchPlan } from '../../src/linux/lock-op-switch.ts';
import { switchLinuxLockOpsV1 } from '../../src/linux/v1-switch.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import type { LinuxBoot } from '../../src/linux/kernel.ts';
import { boot, linuxKernel } from './fixture.ts';

const SEEDS = 2;
const LOAD = { irqs: 6, nmis: 4, irqVector: VECTOR.LOCK_IRQ, preemptions: 10 };

let booted: LinuxGuest | undefined;
function nativeGuest(nat: LinuxBoot): LinuxGuest {
  booted ??= new LinuxGuest(nat, { vcpus: 4, spinThreshold: 4, workload: { iterations: 30 } });
  return booted.fork();
}

function assertTextOf(g: LinuxGuest, b: LinuxBoot, sites: readonly { address: number; to: Uint8Array }[], what: string): void {
  for (const s of sites) assert.deepEqual([...g.machine.memory.readBytes(s.address, s.to.length)], [...b.result.text.read(s.address, s.to.length)!], `${what}: site ${s.address.toString(16)}`);
}

test(`v1 switches the real kernel native → PV under load (${SEEDS} seeds): locks exact, text as a PV boot's; without the PV hash: a fault in pv_hash`, (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const plan = lockOpSwitchPlan(nat, pv);
  const pvHash = kernel.image.symbols.addressOf('pv_hash')!;
  let deferred = 0, faults = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const g = nativeGuest(nat);
    const r = switchLinuxLockOpsV1(g, [plan], { atStep: 2000, run: { chooser: new RandomChooser(seed), inject: LOAD } });
    assert.ok(r.ok, `seed ${seed}: ${r.run.reason} ${r.run.error?.message ?? ''} ${r.locks.map((l) => `${l.counter}/${l.acquisitions}`).join(' ')}`);
    assert.equal(g.flavor, 'pv');
    assert.ok(g.probes.counts.native_queued_spin_lock_slowpath > 0 && g.probes.counts.__pv_queued_spin_lock_slowpath > 0, 'both flavours ran: the switch landed under load');
    assertTextOf(g, pv, plan.sites, `seed ${seed}`);
    deferred += r.stats.deferred;

    const bare = switchLinuxLockOpsV1(nativeGuest(nat), [plan], { atStep: 2000, prepare: false, run: { chooser: new RandomChooser(seed), inject: LOAD } });
    if (bare.run.reason === 'error') {
      faults++;
      assert.ok(bare.switched);
      assert.match(bare.run.error!.message, /read of unmapped address/);
      const m = /at (0x[0-9a-f]+)/.exec(bare.run.error!.message)!;
      const rip = Number(BigInt.asIntN(64, BigInt(m[1]!)));
      assert.ok(rip >= pvHash && rip < pvHash + 0x100, `seed ${seed}: the fault is in pv_hash (${m[1]})`);
    }
  }
  assert.ok(deferred > 0, 'stop_machine found vCPUs inside lock code and waited for a preemptible point');
  assert.ok(faults > 0, 'without the preparation the switch is caught');
});

test('v1 switches native → PV → native (two stop_machines): locks exact, text byte-identical to a native boot', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const there = lockOpSwitchPlan(nat, pv), back = lockOpSwitchPlan(pv, nat);
  const g = nativeGuest(nat);
  const r = switchLinuxLockOpsV1(g, [there, back], { atStep: 2000, run: { chooser: new RandomChooser(4), inject: LOAD } });
  assert.ok(r.ok, `${r.run.reason} ${r.run.error?.message ?? ''}`);
  assert.equal(r.stats.done, 2);
  assert.equal(g.flavor, 'native');
  assertTextOf(g, nat, back.sites, 'after the round trip');
});
