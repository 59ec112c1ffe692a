/**
 * The hooks of v1's stop_machine (src/kernel/stop-machine.ts; RFC PATCH 15–19, seed 002), apart
 * from the state machine so that a protocol module or a negative control (src/patching/broken.ts)
 * reads them on their own.
 */
import type { ServiceContext } from '../machine/service.ts';

/** What v1's #BP handler has in hand at a site's INT3 (the `bpEmulation` hook's argument). */
export interface V1Int3 {
  readonly ctx: ServiceContext;
  /** The INT3's address (the site's first byte) and the site's index in the generation. */
  readonly ip: number;
  readonly site: number;
  /** in_nmi() of the interrupted context (preempt_count's NMI bits). */
  readonly inNmi: boolean;
  /** Drive the state machine until the site's first byte is final (primary: poke; secondary: ack). */
  drive(): Generator<number, void, void>;
  /** Return to the site's first byte; `keepNmiBlocked`: without re-opening NMIs (no IRET semantics). */
  resume(keepNmiBlocked: boolean): Generator<number, void, void>;
}

/** The hooks of v1 (src/patching/protocol-api.ts documents them); V1_HOOKS is the RFC's. */
export interface V1Hooks {
  /** The order the primary waits for the secondaries' acknowledgements of a state. */
  ackOrder(secondaries: readonly number[]): readonly number[];
  /** The #BP handler at a site v1 is patching. */
  bpEmulation(h: V1Int3): Generator<number, void, void>;
}

export const V1_HOOKS: V1Hooks = {
  ackOrder: (secondaries) => secondaries,
  // Drive the state machine instead of emulating, then execute the new instruction. In NMI
  // context return without IRET (the RFC's sync_one() serializes with CPUID there): an IRET
  // would re-open NMIs and let a second NMI nest (seeds 000, 002; SDM 6.7.1).
  *bpEmulation(h) {
    yield* h.drive();
    yield* h.resume(h.inNmi);
  },
};
