/**
 * From a validated machine scenario to a ready Machine: memory mapped, code assembled (or hex
 * bytes placed), vCPUs initialised, IDT filled, and the chooser the scenario asks for.
 */
import { Machine, type RunOptions } from '../../machine/machine.ts';
import { PAGE_SIZE } from '../../machine/memory.ts';
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
import { injectionOptions } from './injection-plan.ts';
import type { AddressRange, InjectionOptions } from '../../sched/injection.ts';
import { big, num, type MachineScenario, type Num } from './load.ts';
import { observations } from './observe.ts';
import type { Observation } from '../../check/observation.ts';

export type Strategy = 'timed' | 'random' | 'pct' | 'replay' | 'first';

export interface BuiltMachine {
  machine: Machine;
  /** Label → address, from every `asm` block. */
  labels: Map<string, number>;
  run: Omit<RunOptions, 'chooser'> & { maxInstructions: number };
  /** When the random and PCT strategies spend the budgets (`inject.nmi`, `.irq`, `.preempt`). */
  plans: InjectionOptions;
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

/**
 * Map the scenario's memory regions. Two regions that share a page are refused: pages carry the
 * permissions, so the later one would silently change the earlier one's.
 */
function mapRegions(file: string, m: Machine, regions: MachineScenario['memory']): void {
  const spans = regions.map((r, i) => {
    const at = num(r.at, `${file}: /memory/${i}/at`);
    const size = num(r.size, `${file}: /memory/${i}/size`);
    if (size <= 0) throw new ScenarioError(`${file}: /memory/${i}/size: must be more than 0`);
    if (at + size - 1 >= 0x800000000000 || (at < 0 && at + size > 0)) throw new ScenarioError(`${file}: /memory/${i}: ${r.size} bytes at ${r.at} run past the canonical address range`);
    return { i, first: Math.floor(at / PAGE_SIZE), last: Math.floor((at + size - 1) / PAGE_SIZE) };
  });
  for (const a of spans) {
    for (const b of spans) {
      if (b.i <= a.i || b.first > a.last || a.first > b.last) continue;
      const page = Math.max(a.first, b.first) * PAGE_SIZE;
      throw new ScenarioError(`${file}: /memory/${b.i} overlaps /memory/${a.i} at page 0x${page.toString(16)} (regions are mapped in 4 KiB pages and must not share one)`);
    }
  }
  regions.forEach((r, i) => m.memory.map(num(r.at, ''), num(r.size, ''), r.perms));
}

export function buildMachine(file: string, s: MachineScenario): BuiltMachine {
  if (s.vcpus.length !== s.machine.vcpus) {
    throw new ScenarioError(`${file}: machine.vcpus is ${s.machine.vcpus} but ${s.vcpus.length} vCPU entries are given`);
  }
  const m = new Machine({ vcpus: s.machine.vcpus, tso: s.machine.tso ?? true, stopOnHazard: s.machine.stopOnHazard ?? true });
  mapRegions(file, m, s.memory);
  const labels = new Map<string, number>();
  const blocks = new Map<string, AddressRange>();
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
    if (block.name !== undefined) blocks.set(block.name, { from: at, to: at + bytes.length });
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
  for (const id of inj.cpus ?? []) if (id >= s.machine.vcpus) throw new ScenarioError(`${file}: /inject/cpus: there is no vCPU ${id} (the machine has ${s.machine.vcpus})`);
  if (inj.vector !== undefined && !inj.irqs) throw new ScenarioError(`${file}: /inject/vector: applies to injected interrupts, and inject.irqs is ${inj.irqs ?? 'not set'}`);
  if (inj.cpus !== undefined && !inj.irqs && !inj.nmis) throw new ScenarioError(`${file}: /inject/cpus: names where NMIs and interrupts land, and none are injected`);
  const waitFor = s.run?.stopWhenHalted ?? [];
  for (const id of waitFor) if (id >= s.machine.vcpus) throw new ScenarioError(`${file}: /run/stopWhenHalted: there is no vCPU ${id}`);
  // A code block's name covers the block; a label, the instruction boundary it marks.
  const names = {
    range: (n: string) => { const b = blocks.get(n); if (b) return [b]; const l = labels.get(n); return l === undefined ? undefined : [{ from: l, to: l + 1 }]; },
    known: `code blocks: ${[...blocks.keys()].join(', ') || 'none'}; labels: ${[...labels.keys()].join(', ') || 'none'}`,
  };
  const observe = observations(file, s, (v, what) => {
    const a = addressOrLabel(v, labels, what);
    if (!m.memory.isMapped(a)) throw new ScenarioError(`${what}: ${'0x' + a.toString(16)} is not inside a memory region`);
    return a;
  });
  return {
    machine: m,
    labels,
    plans: injectionOptions(inj, names, s.machine.vcpus, `${file}: /inject`),
    observe,
    run: {
      maxInstructions: s.run?.maxInstructions ?? 1_000_000,
      inject: { nmis: inj.nmis ?? 0, irqs: inj.irqs ?? 0, irqVector: inj.vector ?? 0x20, ...(inj.cpus ? { cpus: inj.cpus } : {}), ...(inj.preemptions ? { preemptions: inj.preemptions } : {}) },
      ...(waitFor.length > 0 ? { until: (mm: Machine) => waitFor.every((id) => mm.vcpus[id]!.halted) } : {}),
    },
  };
}

/** The chooser for a strategy name, a seed, (for replay) a schedule string and (random, PCT) the injection plans. */
export function makeChooser(strategy: Strategy, seed: number, vcpus: number, replay?: string | Schedule, plans: InjectionOptions = {}): Chooser {
  switch (strategy) {
    case 'timed': return new TimedChooser({ seed });
    case 'random': return new RandomChooser(seed, { inject: plans });
    case 'pct': return new PctChooser({ seed, inject: plans });
    case 'first': return new FirstEnabled();
    case 'replay':
      if (replay === undefined) throw new ScenarioError('strategy replay needs a schedule string (--schedule or schedule.replay)');
      return new ReplayChooser(replay, vcpus);
  }
}
