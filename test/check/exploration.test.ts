// Shards of one exploration merge into the unsharded result; shards of different explorations,
// a missing shard or a repeated one are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { scenarioSubject } from '../../src/cli/scenario/subject.ts';
import { explore } from '../../src/check/explore.ts';
import { mergeShards } from '../../src/check/exploration.ts';
import { seededStrategy } from '../../src/check/seeded.ts';

const NO_SYNC = join(import.meta.dirname, '..', '..', 'scenarios', 'cmc-no-sync.yaml');
const budget = { kind: 'executions', executions: 25 } as const;

test('shards 0..3 of 25 executions merge into the unsharded result, first violation included', () => {
  const s = scenarioSubject(NO_SYNC);
  const whole = explore(s, seededStrategy('random'), { budget, seed: 3 });
  const shards = [3, 1, 0, 2].map((index) => explore(s, seededStrategy('random'), { budget, seed: 3, shard: { index, count: 4 } }));
  assert.deepEqual(shards.map((r) => r.executions).sort(), [6, 6, 6, 7]);
  assert.equal(JSON.stringify(mergeShards(shards)), JSON.stringify(whole));
});

test('merge refuses shards of different explorations, a missing shard and a repeated one', () => {
  const s = scenarioSubject(NO_SYNC);
  const part = (index: number, seed = 1) => explore(s, seededStrategy('random'), { budget: { kind: 'executions', executions: 4 }, seed, shard: { index, count: 2 } });
  assert.throws(() => mergeShards([part(0), part(1, 2)]), /shards of different explorations \(seed 1 vs 2\)/);
  assert.throws(() => mergeShards([part(1)]), /shard 0\/2 missing/);
  assert.throws(() => mergeShards([part(0), part(0), part(1)]), /shard 0\/2 is given twice/);
});
