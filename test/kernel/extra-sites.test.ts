// workload.extraSites: cold `.parainstructions` lock-op sites (src/kernel/image.ts) that no vCPU
// executes, so switches can be measured on 10, 100 or 1,000 sites. Boot patching, v1 and v2 must
// treat them like every other site.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest, type GuestOptions } from '../../src/kernel/guest.ts';
import { GuestConfigError } from '../../src/kernel/errors.ts';
import { EXTRA_SITE_MIX, extraSiteTypes } from '../../src/kernel/image.ts';
import { PV_OPS, patchBytes, type Flavor } from '../../src/kernel/pv-ops.ts';
import { TEXT_BASE } from '../../src/kernel/layout.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { switchLockOpsV2 } from '../../src/patching/v2.ts';
import { switchLockOpsV1 } from '../../src/patching/v1.ts';

const BASE = new Guest({ vcpus: 2 }).image.sites.length;

function guest(flavor: Flavor, extraSites: number, seed = 1, extra: Partial<GuestOptions> = {}): Guest {
  return new Guest({ vcpus: 4, flavor, spinThreshold: 64, seed, ...extra, workload: { iterations: 4, lockopCheckpoint: true, extraSites } });
}

function assertSites(g: Guest, flavor: Flavor, msg: string): void {
  for (const s of g.image.sites) {
    assert.deepEqual(Array.from(g.machine.memory.readBytes(s.address, s.len)), Array.from(patchBytes(s, flavor, g.image.targets)), `${msg}: site at ${s.address.toString(16)}`);
  }
}

test('a guest with extraSites: 91 boots with base + 91 sites, every one patched to the boot flavour', () => {
  for (const flavor of ['native', 'pv'] as const) {
    const g = guest(flavor, 91);
    assert.equal(g.image.sites.length, BASE + 91);
    const cold = g.image.symbols.get('cold_lock_sites')!;
    assert.equal(g.image.sites.filter((s) => s.address >= cold).length, 91, 'the extra sites are in cold_lock_sites()');
    assertSites(g, flavor, `boot ${flavor}`);
  }
});

test('the extra sites mix the five ops in the proportions of Debian 6.1\'s lock-op sites (35/39/2/1/9)', () => {
  const total = PV_OPS.reduce((a, op) => a + EXTRA_SITE_MIX[op], 0);
  assert.equal(total, 86);
  for (const k of [1, 2]) {
    const types = extraSiteTypes(k * total);
    for (const op of PV_OPS) assert.equal(types.filter((t) => t === op).length, k * EXTRA_SITE_MIX[op]);
  }
});

test('v2 switches every site, the cold ones included, under load: text as a fresh guest of the new flavour', () => {
  for (const [from, to] of [['native', 'pv'], ['pv', 'native']] as const) {
    for (let seed = 1; seed <= 5; seed++) {
      const g = guest(from, 91, seed);
      const r = switchLockOpsV2(g, to, { patcherCpu: seed % 4, run: { chooser: new RandomChooser(seed) } });
      assert.equal(r.reason, 'ok', `seed ${seed} ${from}: ${r.reason} ${r.detail ?? ''}`);
      const fresh = new Guest({ ...g.options, flavor: to });
      const len = g.image.text.length;
      assert.deepEqual(Buffer.from(g.machine.memory.readBytes(TEXT_BASE, len)), Buffer.from(fresh.machine.memory.readBytes(TEXT_BASE, len)), `seed ${seed}`);
    }
  }
});

test('v1 switches every site, the cold ones included', () => {
  const g = guest('native', 91, 2);
  const r = switchLockOpsV1(g, 'pv', { primaryCpu: 1, run: { chooser: new RandomChooser(2) } });
  assert.equal(r.reason, 'ok', r.detail);
  assertSites(g, 'pv', 'after v1');
});

test('extra sites that cannot fit in the kernel text\'s mapping are a GuestConfigError, before assembling', () => {
  assert.throws(() => guest('native', 50_000), (e: unknown) => e instanceof GuestConfigError && /does not fit: 50000 extra sites of up to 6 bytes need 300000, and there are 262144 bytes \(0x40000\)/.test(e.message));
  assert.throws(() => guest('native', -1), GuestConfigError);
  assert.throws(() => guest('native', 2.5), GuestConfigError);
});
