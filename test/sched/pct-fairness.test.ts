// PCT's bounded fairness (src/sched/pct.ts, issue 9: "correct protocols are clean under every
// strategy"): text-poke-order's vCPU 0 bounces off the INT3 in a loop that never PAUSEs, so
// priority alone keeps the patcher (which stepped aside while spinning for an acknowledgement)
// from ever reading it; every run ended at the step limit. A step left waiting STARVED_STEPS is
// taken, and the actor that kept it waiting drops below all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { PctChooser } from '../../src/sched/pct.ts';
import { buildMachine } from '../../src/cli/scenario/build-machine.ts';
import { readScenarioDoc, validateScenario, type MachineScenario } from '../../src/cli/scenario/load.ts';
import { machineScenarioSchema } from '../../src/cli/scenario/schema.ts';

const file = join(import.meta.dirname, '..', '..', 'scenarios', 'text-poke-order.yaml');

test('PCT finishes the correct text_poke_bp order on every seed: no livelock from the strategy', () => {
  const boot = buildMachine(file, validateScenario<MachineScenario>(file, readScenarioDoc(file), machineScenarioSchema));
  for (let seed = 1; seed <= 30; seed++) {
    const m = boot.machine.fork();
    const r = m.run({ ...boot.run, chooser: new PctChooser({ seed, inject: boot.plans }) });
    assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} after ${r.steps} steps`);
    assert.equal(r.hazards.length, 0);
  }
});
