// The decode cache under copy-on-write forks and after text writes (issue 12, item 4): a fork's
// rewrite neither evicts nor revalidates the entries its original and sibling forks read, and the
// allocation-free fetch after a text write answers as the CMC rule does (SDM 8.1.3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Memory } from '../../src/machine/memory.ts';
import { decodeAt, fetch, type FetchContext } from '../../src/machine/decode-cache.ts';

const TEXT = 0x100000;
// nop; nop; mov eax, 1; ret
const CODE = [0x90, 0x90, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3];

function text(): Memory {
  const m = new Memory();
  m.map(TEXT, 0x1000, 'rx');
  m.writeBytes(TEXT, CODE);
  return m;
}

function context(memory: Memory): FetchContext & { choices: number } {
  return {
    memory,
    fetchHazard: null,
    choices: 0,
    chooseOldNew() {
      this.choices++;
      return 0;
    },
  };
}

test('two forks rewriting one text page keep their own decode entries and leave the original\'s alone', () => {
  const boot = text();
  const mov = decodeAt(boot, TEXT + 2)!;
  const original = boot.page(TEXT)!.decoded![2]!;
  const genBefore = original.gen;
  const a = boot.fork();
  const b = boot.fork();
  a.poke(TEXT + 3, [0x02], 0); // mov eax, 2
  b.poke(TEXT + 0, [0xcc], 1); // the MOV's bytes stay: b revalidates its entry
  assert.equal(decodeAt(a, TEXT + 2)!.bytes[1], 0x02);
  assert.equal(decodeAt(b, TEXT + 2), mov, 'b reuses the original decode of unchanged bytes');
  assert.equal(decodeAt(a, TEXT + 2)!.bytes[1], 0x02, 'b did not evict a');
  assert.equal(original.gen, genBefore, 'revalidating in b did not touch the shared entry');
  assert.equal(boot.page(TEXT)!.decoded![2], original);
  assert.equal(decodeAt(boot, TEXT + 2), mov);
  assert.equal(decodeAt(b, TEXT + 2), mov);
  assert.notEqual(a.page(TEXT)!.decoded, b.page(TEXT)!.decoded);
});

test('after a text write, a vCPU that has not serialized runs untouched instructions and meets the hazard on rewritten ones', () => {
  const m = text();
  const ctx = context(m);
  const before = fetch(ctx, 0, 0, TEXT + 2, [])!;
  m.poke(TEXT + 3, [0x01], 1); // vCPU 1 rewrites a byte of the MOV's immediate (same value)
  m.poke(TEXT + 7, [0xc3], 1); // and the RET
  assert.equal(fetch(ctx, 0, 0, TEXT + 0, []), decodeAt(m, TEXT + 0), 'nop: not rewritten, cached');
  assert.equal(ctx.fetchHazard, null);
  assert.equal(fetch(ctx, 1, 0, TEXT + 2, []), before, 'the writer itself is synchronized with its writes');
  assert.equal(fetch(ctx, 0, 0, TEXT + 2, []), null);
  assert.deepEqual(ctx.fetchHazard, {
    kind: 'cmc-unsynchronized',
    cpu: 0,
    address: TEXT + 2,
    bytes: [0xb8, 0x01, 0x00, 0x00, 0x00],
    unsynchronized: [{ offset: 1, value: 0x01, writer: 1, seq: 1 }],
    serializedAt: 0,
  });
  ctx.fetchHazard = null;
  assert.equal(fetch(ctx, 0, m.textSeq, TEXT + 2, []), before, 'serialized after the writes: runs');
  assert.equal(ctx.fetchHazard, null);
  // A single-byte INT3 at the first byte: a choice, not a hazard.
  m.poke(TEXT + 0, [0xcc], 1);
  const got = fetch(ctx, 0, m.textSeq - 1, TEXT + 0, []);
  assert.equal(ctx.choices, 1);
  assert.equal(got!.bytes[0], 0x90, 'the chooser picked the old instruction');
});

test('forks that rewrite a site the same way share one decode of the new bytes, and a different rewrite gets its own', () => {
  const boot = text();
  decodeAt(boot, TEXT + 2);
  const a = boot.fork(), b = boot.fork(), c = boot.fork();
  for (const m of [a, b]) m.poke(TEXT + 3, [0x05], 0);
  c.poke(TEXT + 3, [0x06], 0);
  const mov5 = decodeAt(a, TEXT + 2)!;
  assert.equal(decodeAt(b, TEXT + 2), mov5);
  assert.equal(decodeAt(c, TEXT + 2)!.bytes[1], 0x06);
  assert.equal(decodeAt(a, TEXT + 2), mov5);
  assert.equal(decodeAt(boot, TEXT + 2)!.bytes[1], 0x01);
});

test('a fork copies a text page\'s write tracking at its first tracked write, not at the copy', () => {
  const boot = text();
  boot.poke(TEXT + 3, [0x01], 1);
  const a = boot.fork();
  a.writeBytes(TEXT + 5, [0x00]); // a loader write: a copy of the page, its tracking still shared
  assert.notEqual(a.page(TEXT), boot.page(TEXT));
  assert.equal(a.page(TEXT)!.seq, boot.page(TEXT)!.seq);
  a.poke(TEXT + 6, [0x00], 0);
  const mine = a.page(TEXT)!, theirs = boot.page(TEXT)!;
  assert.notEqual(mine.seq, theirs.seq);
  assert.deepEqual([mine.writer![3], mine.writer![6], mine.seq![3], mine.seq![6]], [1, 0, 1, 2]);
  assert.deepEqual([theirs.writer![3], theirs.writer![6], theirs.seq![3], theirs.seq![6]], [1, -1, 1, 0]);
});

test('forks meeting one INT3 first-byte write, or one forwarded store, share the decode of the old and forwarded forms', () => {
  const boot = text();
  decodeAt(boot, TEXT + 2);
  const olds = [boot.fork(), boot.fork()].map((m) => {
    const ctx = context(m);
    m.poke(TEXT + 2, [0xcc], 1); // INT3 over the MOV's first byte: the old MOV is a legal outcome
    const got = fetch(ctx, 0, 0, TEXT + 2, []);
    assert.equal(ctx.choices, 1);
    assert.deepEqual([...got!.bytes], [0xb8, 0x01, 0x00, 0x00, 0x00]);
    return got;
  });
  assert.equal(olds[0], olds[1], 'the old instruction is decoded once for the lineage');
  // vCPU 0's own buffered store of the immediate: its fetch forwards it (SDM 8.1.3, self-modifying code).
  const store = { addr: TEXT + 3, size: 1, lo: 0x07, hi: 0, time: 0 };
  const forwarded = [boot.fork(), boot.fork()].map((m) => fetch(context(m), 0, 0, TEXT + 2, [store])!);
  assert.equal(forwarded[0]!.bytes[1], 0x07);
  assert.equal(forwarded[0], forwarded[1], 'the forwarded form is decoded once for the lineage');
  assert.equal(decodeAt(boot, TEXT + 2)!.bytes[1], 0x01, 'memory still holds the original: the cache answers with it');
});
