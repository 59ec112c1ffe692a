// Every stock broken variant is found by spin-aware PCT (issue 9), depth 10, change points and
// injections over the subject's measured run length. Each test sweeps seeds from 1 and asserts
// that the checks catch the variant within SEEDS; the first failing seed as measured when the
// test was written is noted beside each (a change of guest code or cost model may move it).
// text_poke_bp without INT3 needs a window of a few steps (another vCPU fetching the site while
// the patcher is between its byte writes) that PCT's coarse interleavings did not hit in 100
// seeds at depth 3 or 10; stated as a conditional host preemption of the patcher inside its
// batch (plus three paced ones), PCT finds it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PctChooser } from '../../src/sched/pct.ts';
import { measureRunLength } from '../../src/sched/run-length.ts';
import { BROKEN_CASES, type ChooserFor } from './broken-variants.ts';

const DEPTH = 10;
/** How many seeds each variant may take. */
const SEEDS = 40;

/** First failing seed of each variant under PCT at depth 10 (at depth 3 in the comment). */
const FIRST_FAILING: Record<string, number> = {
  'text_poke_bp no-int3, the patcher preempted inside the batch, 3 more preemptions paced': 14, // depth 3: none in 100
  'text_poke_bp no-sync': 1, // depth 3: 14
  'text_poke_bp skip-one (vCPU 2)': 3, // depth 3: 1
  'text_poke_bp first-before-tail': 12, // depth 3: 59 (before its steps were derived from Linux's: 6)
  'text_poke_bp one op at a time (kick)': 4, // depth 3: 7
  'v1 #BP handler without the state machine': 6, // depth 3: 56
  'v1 IRET from the #BP handler in NMI': 1, // depth 3: 1 (an NMI planned inside the #BP handler)
  'v1 to a ticket lock': 1, // depth 3: 1
  'v2 no-map': 2, // depth 3: 3
  'v2 no-barrier': 2, // depth 3: 8
};

for (const c of BROKEN_CASES) {
  const seed = FIRST_FAILING[c.name];
  if (seed === undefined) continue; // text_poke_bp no-int3 without a plan: see the header
  test(`spin-aware PCT finds broken ${c.name} within ${SEEDS} seeds (first at seed ${seed} when measured)`, (t) => {
    const length = measureRunLength((l) => c.run(0, (s, inject) => new PctChooser({ seed: s, length: l, ...(inject ? { inject } : {}) })).steps);
    const pct: ChooserFor = (s, inject) => new PctChooser({ seed: s, length, depth: DEPTH, ...(inject ? { inject } : {}) });
    let first: number | undefined;
    for (let s = 1; s <= SEEDS && first === undefined; s++) if (c.run(s, pct).found) first = s;
    t.diagnostic(`first failing seed: ${first ?? 'none'}`);
    assert.notEqual(first, undefined, `not found in seeds 1..${SEEDS}`);
  });
}

test('every stock broken variant but the planless no-INT3 one has a PCT test', () => {
  const untested = BROKEN_CASES.map((c) => c.name).filter((n) => FIRST_FAILING[n] === undefined);
  assert.deepEqual(untested, ['text_poke_bp no-int3']);
});
