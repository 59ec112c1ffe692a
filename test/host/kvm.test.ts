// The host as the guest sees it: vcpu_is_preempted through steal time, the KVM hypercall fix-up
// (seed 003), and CPUID hints changing at runtime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { HostScheduler } from '../../src/host/scheduler.ts';
import { Reg, Flag } from '../../src/x86/registers.ts';
import { percpuBase, PERCPU, VECTOR } from '../../src/kernel/layout.ts';
import { KVM_CPUID_FEATURES, STEAL_TIME_PREEMPTED_OFFSET } from '../../src/host/kvm-abi.ts';
import { WRITER_HOST } from '../../src/machine/memory.ts';

/** vCPU 0 calls vcpu_is_preempted(target) and halts; returns EAX. */
function askPreempted(g: Guest, target: number): bigint {
  const m = g.machine;
  const c = m.vcpu(0);
  for (const o of m.vcpus) { o.halted = o.id !== 0; o.flags &= ~Flag.IF; }
  c.halted = false;
  c.rip = g.symbol('vcpu_is_preempted');
  c.setReg64(Reg.RDI, BigInt(target));
  const rsp = c.getAddr(Reg.RSP) - 8;
  c.setAddr(Reg.RSP, rsp);
  m.memory.writeBytes(rsp, Array.from({ length: 8 }, (_, i) => Number((BigInt.asUintN(64, BigInt(g.symbol('halt_forever'))) >> BigInt(8 * i)) & 0xffn)));
  const r = m.run({ maxInstructions: 100 });
  assert.equal(r.reason, 'all-halted', r.error?.message);
  return c.getReg64(Reg.RAX);
}

test('a guest with native lock ops on KVM keeps KVM\'s vcpu_is_preempted (kvm_guest_init: steal time) and sees a descheduled vCPU; on bare metal it is always false', () => {
  for (const o of [{ flavor: 'native' as const }, { host: { realtime: true } }]) {
    const g = new Guest({ vcpus: 2, ...o });
    assert.equal(g.flavor, 'native');
    g.host!.setPreempted(1, true);
    assert.equal(askPreempted(g, 1), 1n);
    g.host!.setPreempted(1, false);
    assert.equal(askPreempted(g, 1), 0n);
  }
  assert.equal(askPreempted(new Guest({ vcpus: 2, platform: 'bare-metal' }), 1), 0n);
});

test('a PV guest sees vcpu_is_preempted() true exactly while the host has descheduled that vCPU', () => {
  const g = new Guest({ vcpus: 2, flavor: 'pv' });
  g.host!.setPreempted(1, true);
  assert.equal(askPreempted(g, 1), 1n);
  g.host!.setPreempted(1, false);
  assert.equal(askPreempted(g, 1), 0n);
});

test('the host scheduler sets steal time preempted while a vCPU waits for a physical CPU', () => {
  const g = new Guest({ vcpus: 3, flavor: 'pv', workload: { iterations: 10 } });
  const host = new HostScheduler({ pcpus: 1, sliceCycles: 1_000, switchCycles: 100, wakeCycles: 100 }, g.machine.vcpus, g.machine.memory, (c, p) => g.host!.setPreempted(c, p));
  const seen = new Set<string>();
  g.run({
    chooser: new TimedChooser({ seed: 1, host }),
    until: (m) => {
      for (const c of m.vcpus) {
        const byte = m.memory.readBytes(percpuBase(c.id) + PERCPU.stealTime + STEAL_TIME_PREEMPTED_OFFSET, 1)[0];
        seen.add(`${c.preempted && !c.halted}:${byte}`);
      }
      return false;
    },
  });
  assert.ok(g.tasksDone);
  assert.ok(seen.has('true:1'), 'descheduled vCPUs carry preempted = 1');
  assert.ok(!seen.has('false:1'), 'running vCPUs never do');
  assert.ok(host.stats.preemptions > 0);
});

test('a guest built with vmcall runs on an AMD host: KVM rewrites the hypercall, the guest runs on', () => {
  const g = new Guest({ vcpus: 4, flavor: 'pv', host: { vendor: 'amd' }, hypercall: 'vmcall', spinThreshold: 2, stopOnHazard: false, workload: { iterations: 20 } });
  const r = g.run({ chooser: new RandomChooser(2) });
  assert.equal(r.reason, 'until', r.error?.message);
  assert.ok(g.host!.stats.fixups >= 1);
  assert.ok(g.host!.stats.kicks > 0, 'kicks work after the fix-up');
  for (const l of g.checkLocks()) assert.ok(l.ok);
  const at = g.symbol('kvm_kick_cpu');
  const vm = Array.from(g.machine.memory.readBytes(at, 32));
  assert.ok(vm.join(',').includes([0x0f, 0x01, 0xd9].join(',')), 'the guest text now holds vmmcall');
});

test('the unsynchronized hypercall rewrite is a hazard for a vCPU that runs that code next', () => {
  let found = 0;
  for (let seed = 1; seed <= 20 && found === 0; seed++) {
    const g = new Guest({ vcpus: 4, flavor: 'pv', host: { vendor: 'amd' }, hypercall: 'vmcall', spinThreshold: 2, workload: { iterations: 20 } });
    const r = g.run({ chooser: new RandomChooser(seed) });
    const h = r.hazards.find((x) => x.kind === 'cmc-unsynchronized');
    if (h && h.kind === 'cmc-unsynchronized') {
      assert.ok(h.unsynchronized.every((b) => b.writer === WRITER_HOST));
      found++;
    }
  }
  assert.ok(found > 0, 'some seed has a second vCPU run the rewritten hypercall before serializing');
});

test('the host can revoke KVM_HINTS_REALTIME at runtime; CPUID and an interrupt tell the guest', () => {
  const g = new Guest({ vcpus: 2, host: { realtime: true } });
  assert.equal(g.flavor, 'native');
  assert.equal(g.host!.cpuid(g.machine.vcpu(0), KVM_CPUID_FEATURES)![3] & 1, 1);
  g.host!.setRealtimeHint(false);
  assert.equal(g.host!.cpuid(g.machine.vcpu(0), KVM_CPUID_FEATURES)![3] & 1, 0);
  g.run({ chooser: new RandomChooser(1) });
  assert.equal(g.machine.events.filter((e) => e.type === 'interrupt' && e.vector === VECTOR.HINT).length, 2);
});

test('a kick that arrives before the waiter halts is not lost (KVM pv_unhalted)', async () => {
  const { Machine } = await import('../../src/machine/machine.ts');
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.writeBytes(0x1000, [0x90, 0xf4, 0x90, 0xf4]); // nop; hlt; nop; hlt
  m.vcpu(0).rip = 0x1000;
  m.kick(0); // the vCPU is running: the kick is remembered
  m.run();
  assert.equal(m.vcpu(0).rip, 0x1004, 'the first HLT fell through, the second blocked');
  assert.ok(m.vcpu(0).halted);
});
