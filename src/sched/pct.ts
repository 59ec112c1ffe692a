/**
 * PCT, probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): every actor gets a
 * random priority; the highest-priority enabled actor runs; at d-1 random steps the running
 * actor's priority drops below all others. A bug of depth d is found with probability at least
 * 1/(n·k^(d-1)) per run. Actors here are (vCPU, action kind) pairs, so a vCPU's store-buffer
 * drains and its steps are prioritised separately and TSO reorderings are explored too.
 */
import { actionKind, ActionKind, type Chooser, type ChoiceKind, type SchedulingPoint } from '../machine/chooser.ts';
import { Prng } from './prng.ts';

export interface PctOptions {
  seed: number;
  /** Bug depth d: d-1 priority change points (default 3). */
  depth?: number;
  /** Expected run length in scheduling decisions k, where change points are drawn (default 10,000). */
  length?: number;
}

export class PctChooser implements Chooser {
  readonly name = 'pct';
  private readonly rng: Prng;
  private readonly priority = new Map<number, number>();
  private readonly changePoints: number[];
  private decisions = 0;
  private lowest = 0;

  constructor(opts: PctOptions) {
    this.rng = new Prng(opts.seed);
    const depth = opts.depth ?? 3;
    const length = opts.length ?? 10_000;
    this.changePoints = Array.from({ length: Math.max(0, depth - 1) }, () => 1 + this.rng.int(length)).sort((a, b) => a - b);
  }

  private prio(actor: number): number {
    let p = this.priority.get(actor);
    if (p === undefined) {
      // A new actor gets a random priority above every lowered one.
      p = 1_000_000 + this.rng.int(1_000_000);
      this.priority.set(actor, p);
    }
    return p;
  }

  next(point: SchedulingPoint): number {
    this.decisions++;
    let best = 0;
    let bestP = -Infinity;
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      // Injections are rare events: give them the lowest priority unless nothing else can run.
      const p = actionKind(a) >= ActionKind.Nmi ? -1 : this.prio(a);
      if (p > bestP) { bestP = p; best = i; }
    }
    const chosen = point.actions[best]!;
    while (this.changePoints.length > 0 && this.changePoints[0]! <= this.decisions) {
      this.changePoints.shift();
      this.priority.set(chosen, this.lowest--);
    }
    return best;
  }

  choose(_kind: ChoiceKind, n: number): number {
    return this.rng.int(n);
  }
}
