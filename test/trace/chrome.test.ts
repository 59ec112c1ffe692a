// DESIGN.md §7: a run exports to the Chrome/Perfetto trace-event format, one track per vCPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromeTrace } from '../../src/trace/chrome.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { machine, done, Code, PATCHER, SITE } from '../helpers/site-machine.ts';

test('a hazard run exports thread names per vCPU and a global hazard event', () => {
  const p = new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4);
  const m = machine(p.bytes);
  m.run({ chooser: new RandomChooser(7), until: done });
  const t = chromeTrace(m.events, 2);
  const names = t.traceEvents.filter((e) => e.name === 'thread_name').map((e) => e.args?.name);
  assert.deepEqual(names, ['vCPU 0', 'vCPU 1']);
  const h = t.traceEvents.find((e) => e.cat === 'hazard');
  assert.ok(h);
  assert.equal(h.s, 'g');
  assert.equal(h.name, 'HAZARD cmc-unsynchronized');
  assert.doesNotThrow(() => JSON.parse(JSON.stringify(t)));
});
