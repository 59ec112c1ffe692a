/**
 * The guest's checks on a finished run (DESIGN.md §6), in one place: the machine's hazards (the
 * x86 rules and the oracles above the machine), the INT3 handler's BUGs and other kernel BUGs,
 * mutual exclusion of every lock, lost wake-ups, machine faults and the step limit, and whether
 * every task finished. Every judge of a guest run (the patching protocols, `pvpatch run`, the
 * sweeps, the benches, the explorer's guest subject) starts from this Verdict and adds only what
 * its own work owes (a patcher that finished, a switch that was refused or gave up).
 */
import type { RunResult } from '../machine/machine.ts';
import { hazardName } from '../machine/events.ts';
import type { Guest, LockReport } from './guest.ts';
import { KernelBug } from './errors.ts';
import { Int3EmulationError } from './text-poke-errors.ts';
import { clean, violation, type Verdict } from './verdict.ts';

export interface GuestJudgement {
  verdict: Verdict;
  /** Every lock's check (read after draining every store buffer). */
  locks: LockReport[];
}

/** How far the tasks got, for messages: "limit; 2 of 4 tasks finished". */
function progress(guest: Guest, run: RunResult): string {
  return `${run.reason}; ${guest.stats.tasksDone} of ${guest.machine.vcpus.length} tasks finished`;
}

/** Judge a finished run of `guest`: the first check that failed, in the order a reader would ask. */
export function judgeGuestRun(guest: Guest, run: RunResult): GuestJudgement {
  const locks = guest.checkLocks();
  const step = run.hazardSteps[0] ?? guest.machine.step;
  const h = run.hazards[0];
  if (run.reason === 'hazard' && h !== undefined) return { locks, verdict: violation('hazard', step, `${hazardName(h)} on vCPU ${h.cpu}`, { cpu: h.cpu, hazard: h }) };
  const e = run.error;
  if (e instanceof Int3EmulationError) return { locks, verdict: violation('int3-bug', step, e.message, { cpu: e.cpu }) };
  if (e instanceof KernelBug) return { locks, verdict: violation('kernel-bug', step, e.message) };
  // A replay that stopped fitting ends the run wherever it was: only what it found before counts.
  if (run.reason === 'misfit') return { locks, verdict: violation('unfinished', step, `the schedule no longer fits: ${run.misfit?.message ?? 'the chooser stopped'}`) };
  const broken = locks.find((l) => !l.ok);
  if (broken) return { locks, verdict: violation('broken-lock', step, `${broken.role} lock ${broken.index}: counter ${broken.counter} != acquisitions ${broken.acquisitions}`) };
  if (run.reason === 'all-halted' && !guest.tasksDone) return { locks, verdict: violation('lost-wakeup', step, `${guest.stats.tasksDone} of ${guest.machine.vcpus.length} tasks finished`) };
  if (e !== undefined) return { locks, verdict: violation('machine-fault', step, e.message) };
  if (!guest.tasksDone) return { locks, verdict: violation(run.reason === 'limit' ? 'step-limit' : 'unfinished', step, progress(guest, run)) };
  return { locks, verdict: clean(step) };
}

/** The run was clean but a patcher's work did not finish: the verdict says so. */
export function unlessPatched(guest: Guest, run: RunResult, v: Verdict, patched: boolean): Verdict {
  if (!v.ok || patched) return v;
  return violation(run.reason === 'limit' ? 'step-limit' : 'unfinished', v.step, `${progress(guest, run)}; the patcher did not finish`);
}
