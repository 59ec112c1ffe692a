// `npm run bench -- switch --quick` (bench/switch.ts), run once: the structure of its figures, not
// their values — one row per protocol and guest size, v1 stops every vCPU while v2 and
// text_poke_bp stop none, and what more sites cost each protocol. No wall-clock time is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, PROTOCOLS, type Protocol, type SwitchRow } from '../../bench/switch.ts';
import { TP_VEC_MAX } from '../../src/kernel/text-poke-loc.ts';

const result = run({ json: true, quick: true });

async function rows(): Promise<SwitchRow[]> {
  return (await result).rows as SwitchRow[];
}

function row(all: SwitchRow[], protocol: Protocol, vcpus: number, sites: number): SwitchRow {
  const r = all.find((x) => x.protocol === protocol && x.vcpus === vcpus && x.sites === sites);
  assert.ok(r, `a row for ${protocol}, ${vcpus} vCPUs, ${sites} sites`);
  return r;
}

test('quick grid: one ok row per protocol on 4 vCPUs with exactly 10 and 100 patched sites', async () => {
  const all = await rows();
  assert.equal(all.length, 2 * PROTOCOLS.length);
  for (const p of PROTOCOLS) for (const sites of [10, 100]) assert.equal(row(all, p, 4, sites).ok, true);
  assert.deepEqual(JSON.parse(JSON.stringify(await result)), await result, 'the result is plain JSON');
});

test('v1 stops every vCPU for the stop_machine window; v2 and text_poke_bp stop none', async () => {
  const all = await rows();
  for (const sites of [10, 100]) {
    const v1 = row(all, 'v1', 4, sites);
    assert.ok(v1.stopped_us_min > 0, `v1, ${sites} sites: every vCPU was stopped (least ${v1.stopped_us_min} µs)`);
    assert.ok(v1.stopped_us_total >= 4 * v1.stopped_us_min);
    for (const p of ['v2', 'text_poke_bp'] as const) {
      const r = row(all, p, 4, sites);
      assert.deepEqual([r.stopped_us_min, r.stopped_us_max, r.stopped_us_total], [0, 0, 0], `${p} stopped no vCPU`);
      assert.ok(r.hold_us_max < v1.hold_us_max, `${p}: no vCPU held in a handler as long as v1's stop (${r.hold_us_max} vs ${v1.hold_us_max} µs)`);
    }
  }
});

test('more sites: v1 acknowledges four states per site with no fewer IPIs, v2 no fewer IPIs, text_poke_bp more batches', async () => {
  const all = await rows();
  const [v1a, v1b] = [row(all, 'v1', 4, 10), row(all, 'v1', 4, 100)];
  assert.deepEqual([v1a.sync_rounds, v1b.sync_rounds], [1 + 4 * 10, 1 + 4 * 100], 'the stop, then PATCH_SYNC_0/1/2/DONE per site');
  assert.ok(v1b.ipis >= v1a.ipis && v1a.ipis === 3, 'one STOP IPI per other vCPU; states are acknowledged in memory');
  assert.ok(v1b.latency_us > v1a.latency_us && v1b.stopped_us_max > v1a.stopped_us_max, 'the window grows with the sites');
  const [v2a, v2b] = [row(all, 'v2', 4, 10), row(all, 'v2', 4, 100)];
  assert.ok(v2b.ipis >= v2a.ipis && v2a.ipis >= 4 * 3, 'four text_poke_syncs to three vCPUs at least');
  assert.ok(v2a.int3_hits + v2b.int3_hits > 0, 'vCPUs met v2\'s INT3s and had the old ops emulated');
  for (const sites of [10, 100]) {
    const tp = row(all, 'text_poke_bp', 4, sites);
    const batches = Math.ceil(sites / TP_VEC_MAX);
    assert.equal(tp.batches, batches);
    assert.equal(tp.ipis, 3 * 3 * batches, 'three syncs per batch, each an IPI to the three other vCPUs');
  }
  for (const r of all) if (r.protocol !== 'v2') assert.equal(r.retries, 0);
});
