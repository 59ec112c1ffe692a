/**
 * Run a patching service on a live guest and judge the run (shared by v1 and the broken
 * variants): vCPU `patcherCpu` calls the service at `entry` before its task (its stack returns
 * into task_entry) while every vCPU keeps taking locks; the guest's checks (src/kernel/judge.ts)
 * and whether the patcher finished decide the verdict.
 */
import { Reg } from '../x86/registers.ts';
import { stackTop } from '../kernel/layout.ts';
import { KernelBug } from '../kernel/errors.ts';
import type { Guest, LockReport } from '../kernel/guest.ts';
import type { RunOptions, RunResult } from '../machine/machine.ts';
import { hazardName, type Hazard } from '../machine/events.ts';
import { judgeGuestRun, unlessPatched } from '../kernel/judge.ts';
import type { Verdict } from '../kernel/verdict.ts';

/** How a patcher run (text_poke_bp, v1, a broken variant) ended: its Verdict's check, in the words these results always used. */
export type PatchRunReason =
  | 'ok'
  /** The machine reported a hazard (cmc-unsynchronized, return-into-rewritten, an oracle's). */
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
  | 'unexpected-bytes';

export interface PatchRunResult {
  /** What the checks said; `ok`, `reason`, `detail`, `hazard` and `step` are derived from it. */
  verdict: Verdict;
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

/** A patcher run's reason for its Verdict (the names PatchRunResult has always used). */
export function patchRunReason(v: Verdict): PatchRunReason {
  if (v.ok) return 'ok';
  switch (v.check) {
    case 'hazard': return 'hazard';
    case 'int3-bug': return 'not-emulatable';
    case 'kernel-bug': return 'kernel-bug';
    case 'broken-lock': return 'broken-lock';
    case 'lost-wakeup': return 'all-halted';
    case 'unexpected-bytes': return 'unexpected-bytes';
    default: return 'unfinished';
  }
}

/** The fields every protocol result derives from its Verdict. */
export function verdictFields(v: Verdict): { ok: boolean; detail?: string; hazard?: Hazard; step: number } {
  if (v.ok) return { ok: true, step: v.step };
  const detail = v.hazard ? hazardName(v.hazard) : v.message;
  return { ok: false, step: v.step, ...(detail ? { detail } : {}), ...(v.hazard ? { hazard: v.hazard } : {}) };
}

/** Classify a finished run of a guest with a patcher: the guest's checks (src/kernel/judge.ts), then the patcher. */
export function judgePatchRun(guest: Guest, run: RunResult, patched: boolean): PatchRunResult {
  const j = judgeGuestRun(guest, run);
  const verdict = unlessPatched(guest, run, j.verdict, patched);
  return { verdict, ...verdictFields(verdict), reason: patchRunReason(verdict), patched, run, locks: j.locks };
}
