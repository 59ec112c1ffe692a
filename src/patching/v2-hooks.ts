/**
 * The hooks of v2 (src/patching/v2.ts; seed 001 "so now v2"), apart from the switcher so that the
 * negative controls (src/patching/broken.ts) derive from them without importing the switcher.
 */
import type { ServiceContext } from '../machine/service.ts';
import { LOCKOP } from '../kernel/lockop-barrier.ts';

/** The flip condition's view: the patcher's context and the vCPU count. */
export interface V2Flip {
  readonly ctx: ServiceContext;
  readonly nCpus: number;
}

/** The hooks of v2 (src/patching/protocol-api.ts documents them); V2_HOOKS is the talk's design. */
export interface V2Hooks {
  /**
   * Step 4's precondition, tried before each cmpxchg(word, 0, FLIPPED): every vCPU has passed the
   * global barrier, so every slowpath lock-op still running is counted in the word.
   */
  flipCondition(f: V2Flip): Generator<number, boolean, void>;
  /** Step 2: where a vCPU passes the global barrier — lockop_checkpoint(), holding no lock. */
  barrierPoint(ctx: ServiceContext, pass: () => Generator<number, void, void>): Generator<number, void, void>;
}

export const V2_HOOKS: V2Hooks = {
  *flipCondition({ ctx, nCpus }) {
    return (yield* ctx.load(LOCKOP.passed, 4)) === nCpus;
  },
  barrierPoint: (_ctx, pass) => pass(),
};
