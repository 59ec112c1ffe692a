// Negative controls (DESIGN.md §5): each broken patching protocol drops one rule and the machine's
// checks catch it on a fixed seed, at the step it broke. The seeds are of random's bursts (the
// default since issue 9); each was found by sweeping seeds for the first on which the test's
// whole claim holds (for no-int3, the tail fetched by vCPU 2: seed 24 of 1..40).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import type { NmiEntry } from '../../src/kernel/image.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { SERVICE_BASE, VECTOR } from '../../src/kernel/layout.ts';
import { PvOp, directCall, type PatchSite } from '../../src/kernel/pv-ops.ts';
import { pvSlowpath } from '../../src/kernel/qspinlock-slowpath.ts';
import { brokenPatch, type BrokenVariant } from '../../src/patching/broken.ts';
import type { Hazard } from '../../src/machine/events.ts';
import { Reg } from '../../src/x86/registers.ts';

const INJECT = { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ };
/** A second copy of __pv_queued_spin_lock_slowpath: the CALL at the slowpath site changes target (bytes 1..4). */
const PV_SLOWPATH_V2 = SERVICE_BASE + 0x200;

function slowpathSwitch(seed: number, variant: BrokenVariant, skipCpu?: number) {
  const g = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 4, workload: { iterations: 3 }, seed });
  g.machine.registerService(PV_SLOWPATH_V2, '__pv_queued_spin_lock_slowpath_v2', (ctx) => pvSlowpath(ctx, g.env));
  const site: PatchSite = g.image.sites.find((s) => s.type === PvOp.QueuedSpinLockSlowpath)!;
  const bytes = directCall(site, PV_SLOWPATH_V2).subarray(0, 5);
  const r = brokenPatch(g, [{ address: site.address, bytes }], { variant, patcherCpu: 0, ...(skipCpu !== undefined ? { skipCpu } : {}) },
    { chooser: new RandomChooser(seed), inject: INJECT });
  if (r.reason === 'hazard') assert.ok(r.step > 0 && r.step === r.run.hazardSteps[0], 'the verdict names the violating step');
  return { g, site, r };
}

function cmc(h: Hazard | undefined): Extract<Hazard, { kind: 'cmc-unsynchronized' }> {
  assert.ok(h, 'a hazard was reported');
  assert.equal(h.kind, 'cmc-unsynchronized');
  return h as Extract<Hazard, { kind: 'cmc-unsynchronized' }>;
}

test('broken 1, no INT3 (Linux\'s steps without step 1): the CALL\'s tail is rewritten while vCPU 2 runs the site -> cmc-unsynchronized at the site (seed 24)', () => {
  const { site, r } = slowpathSwitch(24, 'no-int3');
  assert.equal(r.reason, 'hazard');
  const h = cmc(r.hazard);
  assert.equal(h.address, site.address);
  assert.equal(h.cpu, 2);
  assert.ok(h.unsynchronized.every((b) => b.writer === 0), 'the bytes came from the patcher, vCPU 0');
  assert.ok(h.unsynchronized.some((b) => b.offset > 0), 'a displacement byte nobody synchronized with');
});

test('broken 2, no sync between the steps: the tail is fetched behind an unsynchronized INT3 -> cmc-unsynchronized (seed 1)', () => {
  const { site, r } = slowpathSwitch(1, 'no-sync');
  assert.equal(r.reason, 'hazard');
  const h = cmc(r.hazard);
  assert.equal(h.address, site.address);
  assert.ok(h.unsynchronized.length > 1, 'more than the first byte changed under the fetching vCPU');
  assert.equal(r.syncs, 3, 'the three text_poke_syncs were reduced to local serializes');
});

test('broken 3, the sync skips vCPU 2: the hazard is on vCPU 2, the vCPU that never serialized (seed 2)', () => {
  const { site, r } = slowpathSwitch(2, 'skip-one', 2);
  assert.equal(r.reason, 'hazard');
  const h = cmc(r.hazard);
  assert.equal(h.cpu, 2);
  assert.equal(h.address, site.address);
});

test('broken 4, first byte written (and synced) before the tail: the tail write is fetched unsynchronized -> cmc-unsynchronized (seed 3)', () => {
  const { site, r } = slowpathSwitch(3, 'first-before-tail');
  assert.equal(r.reason, 'hazard');
  const h = cmc(r.hazard);
  assert.equal(h.address, site.address);
  assert.ok(h.unsynchronized.length > 0 && h.unsynchronized.every((b) => b.offset >= 1 && b.offset <= 4), 'only the tail (the CALL displacement) is unsynchronized');
  assert.equal(h.bytes[0], 0xe8, 'the new first byte was already in place');
});

test('control: the correct text_poke_bp makes the same switch cleanly on the same seeds', async () => {
  const { textPokeBp } = await import('../../src/patching/text-poke-bp.ts');
  for (const seed of [1, 2, 3, 24]) {
    const g = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 4, workload: { iterations: 3 }, seed });
    g.machine.registerService(PV_SLOWPATH_V2, '__pv_queued_spin_lock_slowpath_v2', (ctx) => pvSlowpath(ctx, g.env));
    const site = g.image.sites.find((s) => s.type === PvOp.QueuedSpinLockSlowpath)!;
    const r = textPokeBp(g, [{ address: site.address, bytes: directCall(site, PV_SLOWPATH_V2).subarray(0, 5) }], 0, { chooser: new RandomChooser(seed), inject: INJECT });
    assert.equal(r.reason, 'ok', `seed ${seed}: ${r.detail ?? ''}`);
  }
});

// ---- v1 without its NMI handling (RFC PATCH 15–19, seeds 000 and 002) ----

import { switchLockOpsV1 } from '../../src/patching/v1.ts';
import { NmiInInt3Chooser } from '../../src/patching/nmi-adversary.ts';

function v1Guest(seed: number, nmiEntry: NmiEntry = 'linux'): Guest {
  return new Guest({ vcpus: 4, flavor: 'native', spinThreshold: 4, workload: { iterations: 3 }, seed, nmiEntry });
}

test('broken 5a, v1 whose #BP handler just returns to the INT3 (no state machine): an NMI meets the INT3 and the machine livelocks (seed 12)', () => {
  const g = v1Guest(12);
  const r = switchLockOpsV1(g, ['pv', 'native'], { primaryCpu: 3, int3Retry: true, run: { chooser: new RandomChooser(12), inject: { nmis: 8, irqs: 4, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 300_000 } });
  assert.equal(r.reason, 'unfinished');
  assert.match(r.detail!, /^limit; 0 of 4 tasks finished/);
  assert.equal(r.switched, false, 'stop_machine never finished');
  assert.ok(r.stats.int3InNmi > 0 && r.stats.int3Hits > 1000, `the NMI re-executes the INT3 forever (${r.stats.int3Hits} hits)`);
  const control = switchLockOpsV1(v1Guest(12), ['pv', 'native'], { primaryCpu: 3, run: { chooser: new RandomChooser(12), inject: { nmis: 8, irqs: 4, irqVector: VECTOR.LOCK_IRQ } } });
  assert.equal(control.reason, 'ok', 'the real v1 on the same seed');
});

test('broken 5b, v1 returning from an INT3 in NMI context with IRET, in a guest whose NMI entry lacks Linux\'s nested-NMI handling: NMIs re-open, a nested NMI spins on the NMI lock its own outer NMI holds (seed 35)', () => {
  const run = (nmiIret: boolean, nmiEntry: NmiEntry = 'plain') => {
    const g = v1Guest(35, nmiEntry);
    const nmiUnlock = g.image.sites.at(-1)!; // nmi_handler's spin_unlock
    const r = switchLockOpsV1(g, ['pv', 'native'], {
      primaryCpu: 0, nmiIret, sites: (s) => s.address === nmiUnlock.address,
      run: { chooser: new NmiInInt3Chooser(new RandomChooser(35), 6), inject: { nmis: 10, irqs: 4, irqVector: VECTOR.LOCK_IRQ, cpus: [1] }, maxInstructions: 100_000 },
    });
    return { g, r, nmiUnlock };
  };
  const { g, r, nmiUnlock } = run(true);
  assert.equal(r.reason, 'unfinished');
  assert.match(r.detail!, /^limit/);
  assert.equal(r.stats.int3InNmi, 1);
  const c = g.machine.vcpu(1);
  const lo = g.symbol('nmi_handler'), hi = g.symbol('hint_handler');
  const rsp = c.getAddr(Reg.RSP);
  const inNmi = [...c.returns.entries()].filter(([slot]) => slot >= rsp).map(([, x]) => x.returnAddress).filter((a) => a >= lo && a < hi);
  assert.ok(inNmi.includes(nmiUnlock.address), 'the outer NMI was interrupted at its unlock site (lock held), where the INT3 was');
  assert.ok(inNmi.length >= 2, 'a second NMI handler runs nested inside the first');
  assert.equal(c.serviceFrames.at(-1)?.name, 'native_queued_spin_lock_slowpath', 'the nested NMI spins on the NMI lock');
  assert.equal(run(false).r.reason, 'ok', 'v1 returning without IRET (NMIs stay blocked) on the same schedule');
  assert.equal(run(true, 'linux').r.reason, 'ok', 'Linux\'s NMI entry latches the nested NMI: the IRET does no harm');
});

// ---- an incompatible lock flavour (seed 000: ticket vs test-and-set) ----

import { runV1 } from '../../src/patching/v1.ts';
import { ticketLockGeneration, ticketLockSites, TICKET_LOCK } from '../../src/patching/broken.ts';
import { QSPINLOCK, lockWordDisagreement } from '../../src/kernel/lock-word.ts';
import { lockAddress } from '../../src/kernel/layout.ts';

test('broken 6, switching qspinlock sites to a ticket lock (free when head == tail, not when 0): the lock-word check refuses at the switch, before any site is touched, and the guest runs on with qspinlock (seed 3)', () => {
  const g = v1Guest(3);
  const before = g.image.sites.map((s) => Array.from(g.machine.memory.readBytes(s.address, s.len)));
  const r = runV1(g, [ticketLockGeneration(g)], { primaryCpu: 0, run: { chooser: new RandomChooser(3), inject: { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 300_000 } });
  assert.equal(r.reason, 'lock-word-disagreement');
  assert.match(r.detail!, /^refused: qspinlock reads ticket lock's locked word 0x10000 as unlocked$/);
  assert.equal(r.switched, false);
  assert.equal(r.run.hazards.length, 0);
  assert.ok(g.tasksDone && r.locks.every((l) => l.ok), 'every task finished on the old locks');
  assert.deepEqual(g.image.sites.map((s) => Array.from(g.machine.memory.readBytes(s.address, s.len))), before, 'no site was written');
});

test('broken 6 without the lock-word check (the sites alone, no lock model declared): v1 patches cleanly but the lock state does not carry over and lockers wait forever (seed 1)', () => {
  const g = v1Guest(1);
  const r = runV1(g, [{ sites: ticketLockSites(g) }], { primaryCpu: 0, run: { chooser: new RandomChooser(1), inject: { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 300_000 } });
  assert.equal(r.switched, true, 'the patching protocol itself finished');
  assert.equal(r.run.hazards.length, 0, 'and was clean');
  assert.equal(r.reason, 'unfinished');
  assert.match(r.detail!, /^limit; 0 of 4 tasks finished/);
  // The fast path's cmpxchg 0 -> 1 (qspinlock: locked) released by `lock incw` (ticket: head++) leaves
  // head 2 behind tail 0: ticket holders 0 and 1 wait for a head that already passed them.
  const word = Array.from(g.machine.memory.readBytes(lockAddress(0), 4)).reduce((a, b, k) => a + b * 256 ** k, 0);
  assert.equal(word, 0x20002, 'task lock: tail 2 (tickets 0 and 1 taken), head 2 (two qspinlock-style releases)');
  const waiting = g.machine.vcpus.filter((c) => c.serviceFrames.at(-1)?.name === 'ticket_spin_lock_slowpath').length;
  assert.ok(waiting >= 2, `${waiting} vCPUs wait in the ticket slowpath on a lock nobody holds`);
});

test('the lock-word check: native and PV qspinlock agree on every word; the ticket lock disagrees on a held qspinlock with waiters too', () => {
  assert.equal(lockWordDisagreement(QSPINLOCK, QSPINLOCK, new Map([[0x1000, 0x3], [0x1040, 0x40001]])), undefined);
  const lenient = { ...TICKET_LOCK, encode: QSPINLOCK.encode }; // agrees on the canonical words: the words in memory still decide
  assert.match(lockWordDisagreement(QSPINLOCK, lenient, new Map([[0x1000, 0x00040100]]))!, /holds 0x40100: qspinlock reads it as unlocked, ticket lock as locked/);
});
