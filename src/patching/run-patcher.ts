/**
 * Run a patching service on a live guest and judge the run (shared by v1 and the broken
 * variants): vCPU `patcherCpu` calls the service at `entry` before its task (its stack returns
 * into task_entry) while every vCPU keeps taking locks; the machine's hazards, the INT3 handler's
 * BUGs, the lock counters and task completion decide the verdict.
 */
import { Reg } from '../x86/registers.ts';
import { stackTop } from '../kernel/layout.ts';
import { Int3EmulationError } from '../kernel/text-poke-errors.ts';
import { KernelBug } from '../kernel/errors.ts';
import { ForeignEmulationError } from '../kernel/emulation-oracle.ts';
import type { Guest, LockReport } from '../kernel/guest.ts';
import type { RunOptions, RunResult } from '../machine/machine.ts';
import type { Hazard } from '../machine/events.ts';

/** How a patcher run (text_poke_bp, v1, a broken variant) ended. */
export type PatchRunReason =
  | 'ok'
  /** The machine reported a hazard (cmc-unsynchronized, return-into-rewritten). */
  | 'hazard'
  /** The INT3 handler trapped on a site whose new instruction it cannot emulate. */
  | 'not-emulatable'
  /** Another kernel BUG (an INT3 the handler does not know). */
  | 'kernel-bug'
  /** A lock's counter disagrees with its acquisitions: mutual exclusion broke. */
  | 'broken-lock'
  /** Every vCPU halted with tasks unfinished: a lost wake-up. */
  | 'all-halted'
  /** The run ended otherwise (instruction limit, another error) before the tasks finished. */
  | 'unfinished'
  /** A site did not hold the bytes the patcher expected: it refused and wrote nothing. */
  | 'unexpected-bytes'
  /** An INT3 handler emulated an instruction that is neither the site's old nor its new one. */
  | 'foreign-emulation'
  /** The old and new lock implementations disagree on what the lock word means: the switch refused. */
  | 'lock-word-disagreement';

export interface PatchRunResult {
  ok: boolean;
  reason: PatchRunReason;
  detail?: string;
  hazard?: Hazard;
  /** The patcher service returned (its work is complete). */
  patched: boolean;
  /** The violating step: the hazard's, else the step where the run ended and the checks ran. */
  step: number;
  run: RunResult;
  locks: LockReport[];
}

/** Make `patcherCpu` CALL `entry` first: push task_entry as its return address. */
export function enterBeforeTask(guest: Guest, patcherCpu: number, entry: number): void {
  const c = guest.machine.vcpu(patcherCpu);
  if (c.getAddr(Reg.RSP) !== stackTop(patcherCpu) || c.rip !== guest.symbol('task_entry')) {
    throw new KernelBug(`the patcher needs vCPU ${patcherCpu} before its task starts`);
  }
  const rsp = c.getAddr(Reg.RSP) - 8;
  guest.machine.memory.writeU64(rsp, c.rip);
  c.setAddr(Reg.RSP, rsp);
  c.rip = entry;
}

/** Run the guest to completion and classify the outcome; `patched()` says whether the patcher finished. */
export function runAndJudge(guest: Guest, patched: () => boolean, opts: RunOptions = {}): PatchRunResult {
  return judgePatchRun(guest, guest.run(opts), patched());
}

/** Classify a finished run of a guest with a patcher: hazards, kernel BUGs, locks, tasks, the patcher. */
export function judgePatchRun(guest: Guest, run: RunResult, patched: boolean): PatchRunResult {
  const locks = guest.checkLocks();
  const base = { patched, run, locks, step: run.hazardSteps[0] ?? guest.machine.step };
  const fail = (reason: PatchRunReason, detail?: string, hazard?: Hazard): PatchRunResult =>
    ({ ok: false, reason, ...(detail ? { detail } : {}), ...(hazard ? { hazard } : {}), ...base });
  if (run.reason === 'hazard') return fail('hazard', run.hazards[0]?.kind, run.hazards[0]);
  if (run.error instanceof Int3EmulationError) return fail('not-emulatable', run.error.message);
  if (run.error instanceof ForeignEmulationError) return fail('foreign-emulation', run.error.message);
  if (run.error instanceof KernelBug) return fail('kernel-bug', run.error.message);
  const broken = locks.find((l) => !l.ok);
  if (broken) return fail('broken-lock', `${broken.role} lock ${broken.index}: counter ${broken.counter} != acquisitions ${broken.acquisitions}`);
  const m = guest.machine;
  if (run.reason === 'all-halted' && !guest.tasksDone) return fail('all-halted', `${guest.stats.tasksDone} of ${m.vcpus.length} tasks finished`);
  if (!guest.tasksDone || !base.patched) return fail('unfinished', run.error?.message ?? `${run.reason}; ${guest.stats.tasksDone} of ${m.vcpus.length} tasks finished`);
  return { ok: true, reason: 'ok', ...base };
}

