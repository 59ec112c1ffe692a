/**
 * The stock broken variants by name (DESIGN.md §5, negative controls), as protocols: each is a
 * stock protocol with one hook overridden (src/patching/broken.ts), so a scenario can name one
 * (`switch.variant`, `--variant`) and `pvpatch run` or `pvpatch check` judges it as it would a
 * user's protocol module. The checks must catch every one of them.
 */
import { brokenSteps, v1BrokenHooks, v2NoBarrierHooks, type BrokenVariant, type V1BrokenVariant } from './broken.ts';
import type { Protocol, ProtocolKind } from './protocol-api.ts';

interface VariantSpec {
  readonly kind: ProtocolKind;
  /** What differs from the stock protocol (shown in reports). */
  readonly says: string;
}

export const STOCK_VARIANTS = {
  'no-int3': { kind: 'text-poke-bp', says: 'text_poke_bp without the INT3 step: tails and first bytes go in while others run the site' },
  'no-sync': { kind: 'text-poke-bp', says: 'text_poke_bp whose sync serializes only the patcher' },
  'skip-one': { kind: 'text-poke-bp', says: 'text_poke_bp whose sync leaves out one vCPU (the highest but the patcher)' },
  'first-before-tail': { kind: 'text-poke-bp', says: 'text_poke_bp writing the first bytes before the tails' },
  'int3-retry': { kind: 'v1', says: 'v1 whose #BP handler returns to the INT3 instead of driving the state machine' },
  'nmi-iret': { kind: 'v1', says: 'v1 whose #BP handler returns with IRET in NMI context too (re-opens NMIs)' },
  'no-barrier': { kind: 'v2', says: 'v2 switching on a zero count before every vCPU passed the barrier' },
} as const satisfies Record<string, VariantSpec>;

export type StockVariant = keyof typeof STOCK_VARIANTS;
export const STOCK_VARIANT_NAMES = Object.keys(STOCK_VARIANTS) as StockVariant[];

/** The protocol kind a variant is a variant of. */
export function variantKind(v: StockVariant): ProtocolKind {
  return STOCK_VARIANTS[v].kind;
}

/** Variant `v` as a protocol for a guest of `vcpus` vCPUs patched by `patcherCpu`. */
export function variantProtocol(v: StockVariant, vcpus: number, patcherCpu: number): Protocol {
  const name = `${v}: ${STOCK_VARIANTS[v].says}`;
  switch (v) {
    case 'no-int3':
    case 'no-sync':
    case 'first-before-tail':
      return { kind: 'text-poke-bp', name, steps: brokenSteps({ variant: v satisfies BrokenVariant, patcherCpu }, vcpus) };
    case 'skip-one': {
      const skipCpu = patcherCpu === vcpus - 1 ? vcpus - 2 : vcpus - 1;
      return { kind: 'text-poke-bp', name, steps: brokenSteps({ variant: 'skip-one', patcherCpu, skipCpu }, vcpus) };
    }
    case 'int3-retry':
    case 'nmi-iret':
      return { kind: 'v1', name, hooks: v1BrokenHooks(v satisfies V1BrokenVariant) };
    case 'no-barrier':
      return { kind: 'v2', name, hooks: v2NoBarrierHooks() };
  }
}
