/**
 * A Subject over a machine scenario, for the DPOR tests: boots the scenario once, forks the
 * machine per execution, judges hazards and faults, and observes the registers the test names.
 * (The CLI's machine-scenario Subject lives with `pvpatch check`; this one is the tests' own.)
 */
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { buildMachine } from '../../src/cli/scenario/build-machine.ts';
import { validateScenario, type MachineScenario } from '../../src/cli/scenario/load.ts';
import { machineScenarioSchema } from '../../src/cli/scenario/schema.ts';
import type { Chooser } from '../../src/machine/chooser.ts';
import { Reg } from '../../src/x86/registers.ts';
import type { Execution, ExecutionLimits, Subject } from '../../src/check/subject.ts';
import { clean, violation } from '../../src/check/verdict.ts';

/** Observed registers: [vCPU, register] pairs, printed in the final state. */
export type Observe = readonly (readonly [number, Reg])[];

export function scenarioSubject(name: string, yamlText: string, observe: Observe): Subject {
  const scenario = validateScenario<MachineScenario>(name, parseYaml(yamlText), machineScenarioSchema);
  const boot = buildMachine(name, scenario);
  const defaults = boot.run;
  return {
    name,
    vcpus: boot.machine.vcpus.length,
    limits: { maxInstructions: defaults.maxInstructions, ...(defaults.inject ? { inject: defaults.inject } : {}) },
    start(): Execution {
      const machine = boot.machine.fork();
      return {
        machine,
        // Nothing but the machine decides the future (no services, hooks or probes): DPOR may cache.
        stateHash: () => 0,
        run(chooser: Chooser, limits: ExecutionLimits = {}) {
          const run = machine.run({
            chooser,
            maxInstructions: limits.maxInstructions ?? defaults.maxInstructions,
            ...(limits.inject ?? defaults.inject ? { inject: limits.inject ?? defaults.inject } : {}),
            ...(defaults.until ? { until: defaults.until } : {}),
          });
          const verdict =
            run.reason === 'hazard'
              ? violation('hazard', run.hazardSteps[0] ?? machine.step, run.hazards[0]!.kind, { cpu: run.hazards[0]!.cpu, hazard: run.hazards[0]! })
              : run.reason === 'error'
                ? violation('machine-fault', machine.step, run.error!.message)
                : run.reason === 'limit'
                  ? violation('step-limit', machine.step, 'the run hit its instruction limit')
                  : clean(machine.step);
          const finalState = observe.map(([cpu, r]) => `${cpu}:${Reg[r]}=${machine.vcpus[cpu]!.getReg64(r)}`).join(' ');
          return { verdict, run, finalState };
        },
      };
    },
  };
}

export function scenarioFile(path: string, observe: Observe): Subject {
  return scenarioSubject(path, readFileSync(path, 'utf8'), observe);
}

/** A two-vCPU x86-TSO litmus scenario: `cpu0` and `cpu1` are each vCPU's code, `extra` more scenario keys. */
export const litmus = (name: string, cpu0: string, cpu1: string, extra = '') => `
name: ${name}
machine: { vcpus: 2, tso: true }
memory:
  - { at: 0x1000, size: 0x1000, perms: rx }
  - { at: 0x10000, size: 0x1000, perms: rw }
code:
  - at: 0x1000
    asm: |
      cpu0:
${cpu0.trim().split('\n').map((l) => `        ${l.trim()}`).join('\n')}
      cpu1:
${cpu1.trim().split('\n').map((l) => `        ${l.trim()}`).join('\n')}
${extra}
vcpus:
  - { rip: cpu0 }
  - { rip: cpu1 }
`;
