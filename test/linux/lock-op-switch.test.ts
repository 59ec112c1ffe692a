// Switching the real kernel's lock ops between native and PV with every vCPU stopped outside
// lock code (the stop-the-world model; the protocols are not wired to this guest yet): the plan
// writes exactly what the target flavour's boot writes at the real lock-op sites and changes four
// ops, not five; a native → PV switch that does not allocate the PV hash first faults in the real
// pv_hash (the NULL pv_lock_hash of a native boot), and with the hash every lock stays exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxGuest } from '../../src/linux/guest.ts';
import { lockOpSwitchPlan, stopMachineSwitch, textDiffersFromBoot } from '../../src/linux/lock-op-switch.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { boot, linuxKernel } from './fixture.ts';
import { Opcode, textPokeLocInit } from '../../src/kernel/text-poke-loc.ts';
import { hexAddress } from '../../src/x86/format.ts';
import { TextPokeError } from '../../src/kernel/text-poke-errors.ts';

const SEEDS = 10;
const WORKLOAD = { iterations: 40, thinkLoops: 150 };
const LOAD = { irqs: 4, nmis: 2, irqVector: VECTOR.LOCK_IRQ, preemptions: 20 };

test('the native → PV plan: the PV boot\'s bytes at every lock-op site that differs, four ops (vcpu_is_preempted stays KVM\'s)', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const plan = lockOpSwitchPlan(nat, pv);
  assert.equal(plan.from, 'native');
  assert.equal(plan.to, 'pv');
  assert.deepEqual([...new Set(plan.sites.map((s) => s.slot))].sort(), ['lock.kick', 'lock.queued_spin_lock_slowpath', 'lock.queued_spin_unlock', 'lock.wait']);
  assert.deepEqual(plan.slots.map((s) => s.slot), ['lock.queued_spin_lock_slowpath', 'lock.queued_spin_unlock', 'lock.wait', 'lock.kick']);
  for (const s of plan.sites) assert.deepEqual([...s.to], [...pv.result.text.read(s.address, s.to.length)!]);
  const unlock = plan.sites.find((s) => s.slot === 'lock.queued_spin_unlock')!;
  assert.deepEqual([...unlock.from], [0xc6, 0x07, 0x00, 0x0f, 0x1f, 0x00], 'native unlock: movb $0,(%rdi) + 3-byte NOP, a 6-byte site');
  assert.equal(unlock.to[0], 0xe8, 'PV unlock: a direct CALL');
  assert.equal(lockOpSwitchPlan(pv, nat).sites.length, plan.sites.length, 'the way back writes the same sites');
});

let booted: LinuxGuest | undefined;

function switchedRun(prepare: boolean, seed: number) {
  const { kernel } = linuxKernel();
  const nat = boot(kernel!, { platform: 'kvm-realtime' });
  const plan = lockOpSwitchPlan(nat, boot(kernel!, { platform: 'kvm' }));
  booted ??= new LinuxGuest(nat, { vcpus: 4, spinThreshold: 4, workload: WORKLOAD });
  const g = booted.fork();
  const chooser = new RandomChooser(seed);
  const first = g.run({ chooser, until: (m) => m.step >= 1500 && g.quiescent() });
  assert.equal(first.reason, 'until');
  assert.ok(!g.tasksDone, 'the switch happens under load');
  stopMachineSwitch(g, plan, { prepare });
  return { g, plan, r: g.run({ chooser, inject: LOAD }) };
}

test(`native → PV without the PV hash faults in the real pv_hash; with it every lock stays exact (${SEEDS} seeds)`, (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const pvHash = kernel.image.symbols.addressOf('pv_hash')!;
  const pvBoot = boot(kernel, { platform: 'kvm' });
  let faults = 0, hashed = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const bare = switchedRun(false, seed);
    if (bare.r.reason === 'error') {
      faults++;
      assert.match(bare.r.error!.message, /read of unmapped address/);
      const rip = bare.g.machine.vcpus.map((c) => c.rip).find((a) => a >= pvHash && a < pvHash + 0x100);
      assert.ok(rip !== undefined, `seed ${seed}: the fault is in pv_hash`);
    } else assert.equal(bare.g.probes.counts.pv_hash, 0, `seed ${seed}: a run that never hashed a lock does not fault`);
    const { g, plan, r } = switchedRun(true, seed);
    assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${r.error?.message ?? ''}`);
    for (const l of g.checkLocks()) assert.ok(l.ok, `seed ${seed}: ${l.role} lock ${l.index}`);
    assert.deepEqual(g.lostWakeups(), []);
    assert.equal(g.flavor, 'pv');
    hashed += g.probes.counts.pv_hash;
    for (const s of plan.sites) assert.deepEqual([...g.machine.memory.readBytes(s.address, s.to.length)], [...pvBoot.result.text.read(s.address, s.to.length)!]);
  }
  assert.ok(faults > 0, 'some seed hashed a halting waiter\'s lock');
  assert.ok(hashed > 0);
});

test('text_poke_bp cannot switch the real lock-op sites: a PV site is two instructions (CALL + NOP), a native unlock one it cannot emulate', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const toPv = lockOpSwitchPlan(nat, pv);
  for (const s of toPv.sites) {
    assert.throws(() => textPokeLocInit({ address: s.address, bytes: s.to }), (e: unknown) => e instanceof TextPokeError && /one instruction per site/.test(e.message), `${s.slot} at ${s.address.toString(16)}`);
  }
  const unlock = lockOpSwitchPlan(pv, nat).sites.find((s) => s.slot === 'lock.queued_spin_unlock')!;
  const loc = textPokeLocInit({ address: unlock.address, bytes: unlock.to });
  assert.ok(![Opcode.CALL, Opcode.JMP32, Opcode.JMP8, Opcode.RET, Opcode.INT3].includes(loc.opcode), 'movb $0,(%rdi): poke_int3_handler would BUG on it');
});

test('textDiffersFromBoot: a native guest differs from a PV boot at a lock-op site; after the switch, and after the way back, none differs; a byte off is named', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const nat = boot(kernel, { platform: 'kvm-realtime' }), pv = boot(kernel, { platform: 'kvm' });
  const there = lockOpSwitchPlan(nat, pv), back = lockOpSwitchPlan(pv, nat);
  const g = new LinuxGuest(nat, { vcpus: 2, workload: WORKLOAD });
  assert.match(textDiffersFromBoot(g, there) ?? '', /^lock\.\S+ site 0x[0-9a-f]+ holds .*, a pv boot /);
  stopMachineSwitch(g, there);
  assert.equal(textDiffersFromBoot(g, there), undefined);
  stopMachineSwitch(g, back);
  assert.equal(textDiffersFromBoot(g, back), undefined);
  const site = back.sites[back.sites.length - 1]!;
  g.machine.memory.writeBytes(site.address + 2, [site.to[2]! ^ 0xff]);
  assert.match(textDiffersFromBoot(g, back) ?? '', new RegExp(`site ${hexAddress(site.address)} holds`));
  g.machine.memory.writeBytes(site.address + 2, [site.to[2]!]);
  g.machine.memory.writeU64(back.slots[0]!.address, 0);
  assert.match(textDiffersFromBoot(g, back) ?? '', /^pv_ops lock\.\S+ is 0x0, a native boot's/);
});
