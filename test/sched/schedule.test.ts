// A schedule is a typed, run-length value (DESIGN.md §3): its string keeps the syntax
// `s0*12 d1 n2 i3 c0`, repeat counts stay counts (a billion steps is one entry), a text split in
// chunks parses as the whole, and a machine's recorded log reads back as the same Schedule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Schedule, ScheduleError, decodeDecision, encodeDecision, formatSchedule, parseScheduleChunks, recordedSchedule, type Decision } from '../../src/sched/schedule.ts';
import { ReplayChooser } from '../../src/sched/replay.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { machine, done, textPokeBpOrder } from '../helpers/site-machine.ts';

test('every decision kind has its letter and survives the machine encoding', () => {
  const all: Decision[] = [{ kind: 'step', cpu: 3 }, { kind: 'drain', cpu: 1 }, { kind: 'nmi', cpu: 2 }, { kind: 'irq', cpu: 0 }, { kind: 'choice', value: 1 }];
  assert.equal(new Schedule(all.map((decision) => ({ decision, count: 1 }))).toString(), 's3 d1 n2 i0 c1');
  for (const d of all) assert.deepEqual(decodeDecision(encodeDecision(d)), d);
  assert.equal(Schedule.fromCodes([0, 0, 0, 5, -2, -2]).toString(), 's0*3 d1 c1*2');
  assert.equal(Schedule.parse('s0*12 d1 n2 i3 c0').toString(), 's0*12 d1 n2 i3 c0');
});

test('a repeat count of 1e9 is one entry, not a billion', () => {
  const s = Schedule.parse('s0*1000000000 s1');
  assert.equal(s.entries.length, 2);
  assert.equal(s.length, 1_000_000_001);
  assert.equal(s.toString(), 's0*1000000000 s1');
  assert.throws(() => Schedule.parse('s0*1000000001'), (e: unknown) => e instanceof ScheduleError && /repeat count must be 1\.\.1e9/.test(e.message));
});

test('a replay of a billion-step schedule holds one entry and runs only as far as the run goes', () => {
  const m = machine(textPokeBpOrder());
  const replay = new ReplayChooser(Schedule.parse('s0*1000000000'), 2);
  const r = m.run({ chooser: replay, maxInstructions: 10_000 });
  assert.equal(r.reason, 'limit');
  assert.equal(replay.position, 10_000);
  assert.equal(m.vcpu(1).retired, 0, 'vCPU 1 never stepped');
});

test('a schedule text cut into chunks anywhere parses as the whole', () => {
  const text = 's0*12 d1 s1*300 n0 i1 c1 s0*1000000000';
  const whole = Schedule.parse(text);
  for (let cut = 0; cut <= text.length; cut++) {
    assert.deepEqual(parseScheduleChunks([text.slice(0, cut), text.slice(cut)]).entries, whole.entries, `cut at ${cut}`);
  }
  assert.deepEqual(parseScheduleChunks([...text]).entries, whole.entries, 'one character per chunk');
});

test('a runaway token is reported without being accumulated', () => {
  assert.throws(() => parseScheduleChunks(['s0 ', 'x'.repeat(1000), 'x'.repeat(1000)]), /token 2 'x{40}…' is not one of s<cpu>, d<cpu>, n<cpu>, i<cpu>, c<value>/);
});

test('a recorded run reads back as a Schedule that replays it', () => {
  const a = machine(textPokeBpOrder());
  a.run({ chooser: new RandomChooser(11), until: done });
  const s = recordedSchedule(a);
  assert.equal(s.toString(), formatSchedule(a.decisions));
  assert.ok(s.entries.some((e) => e.decision.kind === 'drain') && s.entries.some((e) => e.count > 1));
  const b = machine(textPokeBpOrder());
  const replay = new ReplayChooser(Schedule.parse(s.toString()), 2);
  b.run({ chooser: replay, until: done });
  assert.deepEqual(b.decisions, a.decisions);
  assert.ok(replay.done);
});
