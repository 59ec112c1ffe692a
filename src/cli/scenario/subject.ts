/**
 * From a scenario file to the Subject the explorer drives (src/check/subject.ts): what `check`
 * builds once per process and each worker builds once for itself.
 */
import { machineSubject } from '../../check/machine-subject.ts';
import type { Subject } from '../../check/subject.ts';
import { buildMachine } from './build-machine.ts';
import { ScenarioError } from './errors.ts';
import { readScenarioDoc, validateScenario, type MachineScenario } from './load.ts';
import { machineScenarioSchema } from './schema.ts';

/** A guest scenario has a top-level `guest:` section; anything else is a machine scenario. */
export function isGuestScenario(doc: unknown): boolean {
  return typeof doc === 'object' && doc !== null && 'guest' in doc;
}

export function scenarioSubject(path: string): Subject {
  const doc = readScenarioDoc(path);
  if (isGuestScenario(doc)) throw new ScenarioError(`${path}: check explores machine scenarios; guest scenarios need the guest subject, which this build does not have yet (use pvpatch run --seeds)`);
  const scenario = validateScenario<MachineScenario>(path, doc, machineScenarioSchema);
  const boot = buildMachine(path, scenario);
  const { until, maxInstructions, inject } = boot.run;
  return machineSubject({
    name: path,
    machine: boot.machine,
    limits: { maxInstructions, ...(inject !== undefined ? { inject } : {}) },
    ...(until !== undefined ? { until } : {}),
    observe: boot.observe,
    labels: boot.labels,
  });
}
