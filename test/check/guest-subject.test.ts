// A guest scenario as a Subject (src/check/subject.ts): it boots once; every execution is a fork
// judged by the one Verdict, with a final state an explorer can count; an execution with seed s is
// the run a fresh boot with seed s gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestSubject, guestFinalState, type GuestSubjectConfig } from '../../src/check/guest-subject.ts';
import { installHintSwitch, runHintSwitch } from '../../src/patching/hint-switch.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { formatSchedule } from '../../src/sched/schedule.ts';
import { Guest } from '../../src/kernel/guest.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { foreignEncoding } from '../../src/patching/broken.ts';

const inject = { nmis: 3, irqs: 8, irqVector: VECTOR.LOCK_IRQ };
const CONFIG: GuestSubjectConfig = {
  name: 'revoke-realtime-v2',
  guest: { vcpus: 4, spinThreshold: 64, host: { realtime: true }, workload: { iterations: 20, lockopCheckpoint: true } },
  switch: { protocol: 'v2', hint: 'revoke', atStep: 2000 },
  limits: { maxInstructions: 5_000_000, inject },
};

test('an execution of the guest subject with seed 4 is the run of a fresh boot with seed 4: verdict, schedule and final state', () => {
  const subject = new GuestSubject(CONFIG);
  const e = subject.start(4);
  const r = e.run(new RandomChooser(4));
  assert.deepEqual(r.verdict.ok, true);
  assert.match(r.finalState, /^locks 0:\d+\/\d+ 1:\d+\/\d+ 2:\d+\/\d+; pv_ops pv; sites [0-9a-f]{16}$/);
  assert.equal(e.switchResult?.switches[0]?.reason, 'switched');

  const g = new Guest({ ...CONFIG.guest, seed: 4 });
  const sw = installHintSwitch(g, 'v2');
  const fresh = runHintSwitch(g, sw, { atStep: 2000, hint: 'revoke' }, { chooser: new RandomChooser(4), inject, maxInstructions: 5_000_000 });
  assert.deepEqual(r.verdict, fresh.verdict);
  assert.equal(formatSchedule(e.machine.decisions), formatSchedule(g.machine.decisions));
  assert.equal(r.finalState, guestFinalState(g));
  assert.equal(subject.boot.machine.step, 0, 'the boot itself never runs');
});

test('the final state tells runs apart: a refused switch leaves native ops and other site bytes', () => {
  const refused = new GuestSubject({ ...CONFIG, prepare: (g) => foreignEncoding(g, 1) });
  const r = refused.start(4).run(new RandomChooser(4));
  assert.equal(r.verdict.ok, false);
  assert.equal(!r.verdict.ok && r.verdict.check, 'unexpected-bytes');
  assert.match(r.finalState, /pv_ops native/);
  const ok = new GuestSubject(CONFIG).start(4).run(new RandomChooser(4));
  assert.notEqual(r.finalState.split('sites ')[1], ok.finalState.split('sites ')[1]);
});
