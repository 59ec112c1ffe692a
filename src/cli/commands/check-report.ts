/**
 * What `pvpatch check` (and `pvpatch merge`) hands a user: the exploration's aggregate, and on a
 * violation the shrunk counterexample with the check that fired at its step and a `pvpatch run`
 * command that reproduces it exactly; with `--expect`, whether the condition holds over the final
 * states. One function finishes both commands, so a merged set of shards reports what the
 * unsharded run reports.
 */
import { choiceArgs, choiceOf, type SubjectChoice } from '../subject-choice.ts';
import type { StockVariant } from '../../patching/variants.ts';
import { writeAtomically } from '../write-file.ts';
import { describeHazard } from '../hazard-text.ts';
import { shrink, shrinkable, type Violation } from '../../check/shrink.ts';
import { judgeCondition, type Condition, type ConditionResult } from '../../check/condition.ts';
import type { ExplorationResult } from '../../check/exploration.ts';
import type { Subject } from '../../check/subject.ts';
import type { SwitchProtocol } from '../../patching/hint-switch.ts';

export interface Counterexample {
  /** The exploration's execution it was found in (and its seed, for seeded strategies). */
  readonly execution: number;
  readonly seed?: number;
  /** The shrunk schedule (exact: a strict replay reproduces it). */
  readonly schedule: string;
  /** A command that reproduces the counterexample exactly. */
  readonly replay: string;
  readonly steps: number;
  readonly preemptions: number;
  readonly injections: number;
  /** The check that fired, at its violating step. */
  readonly check: Violation;
  /** The schedule as found, before shrinking. */
  readonly found: { readonly steps: number; readonly preemptions: number; readonly injections: number };
}

export interface CheckReport extends ExplorationResult {
  /** Guest scenarios: the protocol, variant or protocol module the flags chose (merge rebuilds the same). */
  readonly protocol?: SwitchProtocol;
  readonly variant?: StockVariant;
  readonly protocolFile?: string;
  readonly counterexample?: Counterexample;
  readonly expect?: ConditionResult;
}

export interface FinishOptions {
  readonly expect?: Condition;
  /** The --protocol, --variant or --protocol-file the subject was built with (the replay command carries it). */
  readonly choice?: SubjectChoice;
  /** Write the counterexample's schedule here; the replay command then reads it with --schedule-file. */
  readonly scheduleOut?: string;
}

function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** `pvpatch run` with the very limits the exploration ran with. */
function replayCommand(scenario: string, subject: Subject, maxInstructions: number, schedule: string, file: string | undefined, extra: readonly string[]): string {
  const depth = maxInstructions !== subject.limits.maxInstructions ? ` --max-instructions ${maxInstructions}` : '';
  const sched = file !== undefined ? `--schedule-file ${shellWord(file)}` : `--schedule '${schedule}'`;
  return `pvpatch run ${shellWord(scenario)} ${sched}${depth}${extra.map((w) => ` ${shellWord(w)}`).join('')}`;
}

/** Shrink the first violation, judge --expect, and build the report (the scenario is the subject's name). */
export function finishCheck(subject: Subject, result: ExplorationResult, opts: FinishOptions = {}): CheckReport {
  const limits = { ...subject.limits, maxInstructions: result.bound.maxInstructions };
  const fv = result.firstViolation;
  let counterexample: Counterexample | undefined;
  if (fv !== undefined) {
    const s = shrink(subject, fv.schedule, fv.verdict, { limits, ...(fv.seed !== undefined ? { seed: fv.seed } : {}) });
    if (opts.scheduleOut !== undefined) writeAtomically(opts.scheduleOut, s.schedule + '\n');
    counterexample = {
      execution: fv.index,
      ...(fv.seed !== undefined ? { seed: fv.seed } : {}),
      schedule: s.schedule,
      // The seed re-seeds a guest's workload as the execution had it (a machine scenario has none to re-seed).
      replay: replayCommand(subject.name, subject, result.bound.maxInstructions, s.schedule, opts.scheduleOut, [...choiceArgs(opts.choice ?? {}), ...(fv.seed !== undefined ? ['--seed', String(fv.seed)] : [])]),
      steps: s.steps,
      preemptions: s.preemptions,
      injections: s.injections,
      check: s.verdict,
      found: { steps: s.original.steps, preemptions: s.original.preemptions, injections: s.original.injections },
    };
  }
  return {
    ...result,
    ...choiceOf(opts.choice ?? {}),
    ...(counterexample !== undefined ? { counterexample } : {}),
    ...(opts.expect !== undefined ? { expect: judgeCondition(opts.expect, result.states) } : {}),
  };
}

/** 0 clean (and the expectation holds), 1 a violation or an expectation that does not hold. */
export function checkExitCode(r: CheckReport): number {
  return r.verdict === 'violation' || r.expect?.holds === false ? 1 : 0;
}

const n = (k: number): string => k.toLocaleString('en-US');

function budgetText(r: CheckReport): string {
  if (r.budget.kind === 'executions') return `budget ${n(r.budget.executions)} executions`;
  return `budget ${r.budget.seconds} s of wall-clock (how many executions fit depends on this machine; the result is that of the ${n(r.executions)} that ran)`;
}

function seedsText(r: CheckReport): string {
  if (r.strategy === 'replay' || r.complete || r.bound.preemptions !== undefined) return '';
  return r.shard ? `, seeds from ${r.seed + r.shard.index} in steps of ${r.shard.count}` : `, seeds from ${r.seed}`;
}

export function checkText(r: CheckReport): string {
  const out: string[] = [];
  const shard = r.shard ? ` (shard ${r.shard.index}/${r.shard.count}: merge the shards with pvpatch merge)` : '';
  out.push(`${r.subject}: strategy ${r.strategy}${r.bound.preemptions !== undefined ? ` (preemption bound ${r.bound.preemptions})` : ''}, depth ${n(r.bound.maxInstructions)} instructions${shard}`);
  out.push(`explored ${n(r.executions)} execution${r.executions === 1 ? '' : 's'}${seedsText(r)}; ${budgetText(r)}`);
  const verdict =
    r.verdict === 'violation' ? `violation: ${n(r.violations)} of ${n(r.executions)} executions broke a check`
    : r.verdict === 'exhausted' ? 'exhausted: every interleaving within the bound ran, none broke a check'
    : 'bounded-clean: no execution broke a check (not a proof: not every interleaving ran)';
  out.push(`verdict: ${verdict}`);
  out.push('', `final states (${n(r.states.length)} distinct):`);
  const shown = r.states.slice(0, 20);
  for (const s of shown) out.push(`  ${n(s.count).padStart(8)}  ${s.key}`);
  if (r.states.length > shown.length) out.push(`  … ${n(r.states.length - shown.length)} more (--json has them all)`);
  out.push('', 'how the executions ended:');
  for (const e of r.endings) out.push(`  ${n(e.count).padStart(8)}  ${e.key}`);
  if (r.coverage.length > 0) {
    out.push('', 'coverage (executions that reached each point):');
    for (const c of r.coverage) out.push(`  ${n(c.count).padStart(8)}  ${(100 * c.count / Math.max(1, r.executions)).toFixed(0).padStart(3)}%  ${c.key}`);
  }
  const cx = r.counterexample;
  if (cx !== undefined) {
    const v = cx.check;
    const found = `${n(cx.found.steps)} steps, ${cx.found.preemptions} preemptions, ${cx.found.injections} injections`;
    const how = shrinkable(v) ? `shrunk from ${found} to ${n(cx.steps)} steps, ${cx.preemptions} preemptions, ${cx.injections} injections` : `${found}; not shrunk: fewer preemptions would only starve a vCPU`;
    out.push('', `counterexample (execution ${cx.execution}${cx.seed !== undefined ? `, seed ${cx.seed}` : ''}), ${how}:`);
    out.push(`  schedule: ${cx.schedule.length > 400 ? cx.schedule.slice(0, 400) + ` … (${n(cx.schedule.length)} chars: --schedule-out FILE writes it)` : cx.schedule}`);
    out.push(`  check ${v.check} fired at step ${n(v.step)}${v.cpu !== undefined ? ` on vCPU ${v.cpu}` : ''}:`);
    const text = v.hazard !== undefined ? describeHazard(v.hazard) : v.message;
    for (const line of text.split('\n')) out.push(`    ${line}`);
    out.push(`  replay: ${cx.replay.length > 600 && !cx.replay.includes('--schedule-file') ? 'pass --schedule-out FILE for a replay command that reads the schedule from a file' : cx.replay}`);
  }
  if (r.expect !== undefined) {
    const e = r.expect;
    // The condition is judged over the final states reached: every interleaving's when the search was complete.
    const scope = r.complete ? 'over the final states of every interleaving within the bound' : `over the final states of the ${n(r.executions)} executions run`;
    out.push('', `expect ${e.condition}: ${e.holds ? 'holds' : 'does not hold'} ${scope} (the proposition is true in ${e.satisfyingStates} of ${e.states} final states, ${n(e.satisfyingExecutions)} executions)`);
  }
  return out.join('\n') + '\n';
}
