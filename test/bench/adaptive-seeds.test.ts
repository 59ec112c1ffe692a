// Issue 13: every bench adaptive figure comes from at least 5 seeds. On a small configuration
// (ratio 3, one under- and one over-commit phase of 0.3 and 3 ms, 200 µs host slices), the rows
// carry per-phase medians and min–max spreads of every guest, adaptive / best static from the
// medians, and one value per seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sweep, type AdaptiveRow } from '../../bench/adaptive.ts';
import { median, spread } from '../../bench/spread.ts';

const SEEDS = [1, 2, 3, 4, 5];
let result: Awaited<ReturnType<typeof sweep>> | undefined;
async function measured() {
  result ??= await sweep({ base: { phases: 2, underMs: 0.3, overMs: 3, sliceUs: 200 }, ratios: [3], seeds: SEEDS, children: false });
  return result;
}

test('a median is the middle value, or the mean of the two middle ones', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3, values: [3, 1, 2] });
});

test('bench adaptive rows: one per phase, each with median, min and max of every guest over 5 seeds', async () => {
  const { rows, per_seed } = await measured();
  assert.deepEqual(rows.map((r) => [r.ratio, r.phase, r.commit]), [[3, 0, 'under'], [3, 1, 'over']]);
  for (const r of rows) {
    assert.deepEqual(r.seeds, SEEDS);
    for (const k of ['native_acq_per_sim_s', 'pv_acq_per_sim_s', 'adaptive_acq_per_sim_s'] as const) {
      const s = r[k];
      assert.equal(s.values.length, 5, k);
      assert.ok(s.min <= s.median && s.median <= s.max, `${k}: ${JSON.stringify(s)}`);
      const mine = per_seed.filter((x) => x.phase === r.phase).map((x) => x[k]);
      assert.deepEqual(s.values, mine, `${k} holds each seed's value`);
      assert.equal(s.median, median(mine));
    }
    assert.equal(r.adaptive_over_best_per_seed.values.length, 5);
    for (const g of ['native', 'pv', 'adaptive'] as const) assert.equal(r.preemptions[g].values.length, 5);
  }
});

test('adaptive / best static comes from the medians, not from one seed', async () => {
  const { rows } = await measured();
  for (const r of rows as AdaptiveRow[]) {
    const best = Math.max(r.native_acq_per_sim_s.median, r.pv_acq_per_sim_s.median);
    assert.equal(r.adaptive_over_best, +(r.adaptive_acq_per_sim_s.median / best).toFixed(3));
    assert.equal(r.best_static, r.native_acq_per_sim_s.median >= r.pv_acq_per_sim_s.median ? 'native' : 'pv');
  }
});

test('the seeds differ: the over-commit phase does not give five identical rates', async () => {
  const { rows } = await measured();
  const over = rows.find((r) => r.commit === 'over')!;
  assert.ok(new Set(over.native_acq_per_sim_s.values).size > 1, JSON.stringify(over.native_acq_per_sim_s));
});

test("Spearman's ρ: +1 for the same order, -1 for the reverse, null for a constant", async () => {
  const { spearman } = await import('../../bench/spread.ts');
  assert.equal(spearman([1, 2, 3, 4], [10, 20, 30, 45]), 1);
  assert.equal(spearman([1, 2, 3, 4], [9, 7, 5, 1]), -1);
  assert.equal(spearman([1, 1, 1], [1, 2, 3]), null);
});
