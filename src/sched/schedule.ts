/**
 * Schedule strings: the decisions of a run, printable and replayable.
 *
 *   s<cpu>  step vCPU <cpu>        d<cpu>  drain its oldest buffered store
 *   n<cpu>  inject an NMI          i<cpu>  inject an interrupt
 *   c<v>    value <v> for a non-scheduling choice (old=0/new=1 at a legal INT3 fetch)
 *   <token>*<k>  the token k times
 *
 * e.g. `s0*12 s1 d1 s0*3 c0`. Only real decisions appear: points with a single enabled action are
 * not decisions, so a replay consults its chooser at exactly the recorded points.
 */
import { ActionKind, action, actionCpu, actionKind } from '../machine/chooser.ts';

export class ScheduleError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

const KIND_LETTER: Record<ActionKind, string> = {
  [ActionKind.Step]: 's',
  [ActionKind.Drain]: 'd',
  [ActionKind.Nmi]: 'n',
  [ActionKind.Irq]: 'i',
};
const LETTER_KIND: Record<string, ActionKind> = { s: ActionKind.Step, d: ActionKind.Drain, n: ActionKind.Nmi, i: ActionKind.Irq };

/** One decision as a token (without repeat count). */
export function decisionToken(d: number): string {
  if (d < 0) return `c${-d - 1}`;
  return `${KIND_LETTER[actionKind(d)]}${actionCpu(d)}`;
}

/** Render a run-length encoded decision log ([decision, count] pairs). */
export function formatSchedule(log: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < log.length; i += 2) {
    const tok = decisionToken(log[i]!);
    const k = log[i + 1]!;
    out.push(k === 1 ? tok : `${tok}*${k}`);
  }
  return out.join(' ');
}

const TOKEN = /^([sdnic])(\d+)(?:\*(\d+))?$/;

/**
 * The most decisions a schedule string may expand to: a replay holds them all, so a typo'd repeat
 * count (`s0*999999999`) must be refused here, not met as an out-of-memory abort in V8.
 */
export const MAX_SCHEDULE_DECISIONS = 10_000_000;

/** Parse a schedule string into a flat decision list; throws ScheduleError naming the bad token. */
export function parseSchedule(text: string, maxCpus = 256): number[] {
  const out: number[] = [];
  const tokens = text.trim().split(/[\s,]+/).filter((t) => t.length > 0);
  tokens.forEach((tok, i) => {
    const m = TOKEN.exec(tok);
    if (!m) {
      throw new ScheduleError(`schedule token ${i + 1} '${tok}' is not one of s<cpu>, d<cpu>, n<cpu>, i<cpu>, c<value>, optionally followed by *<count>`);
    }
    const n = Number(m[2]);
    const count = m[3] === undefined ? 1 : Number(m[3]);
    if (count < 1) throw new ScheduleError(`schedule token ${i + 1} '${tok}': repeat count must be at least 1`);
    if (out.length + count > MAX_SCHEDULE_DECISIONS) {
      throw new ScheduleError(`schedule token ${i + 1} '${tok}': the schedule would hold more than ${MAX_SCHEDULE_DECISIONS.toLocaleString('en-US')} decisions`);
    }
    let d: number;
    if (m[1] === 'c') d = -(n + 1);
    else {
      if (n >= maxCpus) throw new ScheduleError(`schedule token ${i + 1} '${tok}': there is no vCPU ${n} (the machine has ${maxCpus})`);
      d = action(n, LETTER_KIND[m[1]!]!);
    }
    for (let k = 0; k < count; k++) out.push(d);
  });
  return out;
}
