// The timed strategy keeps its vCPUs in a heap by time (issue 12) instead of scanning every action
// at every point: it must still take an earliest action at every point, and the heap must order
// like a plain sorted list under any sequence of updates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ActionKind, actionCpu, actionKind, type Chooser, type SchedulingPoint } from '../../src/machine/chooser.ts';
import { STORE_DRAIN_LATENCY } from '../../src/sched/cost-model.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { TimeHeap } from '../../src/sched/time-heap.ts';
import { lockMachine } from '../../bench/lock-machine.ts';

test('the time heap orders vCPUs as a sorted list does, through sets and removals', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(15), fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 40 }))), { maxLength: 200 }), (ops) => {
    const heap = new TimeHeap(16);
    const model = new Map<number, number>();
    for (const [id, t] of ops) {
      heap.set(id, t);
      if (t === Infinity) model.delete(id);
      else model.set(id, t);
      const sorted = [...model].sort((a, b) => a[1] - b[1] || a[0] - b[0]);
      assert.equal(heap.top(), sorted.length > 0 ? sorted[0]![0] : -1);
      if (sorted.length > 0) {
        const [first, t0] = sorted[0]!;
        assert.equal(heap.earliestBut(first), sorted.length > 1 ? sorted[1]![1] : Infinity);
        const out = new Int32Array(16);
        const n = heap.atMost(t0 + 3, out, 0);
        assert.deepEqual([...out.subarray(0, n)].sort((a, b) => a - b), sorted.filter(([, t]) => t <= t0 + 3).map(([id]) => id).sort((a, b) => a - b));
      }
    }
  }), { seed: 12, numRuns: 300 });
});

/** The clamped time of an action as the timed strategy defines it (src/sched/timed.ts). */
function timeOf(a: number, p: SchedulingPoint, now: number, nextInjection: number): number {
  const c = p.vcpus[actionCpu(a)]!;
  const k = actionKind(a);
  const raw = k === ActionKind.Step ? c.time : k === ActionKind.Drain ? c.storeBuffer[0]!.time + STORE_DRAIN_LATENCY.cycles : nextInjection;
  return Math.max(raw, now);
}

test('timed takes an earliest action at every point of a 24-vCPU lock loop with injections', () => {
  const inner = new TimedChooser({ seed: 3, injectEvery: 3000 });
  const state = inner as unknown as { now: number; nextInjection: number };
  let points = 0, ties = 0;
  const checking: Chooser = {
    name: 'timed-checked',
    next(p) {
      const now = state.now, inj = state.nextInjection;
      let min = Infinity, atMin = 0;
      for (let i = 0; i < p.count; i++) {
        const t = timeOf(p.actions[i]!, p, now, inj);
        if (t < min) { min = t; atMin = 1; } else if (t === min) atMin++;
      }
      const i = inner.next(p);
      assert.equal(timeOf(p.actions[i]!, p, now, inj), min, `point at step ${p.step}`);
      points++;
      if (atMin > 1) ties++;
      return i;
    },
    choose: (k, n) => inner.choose(k, n),
    observe: (c, k, cost) => inner.observe(c, k, cost),
    continueWith: (c) => inner.continueWith(c),
  };
  const m = lockMachine(24, 10);
  const r = m.run({ chooser: checking, maxInstructions: 300_000, inject: { irqs: 0, nmis: 0, preemptions: 4 } });
  assert.ok(points > 1000, `${points} points`);
  assert.ok(r.steps > points, 'bursts ran');
  assert.ok(ties > 0, 'some points had several actions due at once');
});
