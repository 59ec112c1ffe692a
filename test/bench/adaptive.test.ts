// bench adaptive's facts on one small run (fixed seed): 8 vCPUs, the host alternating 8 pCPUs
// with REALTIME granted and 3 pCPUs with it revoked (ratio 3, where PV wins in bench locks), host
// slices of 200 µs and pause-loop exiting (KVM's default) so that a switch under over-commit (four IPI syncs and the barrier, each
// waiting for every vCPU to be scheduled) can fit in a 10 ms phase. The adaptive guest switches its
// pv_lock_ops with v2 at the hint changes; the static native guest gets the same host changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runGuest, type AdaptiveConfig, type GuestRun } from '../../bench/_adaptive-guest.ts';

const CFG: AdaptiveConfig = { ratio: 3, phases: 4, underMs: 0.5, overMs: 10, sliceUs: 200, seed: 1 };
let runs: { native: GuestRun; adaptive: GuestRun } | undefined;
function measured(): { native: GuestRun; adaptive: GuestRun } {
  runs ??= { native: runGuest('native', CFG), adaptive: runGuest('adaptive', CFG) };
  return runs;
}
const ms = (cycles: number) => cycles / 3e6;

test('the host alternates under- and over-commit: 8, 3, 8, 3 pCPUs', () => {
  const { native, adaptive } = measured();
  for (const g of [native, adaptive]) {
    assert.deepEqual(g.phases.map((p) => [p.commit, p.pcpus]), [['under', 8], ['over', 3], ['under', 8], ['over', 3]]);
  }
});

const span = (s: GuestRun['switches'][number]) => [s.phases[0]!.time, s.phases.find((p) => p.phase === 'done')!.time] as const;

test('the adaptive guest switches at the first hint changes: PV when REALTIME is revoked, native when it is granted', () => {
  const { adaptive } = measured();
  assert.deepEqual(adaptive.phases.slice(0, 3).map((p) => p.flavor), ['native', 'pv', 'native'], 'flavour at the end of phases 0-2');
  assert.deepEqual(adaptive.switches.map((s) => [s.from, s.to, s.ok, s.retries]), [['native', 'pv', true, 0], ['pv', 'native', true, 0], ['native', 'pv', true, 0]]);
  for (const i of [0, 1]) {
    const [start, done] = span(adaptive.switches[i]!), phase = adaptive.phases[i + 1]!;
    assert.ok(start >= phase.start && done < phase.end, `switch ${i} ran within phase ${i + 1} (${ms(start).toFixed(3)}..${ms(done).toFixed(3)} ms)`);
  }
});

test('the second revoke shows v2\'s limit under over-commit: the barrier stays open while vCPUs are descheduled, the switch lands once the host stops over-committing', () => {
  const { adaptive } = measured();
  const s = adaptive.switches[2]!, phase = adaptive.phases[3]!;
  const [start] = span(s), flip = s.phases.find((p) => p.phase === 'flip')!.time;
  const open = s.phases.find((p) => p.phase === 'barrier-open')!.time;
  assert.ok(start >= phase.start && start < phase.end, 'started within the phase');
  assert.ok(open < phase.end && flip >= phase.end, `barrier open at ${ms(open).toFixed(3)} ms, flipped at ${ms(flip).toFixed(3)} ms, after the phase ended at ${ms(phase.end).toFixed(3)} ms`);
  assert.equal(phase.flavor, 'native');
});

test('switching back to native in under-commit takes microseconds; to PV under over-commit, host rotations', () => {
  const { adaptive } = measured();
  const took = adaptive.switches.map((s) => ms(s.phases.find((p) => p.phase === 'done')!.time - s.phases[0]!.time));
  assert.ok(took[1]! < 0.1, `pv -> native in ${took[1]} ms`);
  assert.ok(took[0]! > 0.6 && took[2]! > 0.6, `native -> pv in ${took[0]} and ${took[2]} ms (at least one rotation of 8 vCPUs on 3 pCPUs at 200 µs slices)`);
});

test('every lock checks out and no hazard happened in either guest', () => {
  const { native, adaptive } = measured();
  for (const g of [native, adaptive]) assert.deepEqual([g.locks_ok, g.hazards], [true, 0], g.kind);
});

test('in the over-commit phase where it switched, the adaptive guest takes its lock more often than the static native one', () => {
  const { native, adaptive } = measured();
  const [a, n] = [adaptive.phases[1]!.acquisitions, native.phases[1]!.acquisitions];
  assert.ok(a > n, `phase 1: adaptive ${a}, native ${n}`);
});

test('in the over-commit phase where the barrier stayed open, the adaptive guest does worse than the static native one', () => {
  const { native, adaptive } = measured();
  const [a, n] = [adaptive.phases[3]!.acquisitions, native.phases[3]!.acquisitions];
  assert.ok(a < n, `phase 3: adaptive ${a}, native ${n}`);
});
