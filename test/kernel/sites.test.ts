// Boot-time patching (apply_paravirt): the bytes at every .parainstructions site after boot are
// Linux's, for a native and for a KVM-PV guest (seed 001's unlock bytes among them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { PvOp } from '../../src/kernel/pv-ops.ts';
import { SERVICE } from '../../src/kernel/image.ts';
import { kvmSpinlockInit } from '../../src/kernel/paravirt.ts';
import { KvmHost } from '../../src/host/kvm.ts';
import { Machine } from '../../src/machine/machine.ts';
import { hex, rel32 } from '../helpers/bytes.ts';

function siteBytes(g: Guest, type: PvOp): number[][] {
  return g.image.sites.filter((s) => s.type === type).map((s) => Array.from(g.machine.memory.readBytes(s.address, s.len)));
}

function callTo(g: Guest, type: PvOp, target: number, nops: string): number[][] {
  return g.image.sites.filter((s) => s.type === type).map((s) => [0xe8, ...rel32(s.address + 5, target), ...hex(nops)]);
}

test('a native guest on bare metal (Linux 6.1, 6-byte sites): unlock is c6 07 00 0f 1f 00, vcpu_is_preempted 48 31 c0 0f 1f 00, wait/kick NOPs', () => {
  const g = new Guest({ vcpus: 4, platform: 'bare-metal' });
  assert.equal(g.flavor, 'native');
  assert.ok(g.image.sites.every((s) => s.len === 6), 'every .parainstructions lock-op site is 6 bytes');
  for (const b of siteBytes(g, PvOp.QueuedSpinUnlock)) assert.deepEqual(b, hex('c6 07 00 0f 1f 00'));
  for (const b of siteBytes(g, PvOp.VcpuIsPreempted)) assert.deepEqual(b, hex('48 31 c0 0f 1f 00'));
  for (const b of siteBytes(g, PvOp.Wait)) assert.deepEqual(b, hex('66 0f 1f 44 00 00'));
  for (const b of siteBytes(g, PvOp.Kick)) assert.deepEqual(b, hex('66 0f 1f 44 00 00'));
  assert.deepEqual(siteBytes(g, PvOp.QueuedSpinLockSlowpath), callTo(g, PvOp.QueuedSpinLockSlowpath, SERVICE.nativeSlowpath, '90'));
  assert.ok(siteBytes(g, PvOp.QueuedSpinUnlock).length >= 4, 'unlock sites inlined in several places');
});

test('a native guest on KVM (REALTIME, nopvspin or forced): four lock ops native, vcpu_is_preempted stays KVM\'s (kvm_guest_init: steal time)', () => {
  for (const o of [{ host: { realtime: true } }, { nopvspin: true }, { flavor: 'native' as const }]) {
    const g = new Guest({ vcpus: 4, ...o });
    assert.equal(g.flavor, 'native');
    for (const b of siteBytes(g, PvOp.QueuedSpinUnlock)) assert.deepEqual(b, hex('c6 07 00 0f 1f 00'));
    for (const b of siteBytes(g, PvOp.Wait)) assert.deepEqual(b, hex('66 0f 1f 44 00 00'));
    assert.deepEqual(siteBytes(g, PvOp.VcpuIsPreempted), callTo(g, PvOp.VcpuIsPreempted, g.symbol('__raw_callee_save___kvm_vcpu_is_preempted'), '90'));
  }
});

test('a KVM PV guest: every site is a direct call + 90 (unlock: e8 rel32 90)', () => {
  const g = new Guest({ vcpus: 4, flavor: 'auto' });
  assert.equal(g.flavor, 'pv');
  assert.deepEqual(siteBytes(g, PvOp.QueuedSpinUnlock), callTo(g, PvOp.QueuedSpinUnlock, g.symbol('__raw_callee_save___pv_queued_spin_unlock'), '90'));
  assert.deepEqual(siteBytes(g, PvOp.VcpuIsPreempted), callTo(g, PvOp.VcpuIsPreempted, g.symbol('__raw_callee_save___kvm_vcpu_is_preempted'), '90'));
  assert.deepEqual(siteBytes(g, PvOp.Wait), callTo(g, PvOp.Wait, g.symbol('kvm_wait'), '90'));
  assert.deepEqual(siteBytes(g, PvOp.Kick), callTo(g, PvOp.Kick, g.symbol('kvm_kick_cpu'), '90'));
  assert.deepEqual(siteBytes(g, PvOp.QueuedSpinLockSlowpath), callTo(g, PvOp.QueuedSpinLockSlowpath, SERVICE.pvSlowpath, '90'));
});

test('kvm_spinlock_init decides as Linux does, in Linux order', () => {
  const m = new Machine({ vcpus: 1 });
  const cases: [string, { pvUnhalt?: boolean; realtime?: boolean } | null, number, boolean, string, string][] = [
    ['bare metal', null, 4, false, 'native', 'not running on KVM'],
    ['no PV_UNHALT', { pvUnhalt: false }, 4, false, 'native', 'no host support'],
    ['REALTIME hint', { realtime: true }, 4, false, 'native', 'KVM_HINTS_REALTIME'],
    ['one vCPU', {}, 1, false, 'native', 'single CPU'],
    ['nopvspin', {}, 4, true, 'native', 'nopvspin'],
    ['KVM, over-committable', {}, 4, false, 'pv', 'PV spinlocks enabled'],
  ];
  for (const [name, host, vcpus, nopvspin, flavor, reason] of cases) {
    const h = host ? new KvmHost(m, host) : undefined;
    const d = kvmSpinlockInit((leaf) => h?.cpuid(m.vcpu(0), leaf), vcpus, nopvspin);
    assert.equal(d.flavor, flavor, name);
    assert.match(d.reason, new RegExp(reason), name);
  }
});
