// A schedule string expands to at most MAX_SCHEDULE_DECISIONS decisions (issue 13): a huge repeat
// count is a ScheduleError naming the token, not an array V8 cannot allocate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_SCHEDULE_DECISIONS, ScheduleError, parseSchedule } from '../../src/sched/schedule.ts';

test('a schedule longer than the bound is refused at the token that crosses it', () => {
  assert.equal(parseSchedule('s0*5 s1*3', 2).length, 8);
  assert.throws(() => parseSchedule(`s0*${MAX_SCHEDULE_DECISIONS + 1}`, 2), (e: unknown) => e instanceof ScheduleError && /token 1 .*more than 10,000,000 decisions/.test(e.message));
  assert.throws(() => parseSchedule('s0 s1*99999999999999999999', 2), (e: unknown) => e instanceof ScheduleError && /token 2/.test(e.message));
  assert.throws(() => parseSchedule('s0*0', 2), (e: unknown) => e instanceof ScheduleError && /at least 1/.test(e.message));
});
