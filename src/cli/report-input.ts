/**
 * The inputs `pvpatch report` reads, turned into the report's model (src/trace/report-model.ts):
 * a `run --json` summary (machine or guest scenario), a `check --json` result
 * `{verdict, executions, states, counterexample: {schedule, replay, steps, preemptions}}`, and
 * benchmark JSON files whose rows carry `{median, min, max, seeds}` spreads.
 */
import type { Slice, Timeline } from '../trace/timeline.ts';
import { decisionToken, parseSchedule, type Decision, type Schedule } from '../sched/schedule.ts';
import type { BenchFigure, PhaseTable, ReportModel, Spread, ViolationView } from '../trace/report-model.ts';

/** An input the report cannot use: one line saying which file and why. */
export class ReportInputError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ReportInputError';
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function timelineOf(v: unknown, source: string): Timeline | undefined {
  if (v === undefined) return undefined;
  const ok = isObject(v) && typeof v.vcpus === 'number' && typeof v.end === 'number' && Array.isArray(v.trackNames) && Array.isArray(v.slices) && Array.isArray(v.flows) && Array.isArray(v.instants) && Array.isArray(v.counters);
  if (!ok) throw new ReportInputError(`${source}: 'timeline' is not a timeline {vcpus, end, trackNames, slices, flows, instants, counters}`);
  return v as unknown as Timeline;
}

function violationOf(v: unknown, source: string): ViolationView | undefined {
  if (v === undefined || v === null) return undefined;
  const ok = isObject(v) && typeof v.step === 'number' && typeof v.cpu === 'number' && typeof v.rip === 'string' && Array.isArray(v.disassembly);
  if (!ok) throw new ReportInputError(`${source}: 'violation' is not {step, cpu, rip, kind, explanation, disassembly}`);
  return { step: v.step as number, cpu: v.cpu as number, rip: v.rip as string, kind: String(v.kind ?? 'violation'), explanation: String(v.explanation ?? ''), disassembly: v.disassembly as ViolationView['disassembly'] };
}

function phasesOf(sw: unknown): PhaseTable[] {
  if (!isObject(sw) || !Array.isArray(sw.switches)) return [];
  return (sw.switches as Json[]).map((s) => {
    const ps = Array.isArray(s.phases) ? (s.phases as { phase: string; step: number; attempt?: number }[]) : [];
    return {
      name: `${String(sw.protocol)}: ${String(s.from)} → ${String(s.to)}, ${String(s.reason)}, ${String(s.retries ?? 0)} retries, ${String(s.int3Hits ?? 0)} INT3 hits`,
      rows: ps.map((p, i) => ({ phase: p.phase + ((p.attempt ?? 0) > 0 ? ` (attempt ${(p.attempt ?? 0) + 1})` : ''), step: p.step, ...(i > 0 ? { delta: p.step - ps[i - 1]!.step } : {}) })),
    };
  });
}

function fromRun(j: Json, source: string): ReportModel {
  const hazards = Array.isArray(j.hazards) ? (j.hazards as Json[]) : [];
  const violation = violationOf(j.violation, source);
  const guest = isObject(j.decision);
  const facts: [string, string][] = [];
  if (typeof j.scenario === 'string') facts.push(['scenario', j.scenario]);
  facts.push(['strategy', `${String(j.strategy)}, seed ${String(j.seed)}`], ['stopped', String(j.reason)]);
  if (typeof j.instructions === 'number') facts.push(['instructions', j.instructions.toLocaleString('en-US')]);
  if (guest) facts.push(['lock flavour', String((j.decision as Json).reason)]);
  if (Array.isArray(j.locks)) facts.push(['locks', (j.locks as Json[]).map((l) => `lock ${String(l.index)} (${String(l.role)}) ${l.ok ? 'ok' : 'BROKEN'}`).join(', ')]);
  if (typeof j.schedule === 'string' && j.schedule.length > 0) facts.push(['schedule', j.schedule.length > 300 ? `${j.schedule.slice(0, 300)} … (${j.schedule.length} chars)` : j.schedule]);
  const locksBroken = Array.isArray(j.locks) && (j.locks as Json[]).some((l) => l.ok === false);
  const switchFailed = isObject(j.switch) && j.switch.ok === false;
  const ok = hazards.length === 0 && !locksBroken && !switchFailed && j.lostWakeup !== true && j.reason !== 'error';
  const headline = violation ? violation.explanation
    : hazards.length > 0 ? `${hazards.length} hazard(s): ${String(hazards[0]!.kind)}`
    : ok ? 'no hazard, every check passed' : `failed: ${locksBroken ? 'a lock broke' : switchFailed ? `the switch failed (${String((j.switch as Json).reason)})` : j.lostWakeup === true ? 'lost wake-up' : String(j.error ?? j.reason)}`;
  const timeline = timelineOf(j.timeline, source);
  return { title: `pvpatch run: ${String(j.scenario ?? source)}`, source, ok, headline, facts, ...(timeline ? { timeline } : {}), ...(violation ? { violation } : {}), phases: phasesOf(j.switch), benches: [] };
}

function fromCheck(j: Json, source: string): ReportModel {
  const v = j.verdict;
  const verdictText = typeof v === 'string' ? v : isObject(v) ? (v.ok === true ? 'ok: no violation within the bound' : `${String(v.check ?? 'violation')}: ${String(v.message ?? '')}`) : String(v);
  const ok = typeof v === 'string' ? /^(ok|clean|pass)/i.test(v) : isObject(v) && v.ok === true;
  const cx = isObject(j.counterexample) ? j.counterexample : undefined;
  const num = (x: unknown) => (typeof x === 'number' ? x : undefined);
  const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
  const exploration = Object.fromEntries(Object.entries({
    verdict: verdictText, executions: num(j.executions), states: num(j.states),
    schedule: str(cx?.schedule), replay: str(cx?.replay), steps: num(cx?.steps), preemptions: num(cx?.preemptions),
  }).filter(([, x]) => x !== undefined)) as unknown as ReportModel['exploration'];
  const given = timelineOf(cx?.timeline ?? j.timeline, source);
  const fromSchedule = given === undefined && typeof cx?.schedule === 'string' ? scheduleTimeline(cx.schedule) : undefined;
  const timeline = given ?? fromSchedule;
  const violation = violationOf(cx?.violation ?? j.violation, source);
  const vcpu = isObject(v) && typeof v.cpu === 'number' ? v.cpu : undefined;
  const mark = !violation && fromSchedule && vcpu !== undefined && vcpu < fromSchedule.vcpus ? { step: fromSchedule.end, cpu: vcpu } : undefined;
  const facts: [string, string][] = [];
  if (typeof j.scenario === 'string') facts.push(['scenario', j.scenario]);
  if (typeof j.strategy === 'string') facts.push(['strategy', j.strategy]);
  return {
    title: `pvpatch check: ${String(j.scenario ?? source)}`, source, ok, headline: verdictText, facts,
    ...(timeline ? { timeline } : {}), ...(violation ? { violation } : {}), ...(exploration ? { exploration } : {}),
    ...(fromSchedule ? { axis: 'The counterexample\'s schedule, one unit per decision (steps with a single enabled action are not decisions); the violation follows its last decision.' } : {}),
    ...(mark ? { mark } : {}),
    phases: phasesOf(cx?.switch ?? j.switch), benches: [],
  };
}

/** The most decisions a schedule may expand to before the report declines to draw it. */
const MAX_DRAWN_DECISIONS = 1_000_000;

/**
 * A counterexample's schedule as lanes: each run of decisions for one vCPU a slice, on an axis of
 * decision indexes (forced steps between decisions are not in a schedule). Undefined when the
 * schedule does not parse or is too long to draw.
 */
/** How a lane names each kind of decision. */
const DECISION_WORDS: Record<Exclude<Decision['kind'], 'choice'>, string> = {
  step: 'step', drain: 'drain', nmi: 'NMI injected', irq: 'IRQ injected', preempt: 'host deschedules', resume: 'host resumes',
};

export function scheduleTimeline(schedule: string): Timeline | undefined {
  if (schedule.length > 100_000) return undefined;
  let parsed: Schedule;
  try {
    parsed = parseSchedule(schedule);
  } catch {
    return undefined;
  }
  if (parsed.length > MAX_DRAWN_DECISIONS) return undefined;
  const slices: Slice[] = [];
  let vcpus = 1;
  let at = 0;
  // Consecutive entries of one decision are one slice (the schedule's run-length form).
  const entries = parsed.entries;
  for (let i = 0; i < entries.length;) {
    const d = entries[i]!.decision;
    let j = i, n = 0;
    while (j < entries.length && decisionToken(entries[j]!.decision) === decisionToken(d)) n += entries[j++]!.count;
    if (d.kind !== 'choice') {
      const cpu = d.cpu;
      vcpus = Math.max(vcpus, cpu + 1);
      slices.push({ track: cpu, name: `${DECISION_WORDS[d.kind]}${n > 1 ? ` ×${n}` : ''} (${decisionToken(d)})`, cat: d.kind === 'step' ? 'step' : d.kind === 'drain' ? 'drain' : 'handler', begin: at, end: at + n, depth: 0 });
    }
    at += n;
    i = j;
  }
  return { vcpus, end: at, trackNames: Array.from({ length: vcpus }, (_, c) => `vCPU ${c}`), slices, flows: [], instants: [], counters: [] };
}

/** A run or check JSON, as `run --json` / `check --json` print it. */
export function reportFromJson(j: unknown, source: string): ReportModel {
  if (!isObject(j)) throw new ReportInputError(`${source}: not a JSON object from pvpatch run --json or check --json`);
  if ('verdict' in j && ('executions' in j || 'counterexample' in j)) return fromCheck(j, source);
  if ('reason' in j && 'hazards' in j) return fromRun(j, source);
  throw new ReportInputError(`${source}: neither a run (reason, hazards) nor a check result (verdict, executions) JSON`);
}

function isSpread(v: unknown): v is Spread {
  return isObject(v) && typeof v.median === 'number' && typeof v.min === 'number' && typeof v.max === 'number';
}

/**
 * Figures from a benchmark JSON: every row field that is a spread `{median, min, max}` becomes a
 * series, one x category per row labelled by the row's plain fields (ratio, phase, protocol, ...).
 * Rows are grouped by their `flavor`/`protocol` field when they have one, so each flavour is a line.
 */
export function benchFigures(j: unknown, source: string): BenchFigure[] {
  if (!isObject(j) || !Array.isArray(j.rows)) throw new ReportInputError(`${source}: not a benchmark JSON with a 'rows' array (npm run bench -- <name> --json)`);
  const rows = j.rows as Json[];
  const group = (r: Json) => String(r.flavor ?? r.protocol ?? '');
  const label = (r: Json) => Object.entries(r).filter(([k, v]) => k !== 'flavor' && k !== 'protocol' && (typeof v === 'number' || (typeof v === 'string' && v.length <= 16)) && !/seed|wall/i.test(k)).slice(0, 3).map(([, v]) => String(v)).join(' · ');
  const metrics = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => isSpread(r[k]))))];
  if (metrics.length === 0) throw new ReportInputError(`${source}: its rows carry no {median, min, max} spreads to plot`);
  const name = typeof j.bench === 'string' ? j.bench : source;
  // native_acq_per_sim_s, pv_acq_per_sim_s, adaptive_acq_per_sim_s: one figure, a series each.
  const rest = (m: string) => m.slice(m.indexOf('_') + 1);
  const shared = (m: string) => m.includes('_') && metrics.filter((x) => rest(x) === rest(m)).length > 1;
  const figures = new Map<string, string[]>();
  for (const m of metrics) {
    const key = shared(m) ? rest(m) : m;
    figures.set(key, [...(figures.get(key) ?? []), m]);
  }
  const point = (s: (Spread & { values?: unknown[] }) | undefined): Spread | null =>
    s ? { median: s.median, min: s.min, max: s.max, n: Array.isArray(s.values) ? s.values.length : s.n ?? 0 } : null;
  return [...figures].map(([title, ms]) => {
    const xLabels = [...new Set(rows.filter((r) => ms.some((m) => isSpread(r[m]))).map(label))];
    const series = ms.flatMap((metric) => {
      const groups = [...new Set(rows.filter((r) => isSpread(r[metric])).map(group))];
      return groups.map((g) => ({
        label: [ms.length > 1 ? metric.slice(0, metric.indexOf('_')) : '', g].filter(Boolean).join(' ') || metric,
        points: xLabels.map((x) => point(rows.find((row) => group(row) === g && label(row) === x && isSpread(row[metric]))?.[metric] as Spread | undefined)),
      }));
    });
    return { title: `${name}: ${title}`, xLabels, series };
  });
}
