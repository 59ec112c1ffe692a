/**
 * The expected length of a run, in machine steps, for strategies that spread decisions over it
 * (PCT's change points, paced injections). Drawn over a fixed 10,000 decisions, a 10-step litmus
 * test never saw a change point and a 300,000-step guest run saw all of them in its first few
 * percent; so the length is measured on the subject itself.
 */

/** What a strategy assumes before anything was measured: a small guest run's order of magnitude. */
export const FIRST_GUESS_STEPS = 2_000;

/**
 * Measure the run length: `measure(length)` runs one execution of the subject with a fixed seed
 * and that expected length and returns the steps it took, or undefined when it stopped at its
 * step limit (a livelock says nothing about where a run's events happen: the guess stands).
 * Starting from the first guess, repeat until two rounds agree within a quarter (at most `rounds`
 * executions): a function of the subject alone, so every seed of a sweep that uses it stays
 * reproducible on its own.
 */
export function measureRunLength(measure: (length: number) => number | undefined, rounds = 3, firstGuess = FIRST_GUESS_STEPS): number {
  let length = firstGuess;
  for (let i = 0; i < rounds; i++) {
    const measured = measure(length);
    if (measured === undefined) break;
    const steps = Math.max(1, measured);
    const settled = Math.abs(steps - length) <= length / 4;
    length = steps;
    if (settled) break;
  }
  return length;
}
