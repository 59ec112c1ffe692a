/**
 * Export a run's events in the Chrome/Perfetto trace-event JSON format (DESIGN.md §7), so a run
 * opens in ui.perfetto.dev or chrome://tracing: one track per vCPU, an instant event per
 * interrupt, NMI, exception, IRET, halt, wake-up, hypercall, old/new choice and hazard.
 * Timestamps are the machine's step numbers (one "microsecond" per step).
 */
import { hazardName, type MachineEvent } from '../machine/events.ts';

export interface TraceEvent {
  name: string;
  ph: 'i' | 'M';
  ts: number;
  pid: number;
  tid: number;
  s?: 't' | 'p' | 'g';
  cat?: string;
  args?: Record<string, unknown>;
}

function hex(a: number): string {
  return '0x' + BigInt.asUintN(64, BigInt(a)).toString(16);
}

function describe(e: MachineEvent): { name: string; args: Record<string, unknown> } {
  switch (e.type) {
    case 'hazard': return { name: `HAZARD ${hazardName(e.hazard)}`, args: { ...e.hazard } };
    case 'interrupt': return { name: `irq ${hex(e.vector)}`, args: { rip: hex(e.rip) } };
    case 'nmi': return { name: 'nmi', args: { rip: hex(e.rip) } };
    case 'exception': return { name: `exception ${e.vector}`, args: { rip: hex(e.rip) } };
    case 'iret': return { name: 'iret', args: { rip: hex(e.rip) } };
    case 'halt': return { name: 'halt', args: { rip: hex(e.rip) } };
    case 'wake': return { name: `wake (${e.reason})`, args: {} };
    case 'hypercall': return { name: `${e.kind} ${e.nr}`, args: {} };
    case 'cmc-choice': return { name: `fetch ${e.executed} bytes`, args: { address: hex(e.address) } };
  }
}

/** The trace-event JSON object for `events` on `vcpus` vCPUs. */
export function chromeTrace(events: readonly MachineEvent[], vcpus: number, title = 'pvpatch'): { traceEvents: TraceEvent[]; displayTimeUnit: 'ns' } {
  const out: TraceEvent[] = [{ name: 'process_name', ph: 'M', ts: 0, pid: 1, tid: 0, args: { name: title } }];
  for (let c = 0; c < vcpus; c++) out.push({ name: 'thread_name', ph: 'M', ts: 0, pid: 1, tid: c, args: { name: `vCPU ${c}` } });
  for (const e of events) {
    const d = describe(e);
    out.push({ name: d.name, ph: 'i', s: e.type === 'hazard' ? 'g' : 't', ts: e.step, pid: 1, tid: e.cpu, cat: e.type, args: d.args });
  }
  return { traceEvents: out, displayTimeUnit: 'ns' };
}
