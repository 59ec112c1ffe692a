// Memory pages are created when first touched, within a resident limit (issue 13): a scenario may
// map a 1 GiB region, and only what its run touches costs host memory; past the limit the run
// gets a MachineConfigError that says so, not an out-of-memory kill.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Memory, PAGE_SIZE, Perm } from '../../src/machine/memory.ts';
import { MachineConfigError } from '../../src/machine/errors.ts';

test('a 1 GiB region costs nothing until touched, then one page per touched page', () => {
  const m = new Memory();
  m.map(0x100000, 0x40000000, 'rw');
  assert.equal(m.pageCount, 0);
  assert.ok(m.isMapped(0x100000) && m.isMapped(0x100000 + 0x40000000 - 1) && !m.isMapped(0x100000 + 0x40000000));
  m.writeBytes(0x100000 + 0x20000000, [1, 2, 3]);
  assert.equal(m.pageCount, 1);
  assert.deepEqual([...m.readBytes(0x100000 + 0x20000000, 4)], [1, 2, 3, 0]);
  assert.equal(m.page(0x100000)!.perms, Perm.R | Perm.W);
});

test('touching past the resident limit is a MachineConfigError naming the limit', () => {
  const m = new Memory(undefined, undefined, 8 * PAGE_SIZE);
  m.map(0, 0x40000000, 'rw');
  for (let i = 0; i < 8; i++) m.writeBytes(i * PAGE_SIZE, [i]);
  assert.throws(() => m.writeBytes(8 * PAGE_SIZE, [1]), (e: unknown) => e instanceof MachineConfigError && /resident memory limit/.test(e.message));
});

test('a later map of untouched pages wins, as it does for touched ones; forks see the same regions', () => {
  const m = new Memory();
  m.map(0x1000, 0x3000, 'rw');
  m.writeBytes(0x1000, [7]);
  m.map(0x1000, 0x2000, 'rx');
  assert.equal(m.page(0x1000)!.perms, Perm.R | Perm.X, 'a touched page changes');
  assert.equal(m.page(0x2000)!.perms, Perm.R | Perm.X, 'an untouched page is created with the newer permissions');
  assert.equal(m.page(0x3000)!.perms, Perm.R | Perm.W);
  const child = m.fork();
  child.writeBytes(0x3010, [9]);
  assert.equal(child.readBytes(0x3010, 1)[0], 9);
  assert.equal(m.readBytes(0x3010, 1)[0], 0, 'the parent does not see the child\'s page');
});

test('mapContents copies a page of its bytes in only when the page is first touched, in a fork too', () => {
  const m = new Memory();
  const bytes = Uint8Array.from({ length: 3 * PAGE_SIZE - 100 }, (_, i) => (i * 7) & 0xff);
  m.mapContents(0x10000 + 50, bytes, 'rx');
  assert.equal(m.pageCount, 0, 'nothing is resident yet');
  assert.deepEqual([...m.readBytes(0x10000 + 48, 4)], [0, 0, bytes[0], bytes[1]], 'zeros before the contents, then the contents');
  assert.equal(m.pageCount, 1);
  const child = m.fork();
  const end = 0x10000 + 50 + bytes.length;
  assert.deepEqual([...child.readBytes(end - 2, 4)], [bytes[bytes.length - 2], bytes[bytes.length - 1], 0, 0], 'a fork materialises its own pages from the same contents');
  assert.equal(m.page(0x11000)!.perms, Perm.R | Perm.X);
});

test('mapContents over a page already touched writes the contents into it', () => {
  const m = new Memory();
  m.map(0x20000, PAGE_SIZE, 'rw');
  m.writeBytes(0x20000, [9, 9]);
  m.mapContents(0x20001, Uint8Array.of(1, 2), 'r');
  assert.deepEqual([...m.readBytes(0x20000, 4)], [9, 1, 2, 0]);
  assert.equal(m.page(0x20000)!.perms, Perm.R);
});
