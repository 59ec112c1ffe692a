// DESIGN.md §3: the same scenario, seed and schedule give the same trace, bit for bit; a recorded
// schedule string replays the run; a schedule that does not fit says where.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RandomChooser } from '../../src/sched/random.ts';
import { ReplayChooser } from '../../src/sched/replay.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { formatSchedule, parseSchedule, ScheduleError } from '../../src/sched/schedule.ts';
import { machine, done, textPokeBpOrder, Code, PATCHER, SITE } from '../helpers/site-machine.ts';

const fingerprint = (m: ReturnType<typeof machine>) =>
  JSON.stringify({ events: m.events, regs: m.vcpus.map((c) => [Array.from(c.lo), Array.from(c.hi), c.rip, c.flags]) });

test('the same seed gives the same trace, bit for bit', () => {
  const a = machine(textPokeBpOrder());
  const b = machine(textPokeBpOrder());
  a.run({ chooser: new RandomChooser(42), until: done });
  b.run({ chooser: new RandomChooser(42), until: done });
  assert.equal(fingerprint(a), fingerprint(b));
  assert.deepEqual(a.decisions, b.decisions);
});

test('different seeds give different interleavings', () => {
  const a = machine(textPokeBpOrder());
  const b = machine(textPokeBpOrder());
  a.run({ chooser: new RandomChooser(1), until: done });
  b.run({ chooser: new RandomChooser(2), until: done });
  assert.notDeepEqual(a.decisions, b.decisions);
});

test('a recorded schedule string replays the run exactly', () => {
  const a = machine(textPokeBpOrder());
  a.run({ chooser: new RandomChooser(9), until: done });
  const schedule = formatSchedule(a.decisions);
  assert.match(schedule, /^[sdnic]\d+(\*\d+)?( [sdnic]\d+(\*\d+)?)*$/);
  const b = machine(textPokeBpOrder());
  const replay = new ReplayChooser(schedule, 2);
  b.run({ chooser: replay, until: done });
  assert.equal(fingerprint(a), fingerprint(b));
  assert.ok(replay.done);
});

test('a hazard found by a random seed replays from its schedule string', () => {
  const p = new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4);
  const a = machine(p.bytes);
  const r1 = a.run({ chooser: new RandomChooser(3), until: done });
  assert.equal(r1.reason, 'hazard');
  const b = machine(p.bytes);
  const r2 = b.run({ chooser: new ReplayChooser(formatSchedule(a.decisions), 2), until: done });
  assert.equal(r2.reason, 'hazard');
  assert.deepEqual(r2.hazards, r1.hazards);
  assert.equal(b.step, a.step);
});

test('the timed strategy is deterministic for a seed and replayable', () => {
  const a = machine(textPokeBpOrder());
  const b = machine(textPokeBpOrder());
  a.run({ chooser: new TimedChooser({ seed: 5 }), until: done });
  b.run({ chooser: new TimedChooser({ seed: 5 }), until: done });
  assert.equal(fingerprint(a), fingerprint(b));
  const c = machine(textPokeBpOrder());
  c.run({ chooser: new ReplayChooser(formatSchedule(a.decisions), 2), until: done });
  assert.equal(fingerprint(a), fingerprint(c));
});

test('a malformed schedule string is rejected with the bad token named', () => {
  assert.throws(() => parseSchedule('s0*3 x1 s1'), (e: unknown) => e instanceof ScheduleError && /token 2 'x1'/.test(e.message));
  assert.throws(() => parseSchedule('s7', 2), /no vCPU 7/);
  assert.deepEqual(parseSchedule('s0*2 d1 c1').entries, [
    { decision: { kind: 'step', cpu: 0 }, count: 2 },
    { decision: { kind: 'drain', cpu: 1 }, count: 1 },
    { decision: { kind: 'choice', value: 1 }, count: 1 },
  ]);
});

test('a schedule that does not fit the run stops it (no throw) and says which decision, what it expected and what was enabled', () => {
  const m = machine(textPokeBpOrder());
  const replay = new ReplayChooser('s0*5 n1', 2);
  const r = m.run({ chooser: replay, until: done });
  assert.equal(r.reason, 'misfit');
  assert.equal(r.error, undefined);
  assert.deepEqual(replay.misfit, {
    decision: 6, expected: { kind: 'nmi', cpu: 1 }, needed: 'action',
    enabled: [{ kind: 'step', cpu: 0 }, { kind: 'step', cpu: 1 }],
    message: "schedule decision 6 'n1' does not fit: enabled here are s0 s1",
  });
  assert.equal(r.misfit, replay.misfit, 'the run result carries the same record');
  assert.equal(m.vcpu(0).retired, 5, 'the run stopped at the decision, after the five that fitted');
});

test('a schedule that ends early stops the run and says so, with nothing expected', () => {
  const m = machine(textPokeBpOrder());
  const replay = new ReplayChooser('s0*3', 2);
  const r = m.run({ chooser: replay, until: done });
  assert.equal(r.reason, 'misfit');
  assert.equal(replay.misfit!.expected, undefined);
  assert.equal(replay.misfit!.decision, 4);
  assert.match(r.misfit!.message, /schedule ended after 3 decisions/);
});

test('PCT finds the unsynchronized rewrite, and its schedule replays the hazard', async () => {
  const { PctChooser } = await import('../../src/sched/pct.ts');
  const p = new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4);
  let found = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const m = machine(p.bytes);
    const r = m.run({ chooser: new PctChooser({ seed, depth: 2, length: 200 }), maxInstructions: 50_000, until: done });
    if (r.reason === 'hazard') {
      found++;
      const again = machine(p.bytes);
      const r2 = again.run({ chooser: new ReplayChooser(formatSchedule(m.decisions), 2), maxInstructions: 50_000, until: done });
      assert.deepEqual(r2.hazards, r.hazards);
    }
  }
  assert.ok(found > 0);
});
