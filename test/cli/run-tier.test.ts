// Issue 12 item 2: the default guest scenario (a hint-triggered pv-lock switch under load) runs
// the same on both execution tiers: the same run, decision log, vCPU states and final guest state,
// under the timed strategy (a per-step observe and continueWith) and under `first`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subjectOf } from '../../src/cli/commands/run-guest.ts';
import { defaultScenarioPath } from '../../src/cli/default-scenario.ts';
import { readScenarioDoc, validateScenario } from '../../src/cli/scenario/load.ts';
import { guestScenarioSchema, type GuestScenario } from '../../src/cli/scenario/guest-schema.ts';
import { TimedChooser } from '../../src/sched/timed.ts';
import { FirstEnabled } from '../../src/machine/chooser.ts';
import type { Tier } from '../../src/machine/machine.ts';

const path = defaultScenarioPath();
const scenario = validateScenario<GuestScenario>(path, readScenarioDoc(path), guestScenarioSchema);

function runOn(tier: Tier, strategy: 'timed' | 'first', seed: number) {
  const exec = subjectOf(path, scenario, { seed, tier }).start(seed);
  const chooser = strategy === 'timed' ? new TimedChooser({ seed, ...(exec.scheduler ? { host: exec.scheduler } : {}) }) : new FirstEnabled();
  const r = exec.run(chooser, { maxInstructions: 400_000 });
  const m = exec.guest.machine;
  return {
    compiled: m.compiledInstructions,
    state: {
      reason: r.run.reason, steps: r.run.steps, instructions: r.run.instructions, hazards: r.run.hazards,
      verdict: r.verdict, finalState: r.finalState, stats: exec.guest.stats,
      vcpus: m.vcpus.map((c) => ({ rip: c.rip, flags: c.flags, lo: [...c.lo], hi: [...c.hi], retired: c.retired, time: c.time, halted: c.halted })),
      decisions: [...m.decisions],
    },
  };
}

for (const [strategy, seed] of [['timed', 1], ['timed', 7], ['first', 1]] as const) {
  test(`the default guest scenario runs the same on both tiers (strategy ${strategy}, seed ${seed})`, () => {
    const a = runOn('interp', strategy, seed), b = runOn('compiled', strategy, seed);
    assert.equal(a.compiled, 0);
    assert.ok(b.compiled > 1000, `the compiled tier ran only ${b.compiled} instructions: the comparison would prove nothing`);
    assert.deepEqual(b.state, a.state);
  });
}
