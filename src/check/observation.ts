/**
 * Observed final state, as a litmus test states it (herdtools7's `0:rax=0; x=1;`): the registers
 * and memory a scenario names, read when an execution ends. The text form is canonical (the order
 * the scenario names them), so distinct final states are distinct strings, and it parses back, so
 * a condition (src/check/condition.ts) can be judged on an aggregate or a merged shard file.
 */
import type { Machine } from '../machine/machine.ts';
import { REG_NAMES, type Reg } from '../x86/registers.ts';
import { hexAddress } from '../x86/format.ts';

export type MemorySize = 1 | 2 | 4 | 8;

export type Observation =
  | { readonly kind: 'register'; readonly cpu: number; readonly reg: Reg }
  /** `name` is how a condition refers to it (herd's location name); default `[0x...]`. */
  | { readonly kind: 'memory'; readonly address: number; readonly size: MemorySize; readonly name?: string };

/** How a state and a condition name an observation: `0:rax`, `x`, `[0x10000]`. */
export function observationName(o: Observation): string {
  return o.kind === 'register' ? `${o.cpu}:${REG_NAMES[o.reg]}` : o.name ?? `[${hexAddress(o.address)}]`;
}

function readMemory(m: Machine, address: number, size: MemorySize): bigint {
  const bytes = m.memory.readBytes(address, size);
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}

/** The observed values, in order. Memory is read as committed (every buffer is empty once all vCPUs halted). */
export function observe(m: Machine, obs: readonly Observation[]): [string, bigint][] {
  return obs.map((o) => [observationName(o), o.kind === 'register' ? m.vcpu(o.cpu).getReg64(o.reg) : readMemory(m, o.address, o.size)]);
}

/** The canonical text of a final state: `0:rax=0; 1:rax=1; x=1`. */
export function formatState(values: readonly (readonly [string, bigint])[]): string {
  return values.map(([k, v]) => `${k}=${v}`).join('; ');
}

/** Where every vCPU stopped, for a scenario that names nothing to observe: `0:rip=0x1006 halted; 1:rip=...`. */
export function whereStopped(m: Machine): string {
  return m.vcpus.map((c) => `${c.id}:rip=${hexAddress(c.rip)}${c.halted ? ' halted' : ''}`).join('; ');
}

/** The values of a state text made by formatState (an unparsable part is skipped: a where-stopped state has no values). */
export function parseState(text: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const part of text.split('; ')) {
    const eq = part.lastIndexOf('=');
    if (eq <= 0) continue;
    const v = part.slice(eq + 1);
    if (!/^-?(0x[0-9a-f]+|[0-9]+)$/.test(v)) continue;
    out.set(part.slice(0, eq), BigInt(v));
  }
  return out;
}
