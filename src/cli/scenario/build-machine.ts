/**
 * From a validated machine scenario to a ready Machine: memory mapped, code assembled (or hex
 * bytes placed), vCPUs initialised, IDT filled, and the chooser the scenario asks for.
 */
import { Machine, type RunOptions } from '../../machine/machine.ts';
import { Reg, REG_NAMES, Flag } from '../../x86/registers.ts';
import type { Chooser } from '../../machine/chooser.ts';
import { FirstEnabled } from '../../machine/chooser.ts';
import { RandomChooser } from '../../sched/random.ts';
import { TimedChooser } from '../../sched/timed.ts';
import { ReplayChooser } from '../../sched/replay.ts';
import type { Schedule } from '../../sched/schedule.ts';
import { PctChooser } from '../../sched/pct.ts';
import { assembleText } from '../../x86/asm-text.ts';
import { ScenarioError } from './errors.ts';
import { big, num, type MachineScenario, type Num } from './load.ts';
import { observations } from './observe.ts';
import type { Observation } from '../../check/observation.ts';

export type Strategy = 'timed' | 'random' | 'pct' | 'replay' | 'first';

export interface BuiltMachine {
  machine: Machine;
  /** Label → address, from every `asm` block. */
  labels: Map<string, number>;
  run: Omit<RunOptions, 'chooser'> & { maxInstructions: number };
  /** What the final state is made of (the scenario's `observe:`). */
  observe: Observation[];
}

function parseHex(text: string, what: string): number[] {
  const t = text.replace(/\s+/g, '');
  if (t.length % 2 !== 0 || /[^0-9a-fA-F]/.test(t)) throw new ScenarioError(`${what}: hex must be pairs of hex digits`);
  const out: number[] = [];
  for (let i = 0; i < t.length; i += 2) out.push(Number.parseInt(t.slice(i, i + 2), 16));
  return out;
}

function addressOrLabel(v: Num, labels: Map<string, number>, what: string): number {
  if (typeof v === 'string' && !/^-?(0x[0-9a-fA-F_]+|[0-9_]+)$/.test(v)) {
    const a = labels.get(v);
    if (a === undefined) throw new ScenarioError(`${what}: no label '${v}' in the code (labels: ${[...labels.keys()].join(', ') || 'none'})`);
    return a;
  }
  return num(v, what);
}

export function buildMachine(file: string, s: MachineScenario): BuiltMachine {
  if (s.vcpus.length !== s.machine.vcpus) {
    throw new ScenarioError(`${file}: machine.vcpus is ${s.machine.vcpus} but ${s.vcpus.length} vCPU entries are given`);
  }
  const m = new Machine({ vcpus: s.machine.vcpus, tso: s.machine.tso ?? true, stopOnHazard: s.machine.stopOnHazard ?? true });
  s.memory.forEach((r, i) => m.memory.map(num(r.at, `${file}: /memory/${i}/at`), num(r.size, `${file}: /memory/${i}/size`), r.perms));
  const labels = new Map<string, number>();
  s.code.forEach((block, i) => {
    const where = `${file}: /code/${i}${block.name ? ` (${block.name})` : ''}`;
    const at = num(block.at, `${where}/at`);
    let bytes: number[];
    if (block.hex !== undefined) bytes = parseHex(block.hex, where);
    else {
      const out = assembleText(block.asm!, at, where);
      bytes = Array.from(out.bytes);
      for (const [k, v] of out.labels) {
        if (labels.has(k)) throw new ScenarioError(`${where}: label '${k}' is defined twice`);
        labels.set(k, v);
      }
    }
    for (let k = 0; k < bytes.length; k++) {
      if (!m.memory.isMapped(at + k)) throw new ScenarioError(`${where}: code runs into unmapped memory at 0x${(at + k).toString(16)}; add a memory region`);
    }
    m.memory.writeBytes(at, bytes);
  });
  (s.data ?? []).forEach((d, i) => {
    const at = num(d.at, `${file}: /data/${i}/at`);
    const bytes = parseHex(d.hex, `${file}: /data/${i}`);
    if (!m.memory.isMapped(at) || !m.memory.isMapped(at + bytes.length - 1)) throw new ScenarioError(`${file}: /data/${i}: not inside a memory region`);
    m.memory.writeBytes(at, bytes);
  });
  s.vcpus.forEach((v, i) => {
    const c = m.vcpu(i);
    const where = `${file}: /vcpus/${i}`;
    c.rip = addressOrLabel(v.rip, labels, `${where}/rip`);
    if (v.rsp !== undefined) c.setAddr(Reg.RSP, num(v.rsp, `${where}/rsp`));
    if (v.gsBase !== undefined) c.gsBase = num(v.gsBase, `${where}/gsBase`);
    if (v.interrupts) c.flags |= Flag.IF;
    if (v.halted) c.halted = true;
    for (const [name, value] of Object.entries(v.regs ?? {})) {
      c.setReg64(REG_NAMES.indexOf(name) as Reg, big(value, `${where}/regs/${name}`));
    }
  });
  for (const [vec, handler] of Object.entries(s.idt ?? {})) {
    const vector = vec.startsWith('0x') ? Number.parseInt(vec, 16) : Number(vec);
    if (vector > 255) throw new ScenarioError(`${file}: /idt: vector ${vec} is above 255`);
    m.setIdt(vector, addressOrLabel(handler, labels, `${file}: /idt/${vec}`));
  }
  const inj = s.inject ?? {};
  const waitFor = s.run?.stopWhenHalted ?? [];
  for (const id of waitFor) if (id >= s.machine.vcpus) throw new ScenarioError(`${file}: /run/stopWhenHalted: there is no vCPU ${id}`);
  const observe = observations(file, s, (v, what) => {
    const a = addressOrLabel(v, labels, what);
    if (!m.memory.isMapped(a)) throw new ScenarioError(`${what}: ${'0x' + a.toString(16)} is not inside a memory region`);
    return a;
  });
  return {
    machine: m,
    labels,
    observe,
    run: {
      maxInstructions: s.run?.maxInstructions ?? 1_000_000,
      inject: { nmis: inj.nmis ?? 0, irqs: inj.irqs ?? 0, irqVector: inj.vector ?? 0x20, ...(inj.cpus ? { cpus: inj.cpus } : {}) },
      ...(waitFor.length > 0 ? { until: (mm: Machine) => waitFor.every((id) => mm.vcpus[id]!.halted) } : {}),
    },
  };
}

/** The chooser for a strategy name, a seed and (for replay) a schedule. */
export function makeChooser(strategy: Strategy, seed: number, vcpus: number, replay?: string | Schedule): Chooser {
  switch (strategy) {
    case 'timed': return new TimedChooser({ seed });
    case 'random': return new RandomChooser(seed);
    case 'pct': return new PctChooser({ seed });
    case 'first': return new FirstEnabled();
    case 'replay':
      if (replay === undefined) throw new ScenarioError('strategy replay needs a schedule string (--schedule or schedule.replay)');
      return new ReplayChooser(replay, vcpus);
  }
}
