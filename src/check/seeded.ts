/**
 * The seeded strategies as the explorer runs them (src/check/explore.ts): one chooser per
 * execution from its seed. `preemptions` is PCT's bug depth minus one (its priority change points).
 */
import { RandomChooser } from '../sched/random.ts';
import { PctChooser } from '../sched/pct.ts';
import type { SeededStrategy } from './explore.ts';

export type SeededStrategyName = 'random' | 'pct';
export const SEEDED_STRATEGIES: readonly SeededStrategyName[] = ['random', 'pct'];

export interface SeededOptions {
  /** PCT: change points (depth d = preemptions + 1); default 2 (PCT's usual d = 3). */
  readonly preemptions?: number;
}

export function seededStrategy(name: SeededStrategyName, opts: SeededOptions = {}): SeededStrategy {
  switch (name) {
    case 'random': return { kind: 'seeded', name, chooser: (seed) => new RandomChooser(seed, { bursts: true }) };
    case 'pct': {
      const depth = (opts.preemptions ?? 2) + 1;
      return { kind: 'seeded', name, chooser: (seed) => new PctChooser({ seed, depth }) };
    }
  }
}
