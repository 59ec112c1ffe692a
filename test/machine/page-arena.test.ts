// Page buffers cut from shared slabs (src/machine/page-arena.ts): each is zeroed and its own, even
// when many forks copy the same page from one slab, and a request too big for a slab gets its own buffer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FIRST_SLAB_BYTES, PageArena, SLAB_BYTES } from '../../src/machine/page-arena.ts';
import { Memory, PAGE_SIZE } from '../../src/machine/memory.ts';

test('buffers from one arena are zeroed and never overlap, across slabs', () => {
  const a = new PageArena();
  const got = Array.from({ length: (2 * SLAB_BYTES) / PAGE_SIZE + 3 }, () => a.bytes(PAGE_SIZE));
  got.forEach((b, i) => {
    assert.ok(b.every((x) => x === 0));
    b.fill(i & 0xff);
  });
  got.forEach((b, i) => assert.ok(b.every((x) => x === (i & 0xff)), `buffer ${i} kept its bytes`));
  const f = a.float64(PAGE_SIZE), w = a.int16(PAGE_SIZE);
  f.fill(1.5);
  w.fill(-1);
  assert.ok(f.every((x) => x === 1.5) && got.at(-1)!.every((x) => x === ((got.length - 1) & 0xff)));
  assert.equal(a.bytes(SLAB_BYTES).buffer.byteLength, SLAB_BYTES, 'a big request is a buffer of its own');
});

test('forks writing one page each keep their own copy, and the original keeps its bytes', () => {
  const boot = new Memory();
  boot.map(0x10000, PAGE_SIZE, 'rw');
  boot.writeBytes(0x10000, [1, 2, 3]);
  const forks = Array.from({ length: 100 }, () => boot.fork());
  forks.forEach((m, i) => m.writeBytes(0x10001, [i]));
  forks.forEach((m, i) => assert.deepEqual([...m.readBytes(0x10000, 3)], [1, i, 3]));
  assert.deepEqual([...boot.readBytes(0x10000, 3)], [1, 2, 3]);
});

test('an arena starts with a small slab and doubles up to SLAB_BYTES: a memory that is never forked pays for what it touches', () => {
  const a = new PageArena();
  const sizes: number[] = [];
  for (let i = 0; i < 200; i++) {
    const b = a.bytes(PAGE_SIZE).buffer.byteLength;
    if (sizes.at(-1) !== b) sizes.push(b);
  }
  assert.deepEqual(sizes.slice(0, 4), [FIRST_SLAB_BYTES, 2 * FIRST_SLAB_BYTES, 4 * FIRST_SLAB_BYTES, 8 * FIRST_SLAB_BYTES]);
  assert.equal(sizes.at(-1), SLAB_BYTES);
});
