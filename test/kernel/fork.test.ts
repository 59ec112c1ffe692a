// DESIGN.md §3: exploration re-executes from one boot, so everything a guest, a protocol, an oracle
// or the host keeps must fork with the machine. A booted guest with the default scenario's pending
// v2 hint switch, forked and run with seed s, is byte for byte a fresh boot run with seed s, and
// runs of one fork leave the other (and the boot) untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { readScenarioDoc, validateScenario } from '../../src/cli/scenario/load.ts';
import { guestScenarioSchema, type GuestScenario } from '../../src/cli/scenario/guest-schema.ts';
import { bootGuest } from '../../src/cli/commands/run-guest.ts';
import { installHintSwitch, runHintSwitch, type HintSwitch, type SwitchProtocol } from '../../src/patching/hint-switch.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { formatSchedule } from '../../src/sched/schedule.ts';
import { DATA_BASE, DATA_SIZE, PERCPU_BASE, PERCPU_SIZE, STACK_BASE, STACK_SIZE, TEXT_BASE, TEXT_SIZE, VECTOR } from '../../src/kernel/layout.ts';
import { ticketLockSites } from '../../src/patching/broken.ts';
import { Guest } from '../../src/kernel/guest.ts';
import { GuestConfigError } from '../../src/kernel/errors.ts';
import { hostScheduler } from '../../src/kernel/host-setup.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import type { HostScheduler } from '../../src/host/scheduler.ts';

const FILE = join(import.meta.dirname, '..', '..', 'scenarios', 'default.yaml');
const S = validateScenario<GuestScenario>(FILE, readScenarioDoc(FILE), guestScenarioSchema);

function memoryDigest(g: Guest): string {
  const h = createHash('sha256');
  const n = g.machine.vcpus.length;
  for (const [at, size] of [[TEXT_BASE, TEXT_SIZE], [DATA_BASE, DATA_SIZE], [PERCPU_BASE, PERCPU_SIZE * n], [STACK_BASE, STACK_SIZE * n]] as const) h.update(g.machine.memory.readBytes(at, size));
  return h.digest('hex');
}

/** Run an installed switch with seed `seed`; everything a run leaves, as one comparable object. */
function runAndRecord(g: Guest, sw: HintSwitch, seed: number) {
  const inject = { nmis: S.inject!.nmis!, irqs: S.inject!.irqs!, irqVector: VECTOR.LOCK_IRQ };
  const r = runHintSwitch(g, sw, { atStep: S.switch!.atStep, hint: S.switch!.hint }, { chooser: new RandomChooser(seed), inject, maxInstructions: 5_000_000 });
  return {
    schedule: formatSchedule(g.machine.decisions),
    verdict: r.verdict, switches: r.switches, int3Hits: r.int3Hits, ipis: r.ipis, timeline: r.timeline, locks: r.locks,
    stats: g.stats, host: g.host!.stats, events: g.machine.events.length, step: g.machine.step, memory: memoryDigest(g),
  };
}

function fresh(protocol: SwitchProtocol, seed: number) {
  const g = bootGuest(S, seed);
  return runAndRecord(g, installHintSwitch(g, protocol), seed);
}

test('a booted guest with a pending v2 hint switch, forked twice and run with seed 5, gives exactly the run of a fresh boot with seed 5; fork A\'s run leaves fork B and the boot untouched', () => {
  const boot = bootGuest(S, 1);
  const sw = installHintSwitch(boot, 'v2');
  const before = memoryDigest(boot);
  const a = boot.fork({ seed: 5 });
  const b = boot.fork({ seed: 5 });
  const ra = runAndRecord(a, a.counterpart(sw), 5);
  assert.equal(ra.verdict.ok, true, JSON.stringify(ra.verdict));
  assert.equal(ra.switches[0]?.reason, 'switched', 'the fork ran the switch');
  assert.equal(b.machine.step, 0);
  assert.equal(b.stats.tasksDone, 0, 'fork B\'s counters did not move');
  assert.equal(b.counterpart(sw).completed(), 0, 'fork B\'s switch is still pending');
  assert.equal(memoryDigest(b), before, 'fork B\'s memory is the boot\'s');
  const rb = runAndRecord(b, b.counterpart(sw), 5);
  const rf = fresh('v2', 5);
  assert.deepEqual(ra, rf, 'fork A = a fresh boot');
  assert.deepEqual(rb, rf, 'fork B = a fresh boot');
  assert.equal(memoryDigest(boot), before, 'the boot is untouched');
  assert.equal(sw.completed(), 0);
  assert.equal(boot.host!.realtime, true, 'the boot\'s host still grants REALTIME');
});

test('v1 and text_poke_bp fork with their patchers too: a fork run equals a fresh run', () => {
  for (const protocol of ['v1', 'text-poke-bp'] as const) {
    const boot = bootGuest(S, 1);
    const sw = installHintSwitch(boot, protocol);
    const f = boot.fork({ seed: 3 });
    assert.deepEqual(runAndRecord(f, f.counterpart(sw), 3), fresh(protocol, 3), protocol);
  }
});

test('a fork of a fork, and a fork without a seed, continue the same guest', () => {
  const boot = bootGuest(S, 7);
  const sw = installHintSwitch(boot, 'v2');
  const child = boot.fork();
  const grandchild = child.fork();
  assert.deepEqual(runAndRecord(grandchild, grandchild.counterpart(child.counterpart(sw)), 7), fresh('v2', 7));
});

test('a service that no component forks makes fork() refuse, naming it', () => {
  const g = new Guest({ vcpus: 2, workload: { iterations: 2 } });
  ticketLockSites(g); // registers the ticket slowpath service outside any component
  assert.throws(() => g.fork(), (e: unknown) => e instanceof GuestConfigError && /service 'ticket_spin_lock_slowpath' at 0x[0-9a-f]+ belongs to nothing that forks/.test(e.message));
});

test('the host scheduler forks with the guest: an over-committed timed run of the fork equals the original\'s', () => {
  const g = new Guest({ vcpus: 4, seed: 2, workload: { iterations: 20 } });
  const sched = hostScheduler(g, { pcpus: 2, sliceCycles: 4_000 });
  const f = g.fork();
  const fsched = sched.fork(f.machine.vcpus, f.machine.memory, (cpu, preempted) => f.host!.setPreempted(cpu, preempted));
  const run = (x: Guest, s: HostScheduler) => {
    const r = x.run({ chooser: new TimedChooser({ seed: 3, host: s }), maxInstructions: 2_000_000 });
    return { reason: r.reason, steps: r.steps, stats: s.stats, tasks: x.stats.tasksDone, memory: memoryDigest(x) };
  };
  const forked = run(f, fsched);
  assert.ok(forked.stats.preemptions > 0, 'the host preempted vCPUs');
  assert.deepEqual(run(g, sched), forked);
});

test('a lockop_checkpoint handler set outside a component makes fork() refuse too', () => {
  const g = new Guest({ vcpus: 2, workload: { iterations: 2, lockopCheckpoint: true } });
  g.lockopCheckpoint = (ctx) => ctx.work();
  assert.throws(() => g.fork(), (e: unknown) => e instanceof GuestConfigError && /the lockop_checkpoint handler belongs to nothing that forks/.test(e.message));
});
