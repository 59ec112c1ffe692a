/**
 * A machine scenario as a Subject (src/check/subject.ts): the booted machine is the snapshot, each
 * execution runs on a copy-on-write fork of it, and the verdict comes from what the machine
 * itself judges — a hazard (CMC, return into rewritten code), a fault, or a run that did not reach
 * the scenario's end (its `stopWhenHalted` vCPUs) within the instruction bound. The final state
 * is what the scenario observes (src/check/observation.ts); coverage is the code labels reached.
 */
import type { Machine } from '../machine/machine.ts';
import type { Chooser } from '../machine/chooser.ts';
import { ScheduleError } from '../sched/schedule.ts';
import { observe, formatState, whereStopped, type Observation } from './observation.ts';
import { violation, type Verdict } from './verdict.ts';
import { judgeMachineRun } from './judge-machine.ts';
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

/**
 * The verdict of a machine-scenario run: the machine's own checks (src/check/judge-machine.ts),
 * and a run that did not reach the scenario's end (its `stopWhenHalted` vCPUs) within the bound
 * fails step-limit. A schedule that does not fit is the user's input, not a finding: it is thrown.
 */
export function judgeMachineExecution(m: Machine, r: RunResult, hasEnd: boolean): Verdict {
  if (r.reason === 'misfit') throw new ScheduleError(r.misfit?.message ?? 'the schedule does not fit the run');
  const v = judgeMachineRun(m, r);
  if (v.ok && r.reason === 'limit' && hasEnd) return violation('step-limit', m.step, `the scenario's end was not reached within ${r.instructions.toLocaleString('en-US')} instructions`);
  return v;
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
    /** The booted machine has no services, host hooks or probes: nothing but the machine decides the future. */
    private readonly machineOnly: boolean,
  ) {
    const reached = (this.reached = new Uint8Array(labels.length));
    // A probe writes nothing a vCPU can see, so coverage does not change the run (src/machine/machine.ts).
    // One probeMany, not a probe per label: each registration rebuilds the machine's probe bitmap.
    if (labels.length > 0) machine.probeMany(labels.map(([a], k) => [a, () => void (reached[k] = 1)] as const));
  }

  /** Coverage flags decide nothing; anything else registered on the machine may keep state of its own. */
  stateHash(): number | undefined {
    return this.machineOnly ? 0 : undefined;
  }

  run(chooser: Chooser, limits?: ExecutionLimits): ExecutionResult {
    if (this.ran) throw new Error('an Execution runs once; start another from the subject');
    this.ran = true;
    const l = { ...this.spec.limits, ...limits };
    const m = this.machine;
    const run = m.run({
      chooser,
      ...(l.maxInstructions !== undefined ? { maxInstructions: l.maxInstructions } : {}),
      ...(l.inject !== undefined ? { inject: l.inject } : {}),
      ...(this.spec.until !== undefined ? { until: this.spec.until } : {}),
    });
    const verdict = judgeMachineExecution(m, run, this.spec.until !== undefined);
    const finalState = this.spec.observe.length > 0 ? formatState(observe(m, this.spec.observe)) : whereStopped(m);
    const coverage = this.labels.filter((_, k) => this.reached[k] === 1).map(([, name]) => `label ${name}`);
    return { verdict, run, finalState, coverage };
  }
}

export function machineSubject(spec: MachineSubjectSpec): Subject {
  const labels = labelsByAddress(spec.labels ?? new Map());
  const m = spec.machine;
  const machineOnly = m.services.size === 0 && Object.keys(m.hooks).length === 0 && m.probeAddresses().length === 0;
  return {
    name: spec.name,
    vcpus: spec.machine.vcpus.length,
    limits: spec.limits,
    start: () => new MachineExecution(spec.machine.fork(), spec, labels, machineOnly),
  };
}
