/**
 * The DPOR search (src/check/dpor.ts) as the explorer's exhaustive strategy (src/check/explore.ts):
 * each execution it ends is handed to the driver as it ends; the search stops at its first
 * violation (whose schedule comes with its result) or when the budget is spent. `exhausted` is
 * DPOR's own: every branch within the bounds explored and no bound cut anything.
 *
 * A subject with a focus step (a guest: its hint step) is searched in a window (DporWindow):
 * a seeded random prefix to the focus step, branches for FOCUS_WINDOW_STEPS steps after it. Its
 * verdict is then at best bounded-clean, never exhausted.
 */
import { exploreDpor, type DporExecution, type DporWindow } from './dpor.ts';
import type { Subject } from './subject.ts';

/**
 * How many steps past a subject's focus step DPOR branches: a guest's text_poke_bp or v2 switch
 * starts within a few hundred steps of its hint and the stock variants break inside that span.
 */
export const FOCUS_WINDOW_STEPS = 1300;

export function focusWindow(subject: Subject): DporWindow | undefined {
  return subject.focusStep === undefined ? undefined : { fromStep: subject.focusStep, toStep: subject.focusStep + FOCUS_WINDOW_STEPS };
}
import type { ExhaustiveStrategy, ExhaustiveVisit } from './explore.ts';

/** Thrown from DPOR's execution callback when the driver says the budget is spent. */
class BudgetSpent extends Error {}

function visitOfDpor(e: DporExecution): ExhaustiveVisit {
  return {
    stop: e.end,
    steps: e.steps,
    ...(e.verdict !== undefined ? { verdict: e.verdict } : {}),
    ...(e.finalState !== undefined ? { finalState: e.finalState } : {}),
  };
}

/**
 * Restart `seed` (1, 2, ...) of a window search: its prefix seed, and a start shifted by a
 * quarter of the window's span in turn (the patch may be well under way before a bug's window).
 */
function shifted(w: DporWindow, seed: number): DporWindow {
  const shift = ((seed - 1) % PREFIX_SHIFTS) * Math.floor((w.toStep - w.fromStep) / 10);
  return { fromStep: w.fromStep + shift, toStep: w.toStep + shift, seed };
}

const PREFIX_SHIFTS = 4;

/** One window search before the next prefix seed: the first executions of a window find its bugs, if any. */
export const EXECUTIONS_PER_PREFIX = 5;

export function dporStrategy(preemptions?: number): ExhaustiveStrategy {
  return {
    kind: 'exhaustive',
    name: 'dpor',
    ...(preemptions !== undefined ? { preemptions } : {}),
    explore(subject, limits, visit, opts) {
      const window = focusWindow(subject);
      let left = opts.maxExecutions ?? Infinity;
      try {
        // Without a window, one search; with one, a search per prefix seed (1, 2, ...) until the
        // budget is spent: each explores the window from another state the random prefix reaches.
        for (let seed = 1; ; seed++) {
          let violating: DporExecution | undefined;
          const cap = window === undefined ? left : Math.min(left, EXECUTIONS_PER_PREFIX);
          const r = exploreDpor(
            subject,
            {
              ...(preemptions !== undefined ? { preemptions } : {}),
              ...(cap !== Infinity ? { maxExecutions: cap } : {}),
              ...(window !== undefined ? { window: shifted(window, seed) } : {}),
            },
            {
              limits,
              stopAtFirstViolation: true,
              onExecution: (e) => {
                // The violating execution is the last one; it is visited below, with its schedule.
                if (e.verdict !== undefined && !e.verdict.ok) { violating = e; return; }
                if (!visit(visitOfDpor(e))) throw new BudgetSpent();
              },
            },
          );
          if (r.violation !== undefined) {
            const v = r.violation;
            visit({ ...(violating !== undefined ? visitOfDpor(violating) : { stop: 'violation', steps: v.steps }), verdict: v.verdict, schedule: v.schedule.toString() });
            return { complete: false };
          }
          left -= r.executions;
          if (window === undefined) return { complete: r.exhausted };
          if (left <= 0) return { complete: false };
        }
      } catch (e) {
        if (e instanceof BudgetSpent) return { complete: false };
        throw e;
      }
    },
  };
}
