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

/**
 * The revokes' switches (native -> PV, started in an over-commit phase): the one that landed in its
 * phase, and the one whose barrier stayed open until the host stopped over-committing. With seed 1
 * the first revoke (phase 1) is the latter and the second (phase 3) the former; which revoke meets
 * the limit is the schedule's, so the tests find each by what happened.
 */
function revokes(a: GuestRun) {
  const toPv = a.switches.map((s, i) => ({ s, i, phase: a.phases[2 * (i >> 1) + 1]! })).filter(({ s }) => s.to === 'pv');
  const landed = toPv.find(({ s, phase }) => s.phases.find((p) => p.phase === 'done')!.time < phase.end);
  const open = toPv.find(({ s, phase }) => s.phases.find((p) => p.phase === 'flip')!.time >= phase.end);
  return { landed, open };
}

test('the adaptive guest switches at every hint change: native -> PV at each revoke, PV -> native at the grant, no retries', () => {
  const { adaptive } = measured();
  assert.deepEqual(adaptive.switches.map((s) => [s.from, s.to, s.ok, s.retries]), [['native', 'pv', true, 0], ['pv', 'native', true, 0], ['native', 'pv', true, 0]]);
  const { landed, open } = revokes(adaptive);
  assert.ok(landed !== undefined && open !== undefined, 'one revoke\'s switch landed within its phase, the other\'s barrier stayed open');
  assert.deepEqual([open.i, landed.i], [0, 2], 'seed 1: the first revoke meets the limit, the second lands');
  const [start, done] = span(landed.s);
  assert.ok(start >= landed.phase.start && done < landed.phase.end, `the switch ran within its phase (${ms(start).toFixed(3)}..${ms(done).toFixed(3)} ms)`);
  assert.equal(landed.phase.flavor, 'pv');
});

test('a revoke shows v2\'s limit under over-commit: the barrier stays open while vCPUs are descheduled, the switch lands once the host stops over-committing', () => {
  const { adaptive } = measured();
  const { open } = revokes(adaptive);
  const s = open!.s, phase = open!.phase;
  const [start] = span(s), flip = s.phases.find((p) => p.phase === 'flip')!.time;
  const barrier = s.phases.find((p) => p.phase === 'barrier-open')!.time;
  assert.ok(start >= phase.start && start < phase.end, 'started within the phase');
  assert.ok(barrier < phase.end && flip >= phase.end, `barrier open at ${ms(barrier).toFixed(3)} ms, flipped at ${ms(flip).toFixed(3)} ms, after the phase ended at ${ms(phase.end).toFixed(3)} ms`);
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

// No test says the adaptive guest beats the static native one in the phase where it switched: on
// one seed that is the over-commit workload's mode (rates follow the host's preemptions, README
// "bench adaptive"), not the switch's doing, and with 6-byte sites seed 1 no longer shows it.
test('in the over-commit phase where the barrier stayed open, the adaptive guest does worse than the static native one', () => {
  const { native, adaptive } = measured();
  const k = adaptive.phases.indexOf(revokes(adaptive).open!.phase);
  const [a, n] = [adaptive.phases[k]!.acquisitions, native.phases[k]!.acquisitions];
  assert.ok(a < n, `phase ${k}: adaptive ${a}, native ${n}`);
});
