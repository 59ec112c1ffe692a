// v2 (site-local INT3 barrier, global barrier at lockop_checkpoint(), counted slowpaths, one
// cmpxchg as the switch) switching the real Linux 6.1 lock-op sites in the middle of the load:
// 4 vCPUs keep calling the kernel's own _raw_spin_lock / _irqsave (tasks, IRQs, NMIs) while the
// patcher pokes the 77 real .parainstructions sites. With the PV hash allocated first every lock
// stays exact, the atomic-switch oracle (driven by probes on the real slowpaths, unlock and kick
// sites) sees no mix, and the text ends byte-identical to a fresh boot of the final flavour;
// without it the first PV waiter that hashes its lock faults in the real pv_hash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxGuest } from '../../src/linux/guest.ts';
import { lockOpSwitchPlan } from '../../src/linux/lock-op-switch.ts';
import { switchLinuxLockOpsV2 } from '../../src/linux/v2-switch.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { hazardName } from '../../src/machine/events.ts';
import type { LinuxBoot } from '../../src/linux/kernel.ts';
import { boot, linuxKernel } from './fixture.ts';

const SEEDS = 30;
const LOAD = { irqs: 6, nmis: 4, irqVector: VECTOR.LOCK_IRQ };

let booted: LinuxGuest | undefined;
function nativeGuest(nat: LinuxBoot): LinuxGuest {
  booted ??= new LinuxGuest(nat, { vcpus: 4, spinThreshold: 4, lockopCheckpoint: true, workload: { iterations: 30, thinkLoops: 60 } });
  return booted.fork();
}

function assertTextOf(g: LinuxGuest, b: LinuxBoot, sites: readonly { address: number; to: Uint8Array }[], what: string): void {
  for (const s of sites) assert.deepEqual([...g.machine.memory.readBytes(s.address, s.to.length)], [...b.result.text.read(s.address, s.to.length)!], `${what}: site ${s.address.toString(16)}`);
}

test(`v2 switches the real kernel native → PV under load (${SEEDS} seeds): locks exact, no mix, text as a PV boot's; without the PV hash: a fault in pv_hash`, (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const plan = lockOpSwitchPlan(nat, pv);
  const pvHash = kernel.image.symbols.addressOf('pv_hash')!;
  let counted = 0, faults = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const g = nativeGuest(nat);
    const r = switchLinuxLockOpsV2(g, [plan], { atStep: 2000, run: { chooser: new RandomChooser(seed), inject: LOAD } });
    assert.ok(r.ok, `seed ${seed}: ${r.run.reason} ${r.run.error?.message ?? ''} ${r.run.hazards[0] ? hazardName(r.run.hazards[0]) : ''} ${r.locks.map((l) => `${l.counter}/${l.acquisitions}`).join(' ')}`);
    assert.equal(g.flavor, 'pv');
    assert.ok(g.probes.counts.native_queued_spin_lock_slowpath > 0 && g.probes.counts.__pv_queued_spin_lock_slowpath > 0, `seed ${seed}: both flavours ran (the switch landed under load)`);
    assert.ok(r.stats.int3Hits > 0, `seed ${seed}: vCPUs met the INT3s`);
    assertTextOf(g, pv, plan.sites, `seed ${seed}`);
    counted += r.stats.counted;
    if (seed > 4) continue;
    const bare = switchLinuxLockOpsV2(nativeGuest(nat), [plan], { atStep: 2000, prepare: false, run: { chooser: new RandomChooser(seed), inject: LOAD } });
    if (bare.run.reason === 'error') {
      faults++;
      assert.equal(bare.switches[0]?.ok, true, 'the switch itself went through');
      assert.match(bare.run.error!.message, /read of unmapped address/);
      const rip = Number(BigInt.asIntN(64, BigInt(/at (0x[0-9a-f]+)/.exec(bare.run.error!.message)![1]!)));
      assert.ok(rip >= pvHash && rip < pvHash + 0x100, `seed ${seed}: the fault is in pv_hash`);
    }
  }
  assert.ok(counted > 0, 'the handler counted slowpaths that ran across the barrier');
  assert.ok(faults > 0, 'without the preparation the switch is caught');
});

test('v2 switches native → PV → native: locks exact, text byte-identical to a native boot', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const there = lockOpSwitchPlan(nat, pv), back = lockOpSwitchPlan(pv, nat);
  for (const seed of [3, 4]) {
    const g = nativeGuest(nat);
    const r = switchLinuxLockOpsV2(g, [there, back], { atStep: 2000, run: { chooser: new RandomChooser(seed), inject: LOAD } });
    assert.ok(r.ok, `seed ${seed}: ${r.run.reason} ${r.run.error?.message ?? ''} ${r.run.hazards[0] ? hazardName(r.run.hazards[0]) : ''}`);
    assert.deepEqual(r.switches.map((s) => `${s.from}->${s.to} ${s.reason}`), ['native->pv switched', 'pv->native switched']);
    assert.equal(g.flavor, 'native');
    assertTextOf(g, nat, back.sites, `seed ${seed}, after the round trip`);
  }
});
