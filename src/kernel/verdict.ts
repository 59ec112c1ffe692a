/**
 * One verdict for every check (DESIGN.md §6): whatever judged an execution — a machine hazard,
 * a lock counter, a lost wake-up, the atomic-switch oracle, the INT3 handler's BUG, a machine
 * fault, the step limit — says it in this one shape, so the explorer, `run --seeds`, `check` and
 * the benches read one thing. It lives in the kernel layer because the patching protocols judge
 * their runs with it and may not import src/check/ (which re-exports it as the shared contract).
 */
import type { Hazard } from '../machine/events.ts';

export type CheckKind =
  /** A machine hazard: cmc-unsynchronized, return-into-rewritten, or an oracle's (non-atomic-switch, ...). */
  | 'hazard'
  /** A lock's shared counter disagrees with its acquisitions: mutual exclusion broke. */
  | 'broken-lock'
  /** Every vCPU halted with work unfinished (no vCPU halted forever on a free lock). */
  | 'lost-wakeup'
  /** The INT3 handler met an address it does not know, or an instruction it cannot emulate. */
  | 'int3-bug'
  /** Another kernel BUG the guest raised. */
  | 'kernel-bug'
  /** The guest faulted or ran an unsupported instruction. */
  | 'machine-fault'
  /** The run hit its instruction limit before finishing: no progress within the bound. */
  | 'step-limit'
  /** The same machine state came back: the run cannot make progress. */
  | 'livelock'
  /** A protocol refused a site whose bytes it did not expect (not a bug of the protocol). */
  | 'unexpected-bytes'
  /** The run finished but the work it was given (tasks, the patcher) did not. */
  | 'unfinished'
  /** A runtime switch gave up (-EAGAIN: every attempt aborted under load); the guest keeps its old ops. */
  | 'switch-aborted'
  /** An INT3 handler emulated an instruction that is neither its site's old nor its new one. */
  | 'foreign-emulation'
  /** The old and new lock implementations disagree on what a lock word means: the switch refused. */
  | 'lock-word-disagreement'
  /** A switch finished, but a patched site or pv_ops slot is not what a fresh boot of the final flavour has. */
  | 'text-differs';

export type Verdict =
  | { readonly ok: true; readonly step: number }
  | {
      readonly ok: false;
      readonly check: CheckKind;
      /** The violating step (the hazard's, else where the run ended and the checks ran). */
      readonly step: number;
      /** The vCPU the violation is about, where there is one. */
      readonly cpu?: number;
      /** One line for a user: what broke. */
      readonly message: string;
      readonly hazard?: Hazard;
    };

export function clean(step: number): Verdict {
  return { ok: true, step };
}

export function violation(check: CheckKind, step: number, message: string, extra: { cpu?: number; hazard?: Hazard } = {}): Verdict {
  return { ok: false, check, step, message, ...extra };
}
