// DESIGN.md §2, Intel SDM 8.1.3, seeds 001/003: vCPU 1 rewrites a 7-byte site that vCPU 0 executes
// in a loop. Without synchronization vCPU 0 may run a torn mix of bytes; in text_poke_bp order
// (0xCC first, sync, tail, sync, first byte, sync) every fetch is legal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RandomChooser } from '../../src/sched/random.ts';

import { Code, machine, done, textPokeBpOrder, SITE, PATCHER, SYNC, NEW_SITE } from '../helpers/site-machine.ts';

test('rewriting a 7-byte site with plain stores while another vCPU runs it raises cmc-unsynchronized', () => {
  const p = new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4);
  const m = machine(p.bytes);
  const r = m.run({ chooser: new RandomChooser(7), maxInstructions: 100_000, until: done });
  assert.equal(r.reason, 'hazard');
  const h = r.hazards[0]!;
  assert.equal(h.kind, 'cmc-unsynchronized');
  assert.ok(h.kind === 'cmc-unsynchronized');
  assert.equal(h.cpu, 0);
  assert.equal(h.address, SITE);
  assert.ok(h.unsynchronized.every((b) => b.writer === 1));
});

test('the unsynchronized rewrite is caught on every seed of a sweep', () => {
  const p = new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4);
  for (let seed = 1; seed <= 50; seed++) {
    const r = machine(p.bytes).run({ chooser: new RandomChooser(seed), maxInstructions: 100_000, until: done });
    assert.equal(r.reason, 'hazard', `seed ${seed}`);
  }
});

test('the same rewrite in text_poke_bp order raises no hazard on any seed of a 1,000-seed sweep', () => {
  let sawInt3 = 0;
  for (let seed = 1; seed <= 1000; seed++) {
    const m = machine(textPokeBpOrder());
    const r = m.run({ chooser: new RandomChooser(seed), maxInstructions: 200_000, until: done });
    assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${JSON.stringify(r.hazards[0] ?? r.error?.message)}`);
    assert.deepEqual(Array.from(m.memory.readBytes(SITE, 7)), NEW_SITE);
    if (m.events.some((e) => e.type === 'exception' && e.vector === 3)) sawInt3++;
  }
  assert.ok(sawInt3 > 0, 'some seeds make vCPU 0 hit the INT3 barrier');
});

test('skipping the sync after the tail is caught', () => {
  const p = new Code(PATCHER);
  p.movb(SITE, 0xcc).call(SYNC).movl(SITE + 1, 0x00000001).movw(SITE + 5, 0x9066); // no sync here
  p.movb(SITE, NEW_SITE[0]!).call(SYNC).emit(0xf4);
  let caught = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const r = machine(p.bytes).run({ chooser: new RandomChooser(seed), maxInstructions: 200_000, until: done });
    if (r.reason === 'hazard') caught++;
  }
  assert.ok(caught > 0);
});
