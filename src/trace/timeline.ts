/**
 * A run's events as a timeline (DESIGN.md §7): per-vCPU slices that nest (handlers from delivery
 * to IRET, kernel services from entry to return, the spans of higher layers such as a lock held,
 * halts until the wake-up), flows from an IPI or a kick to its delivery, counters (store-buffer
 * depth, acquisitions), instants (hazards, hypercalls, old/new fetches), and tracks above the
 * vCPUs for a protocol's phases. The Chrome exporter and the HTML report both draw from it.
 * Time is the machine's step number.
 */
import { hazardName, type Hazard, type MachineEvent } from '../machine/events.ts';
import { StepKind, type RecentStep } from '../machine/step-ring.ts';

/** What a slice is; a layer's own span category (e.g. `lock-held`) passes through as it is. */
export type SliceCategory = 'step' | 'drain' | 'handler' | 'slowpath' | 'stop-machine' | 'int3-handler' | 'patch' | 'service' | 'halted' | 'phase' | (string & {});

export interface Slice {
  /** vCPU id, or vcpus + i for the i-th extra track. */
  track: number;
  name: string;
  cat: SliceCategory;
  begin: number;
  /** Exclusive; begin == end for an instantaneous step. */
  end: number;
  /** Nesting depth on its track (0 = outermost). */
  depth: number;
  args?: Record<string, string | number>;
}

export type FlowKind = 'ipi' | 'nmi-ipi' | 'kick';

export interface Flow {
  id: number;
  kind: FlowKind;
  from: { cpu: number; step: number };
  to: { cpu: number; step: number };
  label: string;
}

export interface Instant {
  cpu: number;
  step: number;
  name: string;
  cat: MachineEvent['type'];
  /** A hazard: shown across every track. */
  global: boolean;
  args: Record<string, unknown>;
}

export interface CounterSeries {
  cpu: number;
  name: 'store buffer' | 'acquisitions';
  points: [step: number, value: number][];
}

/** An extra track above the vCPUs: a protocol's phases, given by the layer that ran it. */
export interface PhaseTrack {
  name: string;
  spans: { name: string; begin: number; end: number; cat?: SliceCategory }[];
}

export interface Timeline {
  vcpus: number;
  /** One past the last step with an event. */
  end: number;
  trackNames: string[];
  slices: Slice[];
  flows: Flow[];
  instants: Instant[];
  counters: CounterSeries[];
}

export interface TimelineOptions {
  /** The last step of the run (slices still open close there). */
  end?: number;
  /** A hazard's explanation for a reader (src/cli/hazard-text.ts), put on its instant. */
  explain?: (h: Hazard) => string;
  phases?: PhaseTrack[];
  /** The last steps of the run (Machine.recentSteps): one slice each, named by `stepName`. */
  recent?: readonly RecentStep[];
  stepName?: (rip: number) => string;
}

function hex(a: number): string {
  return '0x' + BigInt.asUintN(64, BigInt(a)).toString(16);
}

const KVM_HC_KICK_CPU = 5;
const VECTOR_NAMES: Record<number, string> = { 0: '#DE', 3: '#BP', 6: '#UD' };

function serviceCategory(name: string): SliceCategory {
  if (name.includes('slowpath')) return 'slowpath';
  if (name === 'multi_cpu_stop') return 'stop-machine';
  if (name.includes('int3')) return 'int3-handler';
  if (name.startsWith('text_poke') || name === 'do_sync_core') return 'patch';
  return 'service';
}

interface Open { slice: Slice; kind: 'handler' | 'service' | 'span' | 'halted' }

/** Build the timeline of `events` on `vcpus` vCPUs. */
export function buildTimeline(events: readonly MachineEvent[], vcpus: number, opts: TimelineOptions = {}): Timeline {
  const slices: Slice[] = [];
  const flows: Flow[] = [];
  const instants: Instant[] = [];
  const stacks: Open[][] = Array.from({ length: vcpus }, () => []);
  const depthCounter: CounterSeries[] = Array.from({ length: vcpus }, (_, cpu) => ({ cpu, name: 'store buffer', points: [] }));
  const acqCounter: CounterSeries[] = Array.from({ length: vcpus }, (_, cpu) => ({ cpu, name: 'acquisitions', points: [] }));
  const pendingIpis: { from: number; step: number; vector: number; nmi: boolean }[][] = Array.from({ length: vcpus }, () => []);
  let lastKick: { cpu: number; step: number } | undefined;
  let last = 0;

  const open = (cpu: number, kind: Open['kind'], name: string, cat: SliceCategory, step: number, args?: Slice['args']) => {
    const st = stacks[cpu]!;
    const slice: Slice = { track: cpu, name, cat, begin: step, end: step, depth: st.length, ...(args ? { args } : {}) };
    st.push({ slice, kind });
    slices.push(slice);
  };
  /** Close the innermost open slice matching `pred` and every slice inside it (they cannot outlive it). */
  const close = (cpu: number, step: number, pred: (o: Open) => boolean): boolean => {
    const st = stacks[cpu]!;
    let i = st.length - 1;
    while (i >= 0 && !pred(st[i]!)) i--;
    if (i < 0) return false;
    while (st.length > i) st.pop()!.slice.end = step;
    return true;
  };
  const marker = (cpu: number, step: number, name: string, cat: SliceCategory) =>
    slices.push({ track: cpu, name, cat, begin: step, end: step, depth: stacks[cpu]!.length });
  const flow = (kind: FlowKind, from: { cpu: number; step: number }, to: { cpu: number; step: number }, label: string) =>
    flows.push({ id: flows.length + 1, kind, from, to, label });

  const recent = opts.recent ?? [];
  let r = 0;
  /** The steps before `step` from the ring, each a one-step slice inside whatever is open then. */
  const stepsUpTo = (step: number) => {
    for (; r < recent.length && recent[r]!.step < step; r++) {
      const s = recent[r]!;
      if (s.cpu < 0 || s.cpu >= vcpus) continue;
      const name = s.kind === StepKind.Drain ? 'drain a store' : s.kind === StepKind.Nmi ? 'NMI injected' : s.kind === StepKind.Irq ? 'IRQ injected' : s.kind === StepKind.Preempt ? 'host deschedules' : s.kind === StepKind.Resume ? 'host resumes' : opts.stepName?.(s.rip) ?? hex(s.rip);
      slices.push({ track: s.cpu, name, cat: s.kind === StepKind.Instruction ? 'step' : 'drain', begin: s.step, end: s.step + 1, depth: stacks[s.cpu]!.length, args: { rip: hex(s.rip) } });
      last = Math.max(last, s.step);
    }
  };
  for (const e of events) {
    stepsUpTo(e.step);
    last = Math.max(last, e.step);
    const cpu = e.cpu;
    if (cpu < 0 || cpu >= vcpus) continue;
    switch (e.type) {
      case 'interrupt':
      case 'nmi': {
        const nmi = e.type === 'nmi';
        const name = nmi ? 'NMI' : `irq ${hex(e.vector)}`;
        const q = pendingIpis[cpu]!;
        const k = q.findIndex((p) => p.nmi === nmi && (nmi || p.vector === e.vector));
        open(cpu, 'handler', name, 'handler', e.step, { rip: hex(e.rip) });
        if (k >= 0) {
          const p = q.splice(k, 1)[0]!;
          flow(nmi ? 'nmi-ipi' : 'ipi', { cpu: p.from, step: p.step }, { cpu, step: e.step }, nmi ? 'NMI IPI' : `IPI ${hex(p.vector)}`);
        }
        break;
      }
      case 'exception':
        open(cpu, 'handler', VECTOR_NAMES[e.vector] ?? `exception ${e.vector}`, 'handler', e.step, { rip: hex(e.rip) });
        break;
      case 'iret':
        if (!close(cpu, e.step, (o) => o.kind === 'handler')) marker(cpu, e.step, 'iret', 'service');
        break;
      case 'service-enter':
        open(cpu, 'service', e.name, serviceCategory(e.name), e.step);
        break;
      case 'service-exit':
        close(cpu, e.step, (o) => o.kind === 'service' && o.slice.name === e.name);
        break;
      case 'span':
        if (e.edge === 'begin') {
          open(cpu, 'span', e.name, e.category, e.step, e.args);
          if (e.category === 'lock-held') {
            const c = acqCounter[cpu]!;
            c.points.push([e.step, (c.points[c.points.length - 1]?.[1] ?? 0) + 1]);
          }
        } else close(cpu, e.step, (o) => o.kind === 'span' && o.slice.name === e.name);
        break;
      case 'halt':
        open(cpu, 'halted', 'halted', 'halted', e.step, { rip: hex(e.rip) });
        break;
      case 'wake':
        close(cpu, e.step, (o) => o.kind === 'halted');
        if (e.reason === 'kick' && lastKick && lastKick.step === e.step) {
          marker(cpu, e.step, 'woken by kick', 'handler');
          flow('kick', lastKick, { cpu, step: e.step }, `kick vCPU ${cpu}`);
        }
        break;
      case 'ipi':
        if (e.target >= 0 && e.target < vcpus) pendingIpis[e.target]!.push({ from: cpu, step: e.step, vector: e.vector, nmi: e.nmi });
        marker(cpu, e.step, `${e.nmi ? 'NMI' : 'IPI'} → vCPU ${e.target}`, 'handler');
        break;
      case 'store-buffer':
        depthCounter[cpu]!.points.push([e.step, e.depth]);
        break;
      case 'hypercall':
        if (e.nr === KVM_HC_KICK_CPU) {
          lastKick = { cpu, step: e.step };
          marker(cpu, e.step, 'KVM_HC_KICK_CPU', 'service');
        }
        instants.push({ cpu, step: e.step, name: `${e.kind} ${e.nr}`, cat: e.type, global: false, args: {} });
        break;
      case 'hazard':
        instants.push({
          cpu, step: e.step, name: `HAZARD ${hazardName(e.hazard)}`, cat: e.type, global: true,
          args: { ...e.hazard, ...(opts.explain ? { explanation: opts.explain(e.hazard) } : {}) },
        });
        break;
      case 'host-preempt':
        instants.push({ cpu, step: e.step, name: e.preempted ? 'descheduled by the host' : 'resumed by the host', cat: e.type, global: false, args: {} });
        break;
      case 'cmc-choice':
        instants.push({ cpu, step: e.step, name: `fetch ${e.executed} bytes`, cat: e.type, global: false, args: { address: hex(e.address) } });
        break;
    }
  }
  stepsUpTo(Infinity);
  const trackNames = Array.from({ length: vcpus }, (_, c) => `vCPU ${c}`);
  for (const [i, t] of (opts.phases ?? []).entries()) {
    trackNames.push(t.name);
    // Phase spans nest by construction: the caller gives an outer span first, then its parts.
    const st: Slice[] = [];
    for (const s of t.spans) {
      while (st.length > 0 && st[st.length - 1]!.end < s.end) st.pop();
      const slice: Slice = { track: vcpus + i, name: s.name, cat: s.cat ?? 'phase', begin: s.begin, end: s.end, depth: st.length };
      slices.push(slice);
      st.push(slice);
      last = Math.max(last, s.end);
    }
  }
  const end = Math.max(opts.end ?? 0, last + 1);
  for (const st of stacks) for (const o of st.splice(0)) o.slice.end = end;
  const counters = [...depthCounter, ...acqCounter].filter((c) => c.points.length > 0);
  return { vcpus, end, trackNames, slices, flows, instants, counters };
}
