// Linux 6.1 switches four ops, not five: kvm_spinlock_init() sets queued_spin_lock_slowpath,
// queued_spin_unlock, wait and kick; vcpu_is_preempted is kvm_guest_init()'s (steal time) and stays
// KVM's on a native (REALTIME) boot too. A hint-triggered switch must leave its sites alone: their
// bytes are still the boot loader's after the switch, while every site of the four ops was written
// by the patcher.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readScenarioDoc, validateScenario } from '../../src/cli/scenario/load.ts';
import { guestScenarioSchema, type GuestScenario } from '../../src/cli/scenario/guest-schema.ts';
import { bootGuest } from '../../src/cli/commands/run-guest.ts';
import { installHintSwitch, runHintSwitch } from '../../src/patching/hint-switch.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { LOCK_FLAVOR_OPS, PV_OP_NAMES, PvOp, patchBytes } from '../../src/kernel/pv-ops.ts';
import { PAGE_SIZE, WRITER_LOADER } from '../../src/machine/memory.ts';
import type { Guest } from '../../src/kernel/guest.ts';

const FILE = join(import.meta.dirname, '..', '..', 'scenarios', 'default.yaml');
const SCENARIO = validateScenario<GuestScenario>(FILE, readScenarioDoc(FILE), guestScenarioSchema);

function writers(g: Guest, address: number, len: number): number[] {
  const out: number[] = [];
  for (let a = address; a < address + len; a++) out.push(g.machine.memory.page(a)!.writer![((a % PAGE_SIZE) + PAGE_SIZE) % PAGE_SIZE]!);
  return out;
}

test('the four lock ops kvm_spinlock_init sets, and not vcpu_is_preempted', () => {
  assert.deepEqual(LOCK_FLAVOR_OPS.map((op) => PV_OP_NAMES[op]), ['queued_spin_lock_slowpath', 'queued_spin_unlock', 'wait', 'kick']);
});

for (const protocol of ['v2', 'v1'] as const) {
  test(`${protocol}: the hint switch native -> pv rewrites the sites of four ops; vcpu_is_preempted's keep the boot bytes, unwritten`, () => {
    const boot = bootGuest(SCENARIO, 1);
    assert.equal(boot.flavor, 'native');
    const preempted = boot.image.sites.filter((s) => s.type === PvOp.VcpuIsPreempted);
    assert.ok(preempted.length > 0);
    const sw = installHintSwitch(boot, protocol, { patcherCpu: 0 });
    for (let seed = 1; seed <= 3; seed++) {
      const g = boot.fork({ seed });
      const r = runHintSwitch(g, g.counterpart(sw), { atStep: SCENARIO.switch!.atStep, hint: 'revoke' }, { chooser: new RandomChooser(seed), inject: { nmis: 3, irqs: 8, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 5_000_000 });
      assert.equal(r.reason, 'ok', `seed ${seed}: ${r.detail ?? ''}`);
      assert.equal(r.flavor, 'pv');
      for (const s of g.image.sites) {
        const w = writers(g, s.address, s.len);
        const want = patchBytes(s, 'pv', g.image.targets);
        assert.deepEqual(Array.from(g.machine.memory.readBytes(s.address, s.len)), Array.from(want), `seed ${seed}: ${PV_OP_NAMES[s.type]} site holds the pv bytes`);
        if (s.type === PvOp.VcpuIsPreempted) assert.ok(w.every((x) => x === WRITER_LOADER), `seed ${seed}: vcpu_is_preempted site untouched`);
        else assert.ok(w[0] !== WRITER_LOADER, `seed ${seed}: ${PV_OP_NAMES[s.type]} site rewritten by the switch`);
      }
    }
  });
}
