/**
 * From a scenario file to the Subject the explorer drives (src/check/subject.ts): what `check`
 * builds once per process and each worker builds once for itself. A machine scenario becomes a
 * machine subject; a guest scenario the guest subject `pvpatch run` forks (src/check/guest-subject.ts),
 * whose executions report the switch's protocol phases as coverage.
 */
import { machineSubject } from '../../check/machine-subject.ts';
import type { GuestSubject } from '../../check/guest-subject.ts';
import type { Execution, Subject } from '../../check/subject.ts';
import type { SwitchProtocol } from '../../patching/hint-switch.ts';
import type { StockVariant } from '../../patching/variants.ts';
import type { ProtocolModule } from '../protocol-file.ts';
import { ScenarioError } from './errors.ts';
import { flagName } from '../flags.ts';
import { subjectOf } from '../commands/run-guest.ts';
import { buildMachine } from './build-machine.ts';
import { guestScenarioSchema, type GuestScenario } from './guest-schema.ts';
import { readScenarioDoc, validateScenario, type MachineScenario } from './load.ts';
import { machineScenarioSchema } from './schema.ts';
import { linuxScenarioSubject } from './linux-subject.ts';

/** A guest scenario has a top-level `guest:` section; anything else is a machine scenario. */
export function isGuestScenario(doc: unknown): boolean {
  return typeof doc === 'object' && doc !== null && 'guest' in doc;
}

export interface SubjectFlags {
  /** Guest scenarios with a switch: the protocol instead of the scenario's. */
  readonly protocol?: SwitchProtocol;
  /** A stock broken variant instead of the stock protocol (src/patching/variants.ts). */
  readonly variant?: StockVariant;
  /** A user's protocol module, loaded (--protocol-file). */
  readonly protocolFile?: ProtocolModule;
}

/** Coverage of a guest execution: each protocol phase its switch reached (`v2 barrier-open`, ...). */
function withPhases(subject: GuestSubject): Subject {
  return {
    name: subject.name,
    vcpus: subject.vcpus,
    limits: subject.limits,
    ...(subject.focusStep !== undefined ? { focusStep: subject.focusStep } : {}),
    start(seed?: number): Execution {
      const exec = subject.start(seed);
      return {
        machine: exec.machine,
        run(chooser, limits) {
          const r = exec.run(chooser, limits);
          const sw = exec.switchResult;
          const phases = new Set(sw?.switches.flatMap((s) => s.phases.map((p) => `${sw.protocol} ${p.phase}`)) ?? []);
          return { ...r, coverage: [...phases].sort() };
        },
      };
    },
  };
}

export function scenarioSubject(path: string, flags: SubjectFlags = {}): Subject {
  const doc = readScenarioDoc(path);
  if (isGuestScenario(doc)) {
    const gs = validateScenario<GuestScenario>(path, doc, guestScenarioSchema);
    if (gs.guest.kernel === 'debian-6.1') return linuxScenarioSubject(path, gs, flags);
    // The boot's workload seed is the scenario's, as `pvpatch run` boots it; seeded executions re-seed it.
    return withPhases(subjectOf(path, gs, {
      seed: gs.schedule?.seed ?? 1,
      strategy: 'random',
      ...(flags.protocol ? { protocol: flags.protocol } : {}),
      ...(flags.variant ? { variant: flags.variant } : {}),
      ...(flags.protocolFile ? { protocolFile: flags.protocolFile } : {}),
    }));
  }
  const guestOnly = Object.keys(flags).filter((k) => (flags as Record<string, unknown>)[k] !== undefined);
  if (guestOnly.length > 0) throw new ScenarioError(`${path}: ${guestOnly.map(flagName).join(', ')}: only guest scenarios (with a guest: section and a switch) use it`);
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
