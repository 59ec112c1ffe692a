// How the worker pool cuts a seeded exploration into chunks (src/check/pool.ts): from the worker
// time finished chunks took, each next chunk aims at CHUNK_TARGET_MS, within bounds, and the last
// ones share what is left between the workers. Timings are given, not measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHUNK_TARGET_MS, ChunkSizer, FIRST_CHUNK } from '../../src/check/pool.ts';

test('chunks start small, then grow or shrink to about CHUNK_TARGET_MS of a worker\'s time', () => {
  const fast = new ChunkSizer();
  assert.equal(fast.next(2), FIRST_CHUNK);
  fast.finished(8, 0.8); // 0.1 ms an execution: a machine-level scenario
  assert.equal(fast.next(2), CHUNK_TARGET_MS / 0.1);
  const slow = new ChunkSizer();
  slow.finished(8, 8 * 60); // 60 ms an execution: a guest switch
  assert.equal(slow.next(2), 1);
  const instant = new ChunkSizer();
  instant.finished(8, 0);
  assert.equal(instant.next(2), 4096, 'bounded above');
});

test('with a count budget, no chunk takes more than its share of two rounds of what is left', () => {
  const s = new ChunkSizer();
  s.finished(8, 0.08); // 10 µs an execution: 5,000 would fill a chunk
  assert.equal(s.next(2, 1000), 250);
  assert.equal(s.next(4, 3), 1);
  assert.equal(s.next(2, Infinity), 4096);
});
