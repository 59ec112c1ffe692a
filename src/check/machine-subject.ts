/**
 * A machine scenario as a Subject (src/check/subject.ts): the booted machine is the snapshot, each
 * execution runs on a copy-on-write fork of it, and the verdict comes from what the machine
 * itself judges — a hazard (CMC, return into rewritten code), a fault, or a run that did not reach
 * the scenario's end (its `stopWhenHalted` vCPUs) within the instruction bound. The final state
 * is what the scenario observes (src/check/observation.ts); coverage is the code labels reached.
 */
import type { Machine } from '../machine/machine.ts';
import type { Chooser } from '../machine/chooser.ts';
import type { Hazard } from '../machine/events.ts';
import { ScheduleError } from '../sched/schedule.ts';
import { hexAddress } from '../x86/format.ts';
import { observe, formatState, whereStopped, type Observation } from './observation.ts';
import { clean, violation, type Verdict } from './verdict.ts';
import type { Execution, ExecutionLimits, ExecutionResult, Subject } from './subject.ts';
import type { RunResult } from '../machine/machine.ts';

export interface MachineSubjectSpec {
  readonly name: string;
  /** The booted machine: never run itself, only forked. */
  readonly machine: Machine;
  readonly limits: ExecutionLimits;
  /** The scenario's end (its `stopWhenHalted` vCPUs all halted); without one, all-halted or the bound ends a run. */
  readonly until?: (m: Machine) => boolean;
  /** What the final state is made of; none: where each vCPU stopped. */
  readonly observe: readonly Observation[];
  /** Code labels (label → address): coverage counts the executions in which some vCPU ran each. */
  readonly labels?: ReadonlyMap<string, number>;
}

/** One line naming a hazard (the CLI prints the paragraph from the hazard itself). */
export function hazardLine(h: Hazard): string {
  switch (h.kind) {
    case 'cmc-unsynchronized': return `cmc-unsynchronized: vCPU ${h.cpu} fetched ${hexAddress(h.address)} with bytes another vCPU wrote after its last serializing instruction`;
    case 'return-into-rewritten': return `return-into-rewritten: vCPU ${h.cpu} returned to ${hexAddress(h.returnAddress)}, rewritten since the call`;
    case 'non-atomic-switch': return `non-atomic-switch: vCPU ${h.cpu} started ${h.op} at ${hexAddress(h.address)} while vCPU ${h.other.cpu} runs ${h.other.op}`;
  }
}

/** The verdict of a machine-scenario run. A schedule that does not fit is the user's input, not a finding: it is thrown. */
export function judgeMachineRun(r: RunResult, hasEnd: boolean, stepsAtStart: number): Verdict {
  const end = stepsAtStart + r.steps;
  const h = r.hazards[0];
  if (h !== undefined) return violation('hazard', r.hazardSteps[0] ?? end, hazardLine(h), { cpu: h.cpu, hazard: h });
  if (r.reason === 'error') {
    if (r.error instanceof ScheduleError) throw r.error;
    return violation('machine-fault', end, r.error?.message ?? 'the machine stopped with an error');
  }
  if (r.reason === 'limit' && hasEnd) return violation('step-limit', end, `the scenario's end was not reached within ${r.instructions.toLocaleString('en-US')} instructions`);
  return clean(end);
}

/** Label names by address (two labels at one address are one coverage point, `a/b`), sorted by name. */
function labelsByAddress(labels: ReadonlyMap<string, number>): [number, string][] {
  const out = new Map<number, string>();
  for (const [name, a] of [...labels].sort((x, y) => (x[0] < y[0] ? -1 : 1))) out.set(a, out.has(a) ? `${out.get(a)}/${name}` : name);
  return [...out].sort((x, y) => (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
}

class MachineExecution implements Execution {
  /** One flag per label address: the probe's hot path sets a byte, the names are made once at the end. */
  private readonly reached: Uint8Array;
  private ran = false;

  constructor(
    readonly machine: Machine,
    private readonly spec: MachineSubjectSpec,
    private readonly labels: readonly (readonly [number, string])[],
  ) {
    const reached = (this.reached = new Uint8Array(labels.length));
    // A probe writes nothing a vCPU can see, so coverage does not change the run (src/machine/machine.ts).
    labels.forEach(([a], k) => machine.probe(a, () => void (reached[k] = 1)));
  }

  run(chooser: Chooser, limits?: ExecutionLimits): ExecutionResult {
    if (this.ran) throw new Error('an Execution runs once; start another from the subject');
    this.ran = true;
    const l = { ...this.spec.limits, ...limits };
    const m = this.machine;
    const stepsAtStart = m.step;
    const run = m.run({
      chooser,
      ...(l.maxInstructions !== undefined ? { maxInstructions: l.maxInstructions } : {}),
      ...(l.inject !== undefined ? { inject: l.inject } : {}),
      ...(this.spec.until !== undefined ? { until: this.spec.until } : {}),
    });
    const verdict = judgeMachineRun(run, this.spec.until !== undefined, stepsAtStart);
    const finalState = this.spec.observe.length > 0 ? formatState(observe(m, this.spec.observe)) : whereStopped(m);
    const coverage = this.labels.filter((_, k) => this.reached[k] === 1).map(([, name]) => `label ${name}`);
    return { verdict, run, finalState, coverage };
  }
}

export function machineSubject(spec: MachineSubjectSpec): Subject {
  const labels = labelsByAddress(spec.labels ?? new Map());
  return {
    name: spec.name,
    vcpus: spec.machine.vcpus.length,
    limits: spec.limits,
    start: () => new MachineExecution(spec.machine.fork(), spec, labels),
  };
}
