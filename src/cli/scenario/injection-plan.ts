/**
 * How a scenario states when its injection budgets are spent (src/sched/injection.ts): paced over
 * the run, or at a state of a vCPU, e.g.
 *
 *   inject: { nmis: 4, nmi: { when: { cpu: 1, inside: [poke_int3_handler] } } }
 *
 * `inside` names code: a label or named code block of a machine scenario, a symbol, kernel
 * service or `sites` (every patch site) of a guest, or an explicit `{ from, to }` range. The
 * names are resolved here, once, into the address ranges the strategies test.
 */
import type { AddressRange, EventPlan, InjectionCondition, InjectionOptions } from '../../sched/injection.ts';
import { ScenarioError } from './errors.ts';
import { num, type Num } from './load.ts';
import type { Guest } from '../../kernel/guest.ts';

const address = { anyOf: [{ type: 'integer' }, { type: 'string', minLength: 1 }] };
const eventPlan = {
  type: 'object',
  additionalProperties: false,
  properties: {
    count: { type: 'integer', minimum: 1, description: 'how many of the budget this plan spends' },
    pace: { type: 'boolean', description: 'spread the events over the expected run length' },
    when: {
      type: 'object',
      additionalProperties: false,
      required: ['inside'],
      properties: {
        cpu: { type: 'integer', minimum: 0 },
        inside: {
          type: 'array',
          minItems: 1,
          items: {
            anyOf: [
              { type: 'string', minLength: 1 },
              { type: 'object', additionalProperties: false, required: ['from', 'to'], properties: { from: address, to: address } },
            ],
          },
        },
        nmiBlocked: { type: 'boolean', description: 'the vCPU handles an NMI with NMIs still blocked' },
      },
    },
  },
} as const;
const plans = { anyOf: [eventPlan, { type: 'array', minItems: 1, items: eventPlan }] };

/** Schema properties of `inject` beyond the budgets of NMIs and IRQs (machine and guest scenarios). */
export const injectionPlanProperties = {
  preemptions: { type: 'integer', minimum: 0, description: 'how many times the host may deschedule a running vCPU (random, pct)' },
  preemptFor: { type: 'integer', minimum: 1, description: 'mean steps a planned preemption lasts' },
  nmi: plans,
  irq: plans,
  preempt: plans,
} as const;

type InsideSpec = string | { from: Num; to: Num };
interface EventPlanSpec { count?: number; pace?: boolean; when?: { cpu?: number; inside: InsideSpec[]; nmiBlocked?: boolean } }
type PlansSpec = EventPlanSpec | EventPlanSpec[];

/** The scenario's `inject` plans, as written. */
export interface InjectionPlanSpec {
  preemptions?: number;
  preemptFor?: number;
  nmi?: PlansSpec;
  irq?: PlansSpec;
  preempt?: PlansSpec;
}

/** Resolves a name in `inside` to the code it names; undefined when there is no such name (the message lists `known`). */
export interface CodeNames {
  range(name: string): readonly AddressRange[] | undefined;
  readonly known: string;
}

/** The strategies' injection options for a scenario's `inject` (names resolved, checked against the vCPU count). */
export function injectionOptions(spec: InjectionPlanSpec, names: CodeNames, vcpus: number, where: string): InjectionOptions {
  const point = (v: Num, what: string): number => {
    if (typeof v === 'string' && !/^-?(0x[0-9a-fA-F_]+|[0-9_]+)$/.test(v)) {
      const r = names.range(v);
      if (r === undefined || r.length !== 1) throw new ScenarioError(`${what}: '${v}' names no single address (${names.known})`);
      return r[0]!.from;
    }
    return num(v, what);
  };
  const condition = (w: NonNullable<EventPlanSpec['when']>, at: string): InjectionCondition => {
    if (w.cpu !== undefined && w.cpu >= vcpus) throw new ScenarioError(`${at}/cpu: there is no vCPU ${w.cpu}`);
    const inside = w.inside.flatMap((x, i): readonly AddressRange[] => {
      if (typeof x !== 'string') {
        const from = point(x.from, `${at}/inside/${i}/from`), to = point(x.to, `${at}/inside/${i}/to`);
        if (!(to > from)) throw new ScenarioError(`${at}/inside/${i}: an empty range (to must be above from)`);
        return [{ from, to }];
      }
      const r = names.range(x);
      if (r === undefined) throw new ScenarioError(`${at}/inside/${i}: no code named '${x}' (${names.known})`);
      return r;
    });
    return { inside, ...(w.cpu !== undefined ? { cpu: w.cpu } : {}), ...(w.nmiBlocked !== undefined ? { nmiBlocked: w.nmiBlocked } : {}) };
  };
  const plan = (p: EventPlanSpec, at: string): EventPlan => ({
    ...(p.count !== undefined ? { count: p.count } : {}),
    ...(p.pace !== undefined ? { pace: p.pace } : {}),
    ...(p.when !== undefined ? { when: condition(p.when, `${at}/when`) } : {}),
  });
  const list = (p: PlansSpec | undefined, at: string): EventPlan[] | undefined =>
    p === undefined ? undefined : Array.isArray(p) ? p.map((x, i) => plan(x, `${at}/${i}`)) : [plan(p, at)];
  const nmi = list(spec.nmi, `${where}/nmi`), irq = list(spec.irq, `${where}/irq`), preempt = list(spec.preempt, `${where}/preempt`);
  return {
    ...(nmi ? { nmi } : {}),
    ...(irq ? { irq } : {}),
    ...(preempt ? { preempt } : {}),
    ...(spec.preemptFor !== undefined ? { preemptFor: spec.preemptFor } : {}),
  };
}

/**
 * Names in a guest: a kernel service (its entry: the #BP handler, multi_cpu_stop), a symbol (up to
 * the next symbol), or `sites` (every patch site's bytes).
 */
export function guestCodeNames(g: Guest): CodeNames {
  const services = new Map<string, number>();
  for (const [address, svc] of g.machine.services) services.set(svc.name, address);
  const starts = [...new Set(g.image.symbols.values())].sort((a, b) => a - b);
  return {
    range(name) {
      if (name === 'sites') return g.image.sites.map((s) => ({ from: s.address, to: s.address + s.len }));
      const svc = services.get(name);
      if (svc !== undefined) return [{ from: svc, to: svc + 1 }];
      const at = g.image.symbols.get(name);
      if (at === undefined) return undefined;
      const next = starts.find((a) => a > at);
      return [{ from: at, to: next ?? at + 1 }];
    },
    known: `'sites', a kernel service (${[...services.keys()].join(', ')}) or a symbol of the guest image`,
  };
}
