/**
 * Schedules: the decisions of a run as a typed value, printable and replayable.
 *
 *   s<cpu>  step vCPU <cpu>        d<cpu>  drain its oldest buffered store
 *   n<cpu>  inject an NMI          i<cpu>  inject an interrupt
 *   c<v>    value <v> for a non-scheduling choice (old=0/new=1 at a legal INT3 fetch)
 *   <token>*<k>  the token k times
 *
 * e.g. `s0*12 s1 d1 s0*3 c0`. Only real decisions appear: points with a single enabled action are
 * not decisions, so a replay consults its chooser at exactly the recorded points. A Schedule is
 * run-length encoded (`s0*1000000000` is one entry, never a billion), and parsing takes its text in
 * chunks, so a schedule file of any length is read without holding it whole.
 *
 * The machine's run loop keeps its own compact encoding (an action is `cpu * 4 + kind`, a choice
 * value v is `-(v + 1)`, in Int32Array points and a number log): that is its hot path. This file is
 * the one place that translates, and ACTION_LETTERS the one table a new action kind extends.
 */
import { ActionKind, action, actionCpu, actionKind } from '../machine/chooser.ts';

export class ScheduleError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

/** Every action kind a schedule can name: its letter, its name, the machine's ActionKind. Extend here. */
const ACTION_LETTERS = [
  { letter: 's', kind: 'step', action: ActionKind.Step },
  { letter: 'd', kind: 'drain', action: ActionKind.Drain },
  { letter: 'n', kind: 'nmi', action: ActionKind.Nmi },
  { letter: 'i', kind: 'irq', action: ActionKind.Irq },
] as const;
/** The letter of a non-scheduling choice. */
const CHOICE_LETTER = 'c';

export type ActionDecisionKind = (typeof ACTION_LETTERS)[number]['kind'];

/** One decision of a run. */
export type Decision =
  | { readonly kind: ActionDecisionKind; readonly cpu: number }
  | { readonly kind: 'choice'; readonly value: number };
export type DecisionKind = Decision['kind'];

/** One decision `count` times in a row. */
export interface ScheduleEntry {
  readonly decision: Decision;
  readonly count: number;
}

const BY_LETTER = new Map<string, (typeof ACTION_LETTERS)[number]>(ACTION_LETTERS.map((a) => [a.letter, a]));
const BY_KIND = new Map<string, (typeof ACTION_LETTERS)[number]>(ACTION_LETTERS.map((a) => [a.kind, a]));
const BY_ACTION = new Map<number, (typeof ACTION_LETTERS)[number]>(ACTION_LETTERS.map((a) => [a.action, a]));
const TOKEN = new RegExp(`^([${ACTION_LETTERS.map((a) => a.letter).join('')}${CHOICE_LETTER}])(\\d+)(?:\\*(\\d+))?$`);
const LETTERS_TEXT = [...ACTION_LETTERS.map((a) => `${a.letter}<cpu>`), `${CHOICE_LETTER}<value>`].join(', ');
export const MAX_REPEAT = 1e9;

/** The machine's code for a decision (an action index or an encoded choice value). */
export function encodeDecision(d: Decision): number {
  if (d.kind === 'choice') return -(d.value + 1);
  return action(d.cpu, BY_KIND.get(d.kind)!.action);
}

/** The decision a machine code stands for. */
export function decodeDecision(code: number): Decision {
  if (code < 0) return { kind: 'choice', value: -code - 1 };
  const a = BY_ACTION.get(actionKind(code));
  if (a === undefined) throw new ScheduleError(`action code ${code} has no schedule letter`);
  return { kind: a.kind, cpu: actionCpu(code) };
}

/** One decision as a token (without repeat count). */
export function decisionToken(d: Decision): string {
  return d.kind === 'choice' ? `${CHOICE_LETTER}${d.value}` : `${BY_KIND.get(d.kind)!.letter}${d.cpu}`;
}

export class Schedule {
  /** Total decisions (every repeat counted). */
  readonly length: number;

  constructor(readonly entries: readonly ScheduleEntry[]) {
    let n = 0;
    for (const e of entries) n += e.count;
    this.length = n;
  }

  static readonly empty = new Schedule([]);

  /** A machine's decision log (Machine.decisions: [code, count] pairs, as its run loop appends them). */
  static fromLog(log: readonly number[]): Schedule {
    const out: ScheduleEntry[] = [];
    for (let i = 0; i < log.length; i += 2) out.push({ decision: decodeDecision(log[i]!), count: log[i + 1]! });
    return new Schedule(out);
  }

  /** A flat list of machine codes (one per decision), run-length encoded. */
  static fromCodes(codes: Iterable<number>): Schedule {
    const log: number[] = [];
    for (const c of codes) {
      if (log.length > 0 && log[log.length - 2] === c) log[log.length - 1]!++;
      else log.push(c, 1);
    }
    return Schedule.fromLog(log);
  }

  /** Parse a schedule string; throws ScheduleError naming the bad token. */
  static parse(text: string, maxCpus = 256): Schedule {
    return parseScheduleChunks([text], maxCpus);
  }

  toString(): string {
    return this.entries.map((e) => (e.count === 1 ? decisionToken(e.decision) : `${decisionToken(e.decision)}*${e.count}`)).join(' ');
  }
}

/** The schedule a machine has recorded so far. */
export function recordedSchedule(m: { readonly decisions: readonly number[] }): Schedule {
  return Schedule.fromLog(m.decisions);
}

/** Render a machine's run-length encoded decision log ([code, count] pairs) as a schedule string. */
export function formatSchedule(log: readonly number[] | Schedule): string {
  return (log instanceof Schedule ? log : Schedule.fromLog(log)).toString();
}

/** Parse a schedule string; throws ScheduleError naming the bad token. */
export function parseSchedule(text: string, maxCpus = 256): Schedule {
  return Schedule.parse(text, maxCpus);
}

/**
 * Parse a schedule given as consecutive pieces of its text (a file read in chunks: a token may be
 * split between two). Memory grows with the number of tokens, never with their repeat counts.
 */
export function parseScheduleChunks(chunks: Iterable<string>, maxCpus = 256): Schedule {
  const out: ScheduleEntry[] = [];
  let index = 0;
  const take = (tok: string): void => {
    index++;
    const m = TOKEN.exec(tok);
    if (!m) throw new ScheduleError(`schedule token ${index} '${tok.length > 40 ? tok.slice(0, 40) + '…' : tok}' is not one of ${LETTERS_TEXT}, optionally followed by *<count>`);
    const n = Number(m[2]);
    const count = m[3] === undefined ? 1 : Number(m[3]);
    if (!(count >= 1 && count <= MAX_REPEAT)) throw new ScheduleError(`schedule token ${index} '${tok}': repeat count must be 1..1e9`);
    let decision: Decision;
    if (m[1] === CHOICE_LETTER) decision = { kind: 'choice', value: n };
    else {
      if (n >= maxCpus) throw new ScheduleError(`schedule token ${index} '${tok}': there is no vCPU ${n} (the machine has ${maxCpus})`);
      decision = { kind: BY_LETTER.get(m[1]!)!.kind, cpu: n };
    }
    out.push({ decision, count });
  };
  let carry = '';
  for (const chunk of chunks) {
    const parts = (carry + chunk).split(/[\s,]+/);
    carry = parts.pop()!; // may continue in the next chunk
    for (const p of parts) if (p.length > 0) take(p);
    if (carry.length > 64) take(carry); // no token is this long: report it now, do not accumulate it
  }
  if (carry.length > 0) take(carry);
  return new Schedule(out);
}
