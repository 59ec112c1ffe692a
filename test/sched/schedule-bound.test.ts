// A schedule holds at most MAX_SCHEDULE_ENTRIES tokens (issue 13): repeat counts are one entry each
// (issue 9: a schedule of any length replays), but a runaway token count is a ScheduleError naming
// the token, not an array V8 cannot allocate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_SCHEDULE_ENTRIES, ScheduleError, parseSchedule, parseScheduleChunks } from '../../src/sched/schedule.ts';

test('a schedule with more tokens than the bound is refused at the token that crosses it', () => {
  assert.equal(parseSchedule('s0*5 s1*3', 2).length, 8);
  assert.equal(parseScheduleChunks(['s0 s1 s0'], 2, 3).entries.length, 3);
  assert.throws(() => parseScheduleChunks(['s0 s1 s0 s1'], 2, 3), (e: unknown) => e instanceof ScheduleError && /token 4: a schedule may hold at most 3 tokens/.test(e.message));
  assert.ok(MAX_SCHEDULE_ENTRIES >= 1_000_000);
  assert.throws(() => parseSchedule('s0 s1*99999999999999999999', 2), (e: unknown) => e instanceof ScheduleError && /token 2/.test(e.message));
  assert.throws(() => parseSchedule('s0*0', 2), (e: unknown) => e instanceof ScheduleError && /repeat count/.test(e.message));
});
