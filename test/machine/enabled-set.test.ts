// The machine keeps the enabled set incrementally (issue 12): after a step burst or a drain of one
// vCPU it recomputes only that vCPU's actions. Every decision and event must be what a full
// rebuild at every point gives; a chooser that says it changes run states forces the rebuild.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Chooser, SchedulingPoint } from '../../src/machine/chooser.ts';
import type { Machine } from '../../src/machine/machine.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { machine, done, textPokeBpOrder } from '../helpers/site-machine.ts';
import { lockMachine } from '../../bench/lock-machine.ts';

/** `inner`, but the machine must rebuild the enabled set at every point. */
function rebuilding(inner: Chooser): Chooser {
  return {
    name: inner.name,
    changesRunState: true,
    get stopped() { return inner.stopped; },
    next: (p: SchedulingPoint) => inner.next(p),
    choose: (k, n) => inner.choose(k, n),
    ...(inner.observe ? { observe: inner.observe.bind(inner) } : {}),
    ...(inner.forced ? { forced: inner.forced.bind(inner) } : {}),
    ...(inner.continueWith ? { continueWith: inner.continueWith.bind(inner) } : {}),
    ...(inner.burst ? { burst: inner.burst.bind(inner) } : {}),
    ...(inner.idle ? { idle: inner.idle.bind(inner) } : {}),
  };
}

function same(make: () => Machine, chooser: () => Chooser, opts: Parameters<Machine['run']>[0] = {}): void {
  const a = make(), b = make();
  const ra = a.run({ ...opts, chooser: chooser() });
  const rb = b.run({ ...opts, chooser: rebuilding(chooser()) });
  assert.deepEqual(ra, rb);
  assert.deepEqual(a.decisions, b.decisions);
  assert.deepEqual(a.events, b.events);
}

test('text_poke_bp order under random with NMIs and IRQs: the same run as a full rebuild per point', () => {
  for (let seed = 1; seed <= 12; seed++) {
    same(() => machine(textPokeBpOrder()), () => new RandomChooser(seed, { bursts: seed % 2 === 0 }), { until: done, inject: { nmis: 2, irqs: 2 }, maxInstructions: 200_000 });
  }
});

test('a 12-vCPU lock loop under random and timed: the same run as a full rebuild per point', () => {
  for (let seed = 1; seed <= 3; seed++) {
    same(() => lockMachine(12, 20), () => new RandomChooser(seed), { maxInstructions: 500_000 });
    same(() => lockMachine(12, 20), () => new TimedChooser({ seed }), { maxInstructions: 500_000 });
  }
});
