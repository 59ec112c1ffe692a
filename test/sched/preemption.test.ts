// Host preemption as a scheduler decision (issue 9): random and PCT may deschedule a running vCPU
// (a VM exit: its stores drain, steal time's `preempted` byte is set) and resume it; the decisions
// are `p<cpu>` and `r<cpu>` in a schedule string, and a replay of it reproduces the run.
import { encodeDecision } from '../../src/sched/schedule.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { SERVICE_BASE, VECTOR } from '../../src/kernel/layout.ts';
import { PvOp, directCall } from '../../src/kernel/pv-ops.ts';
import { pvSlowpath } from '../../src/kernel/qspinlock-slowpath.ts';
import { textPokeBp } from '../../src/patching/text-poke-bp.ts';
import { STEAL_TIME_PREEMPTED_OFFSET } from '../../src/host/kvm-abi.ts';
import { ActionKind, action, type Chooser } from '../../src/machine/chooser.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { PctChooser } from '../../src/sched/pct.ts';
import { ReplayChooser } from '../../src/sched/replay.ts';
import { formatSchedule, parseSchedule } from '../../src/sched/schedule.ts';

const PV_SLOWPATH_V2 = SERVICE_BASE + 0x200;

/** text_poke_bp retargeting the PV slowpath CALL (test/patching/text-poke-bp.test.ts) with 3 host preemptions. */
function run(seed: number, chooser: Chooser) {
  const g = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 64, workload: { iterations: 3 }, seed });
  g.machine.registerService(PV_SLOWPATH_V2, '__pv_queued_spin_lock_slowpath_v2', (ctx) => pvSlowpath(ctx, g.env));
  const site = g.image.sites.find((s) => s.type === PvOp.QueuedSpinLockSlowpath)!;
  let stolen = 0, wrongByte = 0;
  const r = textPokeBp(g, [{ address: site.address, bytes: directCall(site, PV_SLOWPATH_V2).subarray(0, 5) }], seed % 4, {
    chooser, inject: { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ, preemptions: 3 },
    until: (m) => {
      // While the host has a vCPU off, the guest sees it in steal time (what vcpu_is_preempted reads).
      for (const c of m.vcpus) {
        const byte = m.memory.readBytes(g.host!.stealTime[c.id]! + STEAL_TIME_PREEMPTED_OFFSET, 1)[0];
        if (c.preempted) stolen++;
        if ((byte === 1) !== c.preempted) wrongByte++;
      }
      return false;
    },
  });
  const preempts = g.machine.events.filter((e) => e.type === 'host-preempt');
  return { g, r, preempts, stolen, wrongByte, schedule: formatSchedule(g.machine.decisions) };
}

test('p<cpu> and r<cpu> are schedule decisions: the host deschedules and resumes vCPU <cpu>', () => {
  assert.deepEqual(parseSchedule('p1 s0*2 r1').entries, [
    { decision: { kind: 'preempt', cpu: 1 }, count: 1 },
    { decision: { kind: 'step', cpu: 0 }, count: 2 },
    { decision: { kind: 'resume', cpu: 1 }, count: 1 },
  ]);
  assert.equal(encodeDecision({ kind: 'preempt', cpu: 1 }), action(1, ActionKind.Preempt));
  assert.equal(formatSchedule([action(3, ActionKind.Preempt), 1, action(3, ActionKind.Resume), 1]), 'p3 r3');
});

for (const [name, mk] of [
  ['random', (seed: number) => new RandomChooser(seed)],
  ['PCT', (seed: number) => new PctChooser({ seed, length: 2000 })],
] as const) {
  test(`a ${name} run with a preemption budget deschedules vCPUs (steal time says so), stays correct, and its schedule replays it`, () => {
    const seed = 2;
    const a = run(seed, mk(seed));
    assert.equal(a.r.reason, 'ok', `${a.r.reason} ${a.r.detail ?? ''}`);
    assert.equal(a.preempts.filter((e) => e.type === 'host-preempt' && e.preempted).length, 3, 'the whole budget was spent');
    assert.ok(a.preempts.some((e) => e.type === 'host-preempt' && !e.preempted), 'and the host resumed them');
    assert.ok(a.stolen > 0, 'vCPUs spent steps descheduled');
    assert.equal(a.wrongByte, 0, 'steal time\'s preempted byte followed every deschedule and resume');
    assert.match(a.schedule, /(^| )p\d/);
    assert.match(a.schedule, /(^| )r\d/);
    const b = run(seed, new ReplayChooser(a.schedule, 4));
    assert.equal(b.r.reason, 'ok', `replay: ${b.r.detail ?? ''}`);
    assert.deepEqual(b.preempts, a.preempts, 'the same deschedules and resumes at the same steps');
    assert.equal(b.r.run.steps, a.r.run.steps);
    assert.equal(b.schedule, a.schedule);
  });
}
