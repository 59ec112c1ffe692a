/**
 * The Chooser interface and its strategies (DESIGN.md §3), one file per strategy:
 * - timed.ts: discrete-event simulation over the cost model (performance);
 * - random.ts: seeded uniform choice, spin loops de-prioritised (bug finding);
 * - pct.ts: probabilistic concurrency testing (priorities with d-1 change points), spin-aware;
 * - replay.ts: a recorded schedule string, decision by decision.
 * Shared by random and PCT: injection.ts (when a budget of NMIs, IRQs or host preemptions is spent:
 * paced, conditional) and run-length.ts (the measured run length they spread decisions over).
 * The interface itself is declared in src/machine/chooser.ts, where the run loop calls it.
 */
export {
  ActionKind,
  CostClass,
  action,
  actionCpu,
  actionKind,
  FirstEnabled,
  type Chooser,
  type ChoiceKind,
  type SchedulingPoint,
} from '../machine/chooser.ts';
