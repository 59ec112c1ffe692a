// A machine scenario as a Subject: the verdict is the machine's (hazard with its step, fault,
// a scenario end not reached), the final state is what the scenario observes, coverage its labels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { scenarioSubject } from '../../src/cli/scenario/subject.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { ReplayChooser } from '../../src/sched/replay.ts';
import { parseState } from '../../src/check/observation.ts';

const SCEN = join(import.meta.dirname, '..', '..', 'scenarios');

test('store buffering observes both registers and both flags; a schedule with both stores buffered reads 0 and 0', () => {
  const s = scenarioSubject(join(SCEN, 'store-buffering.yaml'));
  // Both vCPUs store (buffered), both load the other's flag before either store drains.
  const r = s.start().run(new ReplayChooser('s0 s1 s0 s1 s0 s1 d0 d1', 2));
  assert.equal(r.verdict.ok, true);
  assert.equal(r.finalState, '0:rax=0; 1:rax=0; x=1; y=1');
  assert.deepEqual([...parseState(r.finalState)], [['0:rax', 0n], ['1:rax', 0n], ['x', 1n], ['y', 1n]]);
  assert.deepEqual(r.coverage, ['label cpu0', 'label cpu1']);
});

test('the no-sync rewrite is a hazard verdict at the violating step, on the fetching vCPU', () => {
  const s = scenarioSubject(join(SCEN, 'cmc-no-sync.yaml'));
  const e = s.start();
  const r = e.run(new ReplayChooser('s1*2 d1 s1*2 d1 s0', 2));
  assert.equal(r.verdict.ok, false);
  if (r.verdict.ok) return;
  assert.equal(r.verdict.check, 'hazard');
  assert.equal(r.verdict.hazard?.kind, 'cmc-unsynchronized');
  assert.equal(r.verdict.cpu, 0);
  assert.equal(r.verdict.step, 6, 'the seventh action, vCPU 0 fetching the torn site');
  assert.equal(r.finalState, '0:rip=0x1000; 1:rip=0x111e halted', 'the patcher wrote every byte and halted');
});

test('a scenario whose end (stopWhenHalted) is not reached within the bound fails step-limit; one without an end does not', () => {
  const tpo = scenarioSubject(join(SCEN, 'text-poke-order.yaml'));
  const r = tpo.start().run(new RandomChooser(1), { maxInstructions: 50 });
  assert.equal(r.verdict.ok, false);
  if (!r.verdict.ok) assert.equal(r.verdict.check, 'step-limit');
  const noSync = scenarioSubject(join(SCEN, 'cmc-no-sync.yaml'));
  const q = noSync.start().run(new ReplayChooser('s0*30', 2), { maxInstructions: 30 });
  assert.equal(q.run.reason, 'limit');
  assert.equal(q.verdict.ok, true);
});

test('executions are independent forks of one boot: the same seed gives the same result', () => {
  const s = scenarioSubject(join(SCEN, 'text-poke-order.yaml'));
  const a = s.start();
  const ra = a.run(new RandomChooser(9));
  const b = s.start();
  const rb = b.run(new RandomChooser(9));
  assert.equal(ra.finalState, rb.finalState);
  assert.deepEqual(a.machine.decisions, b.machine.decisions);
  assert.deepEqual(a.machine.events, b.machine.events);
});
