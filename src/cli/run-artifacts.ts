/**
 * What a single run leaves for a reader beyond its summary: the timeline (per-vCPU slices, flows,
 * counters; src/trace/timeline.ts), the violating step with the instructions around it, the
 * protocol's phases, and the files `--trace-out` and `--report` write. Machine and guest runs share it.
 */
import { buildTimeline, type PhaseTrack, type Timeline } from '../trace/timeline.ts';
import { timelineToChrome } from '../trace/chrome.ts';
import { disassemble, hexAddress, hexBytes } from '../x86/format.ts';
import type { Hazard } from '../machine/events.ts';
import type { Machine } from '../machine/machine.ts';
import type { HintSwitchResult } from '../patching/hint-switch.ts';
import { describeHazard } from './hazard-text.ts';
import { writeAtomically } from './write-file.ts';
import { renderReport } from '../trace/report.ts';
import { reportFromJson } from './report-input.ts';

export interface DisassemblyLine {
  address: string;
  bytes: string;
  text: string;
  /** The violating instruction. */
  at: boolean;
}

/** The violating step of a run as `run --json` carries it (additive to the summary). */
export interface ViolationRecord {
  step: number;
  cpu: number;
  /** The hazard's name (an oracle's hazard: the oracle's). */
  kind: string;
  rip: string;
  explanation: string;
  disassembly: DisassemblyLine[];
}

/** A hazard's name for a reader: its kind, or the name of the oracle that raised it. */
export function hazardLabel(h: Hazard): string {
  return (h as { oracle?: string }).oracle ?? h.kind;
}

/** The address a hazard is about: the fetched instruction, the return target, the op that started. */
function hazardRip(h: Hazard): number {
  return h.kind === 'return-into-rewritten' ? h.returnAddress : h.address;
}

/**
 * Up to `around` instructions before and after `rip`, decoded front to back from the nearest known
 * instruction start at or below it (a symbol, a label, a patch site: seed 004, never disassemble
 * backwards); decoding restarts at every known start, so a half-rewritten site cannot desync it.
 */
export function disassembleAround(read: (a: number, n: number) => Uint8Array | undefined, rip: number, starts: readonly number[], around = 6): DisassemblyLine[] {
  const known = [...new Set([...starts, rip])].sort((a, b) => a - b);
  const below = known.filter((a) => a < rip && rip - a <= 4096);
  const from = below.find((a) => rip - a <= 256) ?? below.at(-1) ?? rip;
  const before: DisassemblyLine[] = [];
  const after: DisassemblyLine[] = [];
  let a = from;
  while (after.length < around + 1) {
    const bytes = read(a, 15);
    if (!bytes) break;
    const line = disassemble(bytes, a)[0];
    if (!line) break;
    let next = a + Math.max(1, line.bytes.length);
    const cut = known.find((k) => k > a && k < next);
    if (cut !== undefined) next = cut;
    const l: DisassemblyLine = { address: hexAddress(a), bytes: hexBytes(bytes.subarray(0, next - a)), text: cut !== undefined ? `${line.text} (cut by a known instruction start)` : line.text, at: a === rip };
    if (a < rip) { before.push(l); if (before.length > around) before.shift(); }
    else after.push(l);
    a = next;
  }
  return [...before, ...after];
}

export function violationRecord(h: Hazard, step: number, read: (a: number, n: number) => Uint8Array | undefined, starts: readonly number[]): ViolationRecord {
  const rip = hazardRip(h);
  return { step, cpu: h.cpu, kind: hazardLabel(h), rip: hexAddress(rip), explanation: describeHazard(h), disassembly: disassembleAround(read, rip, starts) };
}

/** The protocol's phases as tracks above the vCPUs: each switch with its phases, and its INT3 barrier. */
export function phaseTracks(hs: HintSwitchResult | undefined, runEnd: number): PhaseTrack[] {
  if (!hs) return [];
  const phases: PhaseTrack = { name: `switch (${hs.protocol})`, spans: [] };
  const barrier: PhaseTrack = { name: hs.protocol === 'v1' ? 'stop_machine' : 'INT3 barrier', spans: [] };
  for (const sw of hs.switches) {
    const ps = sw.phases;
    if (ps.length === 0) continue;
    // A switch the run stopped in the middle of (a hazard) lasts to the end of the run.
    const finished = ['done', 'int3-removed'].includes(ps[ps.length - 1]!.phase) || sw.ok;
    const first = ps[0]!.step, last = finished ? ps[ps.length - 1]!.step : runEnd;
    phases.spans.push({ name: `${sw.from} → ${sw.to}: ${sw.reason}`, begin: first, end: last, cat: 'patch' });
    for (let i = 0; i < ps.length; i++) {
      const end = ps[i + 1]?.step ?? last;
      if (i + 1 < ps.length || end > ps[i]!.step) phases.spans.push({ name: ps[i]!.phase + (ps[i]!.attempt > 0 ? ` (attempt ${ps[i]!.attempt + 1})` : ''), begin: ps[i]!.step, end, cat: 'phase' });
    }
    if (hs.protocol === 'v1') barrier.spans.push({ name: 'stop_machine window', begin: first, end: last, cat: 'stop-machine' });
    let up: number | undefined;
    for (const p of ps) {
      if (p.phase === 'int3') up = p.step;
      if (up !== undefined && (p.phase === 'done' || p.phase === 'int3-removed')) {
        barrier.spans.push({ name: 'INT3 on every lock-op site', begin: up, end: p.step, cat: 'int3-handler' });
        up = undefined;
      }
    }
    if (up !== undefined) barrier.spans.push({ name: 'INT3 on every lock-op site', begin: up, end: last, cat: 'int3-handler' });
  }
  return [phases, barrier].filter((t) => t.spans.length > 0);
}

/** The timeline of a traced run on `m`: its events, its last steps named by their instructions, the phases. */
export function runTimeline(m: Machine, phases: PhaseTrack[]): Timeline {
  const stepName = (rip: number) => {
    const svc = m.services.get(rip);
    if (svc) return svc.name;
    try {
      return disassemble(m.memory.readBytes(rip, 15), rip)[0]?.text ?? hexAddress(rip);
    } catch {
      return hexAddress(rip);
    }
  };
  return buildTimeline(m.events, m.vcpus.length, { end: m.step, explain: describeHazard, phases, recent: m.recentSteps(), stepName });
}

/** --trace-out: the Chrome trace, written whole; one line on stderr says where. */
export function writeTrace(path: string, t: Timeline, title: string): void {
  const trace = timelineToChrome(t, title);
  writeAtomically(path, JSON.stringify(trace) + '\n');
  process.stderr.write(`pvpatch: trace (${trace.traceEvents.length} events) written to ${path}; open it in ui.perfetto.dev\n`);
}

/** --report: the HTML report of this run's JSON summary, written whole; one line on stderr says where. */
export function writeReport(path: string, summary: unknown, source: string): void {
  writeAtomically(path, renderReport(reportFromJson(summary, source)));
  process.stderr.write(`pvpatch: report written to ${path}\n`);
}
