// What the real-kernel guest's memory holds once "boot" is done, against what Linux 6.1 sets:
// per-CPU areas, the PV hash only on a PV boot, the speed knob's two immediates, and no address of
// pvpatch's own inside the real kernel's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxGuest } from '../../src/linux/guest.ts';
import { PREEMPT_ENABLED, pvHashSize } from '../../src/linux/memory-map.ts';
import { perCpuOffset, WORKLOAD_TEXT, WORKLOAD_DATA, STACKS, PERCPU_CHUNK, PV_HASH_AT } from '../../src/linux/layout.ts';
import { spinThresholdImmediates } from '../../src/linux/spin-threshold.ts';
import { SERVICE_BASE, SERVICE_SIZE, DATA_BASE, DATA_SIZE, PERCPU_BASE, PERCPU_SIZE, STACK_BASE, STACK_SIZE, GUEST_MAX_VCPUS } from '../../src/kernel/layout.ts';
import { boot, linuxKernel } from './fixture.ts';

test('setup_per_cpu_areas as Linux leaves it: __per_cpu_offset, this_cpu_off, cpu_number, x86_cpu_to_apicid, __preempt_count', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const g = new LinuxGuest(boot(kernel, { platform: 'kvm' }), { vcpus: 3 });
  const mem = g.machine.memory;
  const sym = (n: string) => kernel.image.symbols.addressOf(n)!;
  for (let cpu = 0; cpu < 3; cpu++) {
    const base = mem.readU64(sym('__per_cpu_offset') + 8 * cpu);
    assert.equal(base, perCpuOffset(cpu));
    assert.equal(g.machine.vcpu(cpu).gsBase, base, 'GS base is the CPU\'s per-CPU offset');
    assert.equal(mem.readU64(base + sym('this_cpu_off')), base);
    assert.deepEqual([...mem.readBytes(base + sym('cpu_number'), 4)], [cpu, 0, 0, 0]);
    assert.deepEqual([...mem.readBytes(base + sym('x86_cpu_to_apicid'), 2)], [cpu, 0]);
    assert.equal(new DataView(mem.readBytes(base + sym('__preempt_count'), 4).buffer).getUint32(0, true), PREEMPT_ENABLED);
  }
  assert.equal(g.host!.stealTime[2], perCpuOffset(2) + sym('steal_time'), 'the host writes preempted into the real per-CPU steal_time');
});

test('the PV hash exists only after a PV boot (__pv_init_lock_hash is __init, called by kvm_spinlock_init on the PV path)', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const sym = (n: string) => kernel.image.symbols.addressOf(n)!;
  const pv = new LinuxGuest(boot(kernel, { platform: 'kvm' }), { vcpus: 4 });
  assert.equal(pv.machine.memory.readU64(sym('pv_lock_hash')), PV_HASH_AT);
  assert.deepEqual([...pv.machine.memory.readBytes(sym('pv_lock_hash_bits'), 4)], [8, 0, 0, 0], 'PV_HE_MIN = 256 entries for 4 CPUs');
  for (const b of [{ platform: 'kvm-realtime' }, { platform: 'bare-metal' }, { platform: 'kvm', pvUnhalt: false }] as const) {
    const g = new LinuxGuest(boot(kernel, b), { vcpus: 4 });
    assert.equal(g.machine.memory.readU64(sym('pv_lock_hash')), 0, `${JSON.stringify(b)}: pv_lock_hash stays NULL`);
    assert.equal(g.pvHash, undefined);
  }
  assert.deepEqual(pvHashSize(100), { entries: 256, bits: 8 });
  assert.deepEqual(pvHashSize(65), { entries: 256, bits: 8 }, 'ALIGN(260, 4) = 260 entries: ilog2 keeps 256');
});

test('the speed knob rewrites exactly the two SPIN_THRESHOLD immediates and says so', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const b = boot(kernel, { platform: 'kvm' });
  const at = spinThresholdImmediates(b.result.text, kernel);
  assert.equal(at.length, 2);
  const real = new LinuxGuest(b, { vcpus: 2 });
  for (const a of at) assert.deepEqual([...real.machine.memory.readBytes(a, 4)], [0x00, 0x80, 0, 0]);
  assert.deepEqual(real.deviations(), []);
  const fast = new LinuxGuest(b, { vcpus: 2, spinThreshold: 64 });
  for (const a of at) assert.deepEqual([...fast.machine.memory.readBytes(a, 4)], [64, 0, 0, 0]);
  assert.match(fast.deviations()[0]!, /SPIN_THRESHOLD 64 instead of the kernel's 32768/);
});

test('nothing of pvpatch lies inside the real kernel image', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const lo = kernel.image.sections[0]!.addr;
  const hi = Math.max(...kernel.image.sections.map((s) => s.addr + s.size));
  const ours: [string, number, number][] = [
    ['SERVICE_BASE', SERVICE_BASE, SERVICE_SIZE], ['DATA_BASE', DATA_BASE, DATA_SIZE], ['PERCPU_BASE', PERCPU_BASE, PERCPU_SIZE * GUEST_MAX_VCPUS],
    ['STACK_BASE', STACK_BASE, STACK_SIZE * GUEST_MAX_VCPUS], ['WORKLOAD_TEXT', WORKLOAD_TEXT, 0x10000], ['WORKLOAD_DATA', WORKLOAD_DATA, 0x10000],
    ['STACKS', STACKS, 0x4000 * 64], ['PERCPU_CHUNK', PERCPU_CHUNK, 0x40000 * 64], ['PV_HASH_AT', PV_HASH_AT, 0x1000],
  ];
  for (const [name, at, size] of ours) assert.ok(at + size <= lo || at >= hi, `${name} overlaps the kernel`);
});
