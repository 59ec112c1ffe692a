/**
 * The one Verdict every check speaks (DESIGN.md §6), as the explorer, `run --seeds`, `check` and
 * the benches import it. The type itself lives in src/kernel/verdict.ts: the patching protocols
 * (src/patching/, which must not import src/check/) judge their runs with it too.
 */
export { clean, violation, type CheckKind, type Verdict } from '../kernel/verdict.ts';
