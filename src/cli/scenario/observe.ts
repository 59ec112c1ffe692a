/**
 * A machine scenario's `observe:` section as typed observations (src/check/observation.ts): which
 * registers and memory make up an execution's final state, as a litmus test names them.
 */
import type { Observation, MemorySize } from '../../check/observation.ts';
import { observationName } from '../../check/observation.ts';
import { REG_NAMES, type Reg } from '../../x86/registers.ts';
import { ScenarioError } from './errors.ts';
import type { MachineScenario, Num } from './load.ts';

export function observations(file: string, s: MachineScenario, address: (v: Num, what: string) => number): Observation[] {
  const out: Observation[] = [];
  (s.observe?.registers ?? []).forEach((spec, i) => {
    const [cpuText, name] = spec.split(':') as [string, string];
    const cpu = Number(cpuText);
    if (cpu >= s.machine.vcpus) throw new ScenarioError(`${file}: /observe/registers/${i}: there is no vCPU ${cpu} (the machine has ${s.machine.vcpus})`);
    out.push({ kind: 'register', cpu, reg: REG_NAMES.indexOf(name) as Reg });
  });
  (s.observe?.memory ?? []).forEach((m, i) => {
    const size: MemorySize = m.size ?? 4;
    out.push({ kind: 'memory', address: address(m.at, `${file}: /observe/memory/${i}/at`), size, ...(m.name !== undefined ? { name: m.name } : {}) });
  });
  const seen = new Set<string>();
  for (const o of out) {
    const n = observationName(o);
    if (seen.has(n)) throw new ScenarioError(`${file}: /observe: '${n}' is observed twice`);
    seen.add(n);
  }
  return out;
}
