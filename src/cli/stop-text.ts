/** Why a run stopped, in words a user reads (the run loop's StopReason is for code). */
import type { RunResult } from '../machine/machine.ts';

export interface StopContext {
  /** The instruction limit the run had. */
  maxInstructions?: number;
  /** vCPUs a machine scenario waits for (run.stopWhenHalted). */
  stopWhenHalted?: readonly number[];
}

export function stopText(r: RunResult, ctx: StopContext = {}): string {
  switch (r.reason) {
    case 'until':
      return ctx.stopWhenHalted !== undefined && ctx.stopWhenHalted.length > 0
        ? `vCPU${ctx.stopWhenHalted.length > 1 ? 's' : ''} ${ctx.stopWhenHalted.join(', ')} halted, as run.stopWhenHalted asks`
        : 'the run reached the point it waits for';
    case 'all-halted':
      return 'every vCPU halted with nothing left to wake it';
    case 'limit':
      return `the instruction limit${ctx.maxInstructions !== undefined ? ` (${ctx.maxInstructions.toLocaleString('en-US')})` : ''} was reached (raise it with --max-instructions)`;
    case 'hazard':
      return 'a hazard was found';
    case 'error':
      return `an error${r.error ? `: ${r.error.message}` : ''}`;
    case 'misfit':
      return `the schedule stopped fitting the run${r.misfit ? `: ${r.misfit.message}` : ''}`;
  }
}
