/**
 * Export a run in the Chrome/Perfetto trace-event JSON format (DESIGN.md §7), so a run opens in
 * ui.perfetto.dev or chrome://tracing: one thread per vCPU with complete ("X") slices that nest
 * (handlers, services, slowpaths, locks held, halts), flow arrows ("s"/"f") from each IPI or kick
 * to its delivery, counter tracks ("C": store-buffer depth, acquisitions), a thread per protocol
 * phase track, and each hazard as a global instant with its explanation. Timestamps are the
 * machine's step numbers (one "microsecond" per step).
 */
import type { Hazard, MachineEvent } from '../machine/events.ts';
import { buildTimeline, type PhaseTrack, type Timeline } from './timeline.ts';

export interface TraceEvent {
  name: string;
  ph: 'X' | 'i' | 'M' | 's' | 'f' | 'C';
  ts: number;
  pid: number;
  tid: number;
  dur?: number;
  s?: 't' | 'p' | 'g';
  id?: number;
  bp?: 'e';
  cat?: string;
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ns';
  otherData: { title: string; unit: 'machine step' };
}

export interface ChromeTraceOptions {
  title?: string;
  explain?: (h: Hazard) => string;
  phases?: PhaseTrack[];
  end?: number;
}

const PID = 1;

/** The trace-event JSON object of a timeline. */
export function timelineToChrome(t: Timeline, title = 'pvpatch'): ChromeTrace {
  const out: TraceEvent[] = [{ name: 'process_name', ph: 'M', ts: 0, pid: PID, tid: 0, args: { name: title } }];
  t.trackNames.forEach((name, tid) => {
    out.push({ name: 'thread_name', ph: 'M', ts: 0, pid: PID, tid, args: { name } });
    out.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid: PID, tid, args: { sort_index: tid } });
  });
  // Outer slices first at equal timestamps, so a viewer that sorts stably nests them as built.
  const slices = [...t.slices].sort((a, b) => a.track - b.track || a.begin - b.begin || a.depth - b.depth);
  for (const s of slices) out.push({ name: s.name, ph: 'X', ts: s.begin, dur: s.end - s.begin, pid: PID, tid: s.track, cat: s.cat, ...(s.args ? { args: s.args } : {}) });
  for (const f of t.flows) {
    out.push({ name: f.label, ph: 's', id: f.id, ts: f.from.step, pid: PID, tid: f.from.cpu, cat: f.kind });
    out.push({ name: f.label, ph: 'f', bp: 'e', id: f.id, ts: f.to.step, pid: PID, tid: f.to.cpu, cat: f.kind });
  }
  for (const c of t.counters) {
    for (const [ts, v] of c.points) out.push({ name: `${c.name} vCPU ${c.cpu}`, ph: 'C', ts, pid: PID, tid: c.cpu, args: { [c.name === 'store buffer' ? 'depth' : 'count']: v } });
  }
  for (const i of t.instants) out.push({ name: i.name, ph: 'i', s: i.global ? 'g' : 't', ts: i.step, pid: PID, tid: i.cpu, cat: i.cat, args: i.args });
  return { traceEvents: out, displayTimeUnit: 'ns', otherData: { title, unit: 'machine step' } };
}

/** The trace-event JSON object for `events` on `vcpus` vCPUs. */
export function chromeTrace(events: readonly MachineEvent[], vcpus: number, opts: ChromeTraceOptions | string = {}): ChromeTrace {
  const o = typeof opts === 'string' ? { title: opts } : opts;
  const t = buildTimeline(events, vcpus, { ...(o.explain ? { explain: o.explain } : {}), ...(o.phases ? { phases: o.phases } : {}), ...(o.end !== undefined ? { end: o.end } : {}) });
  return timelineToChrome(t, o.title ?? 'pvpatch');
}
