/**
 * The checks of a machine scenario's run (DESIGN.md §6 at the machine level): a hazard the machine
 * raised, or a fault of the code it ran. A machine scenario has no tasks to finish, so a run that
 * reaches its instruction limit is a bound, not a violation.
 */
import type { Machine, RunResult } from '../machine/machine.ts';
import { hazardName } from '../machine/events.ts';
import { clean, violation, type Verdict } from './verdict.ts';

export function judgeMachineRun(m: Machine, run: RunResult): Verdict {
  const h = run.hazards[0];
  if (h !== undefined) return violation('hazard', run.hazardSteps[0] ?? m.step, `${hazardName(h)} on vCPU ${h.cpu}`, { cpu: h.cpu, hazard: h });
  if (run.error !== undefined) return violation('machine-fault', m.step, run.error.message);
  if (run.reason === 'misfit') return violation('unfinished', m.step, `the schedule no longer fits: ${run.misfit?.message ?? 'the chooser stopped'}`);
  return clean(m.step);
}
