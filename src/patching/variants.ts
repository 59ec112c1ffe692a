/**
 * The stock broken variants by name (DESIGN.md §5, negative controls), as protocols: each is a
 * stock protocol with one hook overridden (src/patching/broken.ts), so a scenario can name one
 * (`switch.variant`, `--variant`) and `pvpatch run` or `pvpatch check` judges it as it would a
 * user's protocol module. The checks must catch every one of them.
 */
import { brokenSteps, v1BrokenHooks, v2NoBarrierHooks, type BrokenVariant, type V1BrokenVariant } from './broken.ts';
import type { Protocol, ProtocolKind } from './protocol-api.ts';
import { STOCK_VARIANT_KINDS, STOCK_VARIANT_NAMES, type StockVariant } from './variant-names.ts';

/** What each variant changes (shown in reports). */
const SAYS: Record<StockVariant, string> = {
  'no-int3': 'text_poke_bp without the INT3 step: tails and first bytes go in while others run the site',
  'no-sync': 'text_poke_bp whose sync serializes only the patcher',
  'skip-one': 'text_poke_bp whose sync leaves out one vCPU (the highest but the patcher)',
  'first-before-tail': 'text_poke_bp writing the first bytes before the tails',
  'int3-retry': 'v1 whose #BP handler returns to the INT3 instead of driving the state machine',
  'nmi-iret': 'v1 whose #BP handler returns with IRET in NMI context too (re-opens NMIs)',
  'no-barrier': 'v2 switching on a zero count before every vCPU passed the barrier',
};

export { STOCK_VARIANT_NAMES, type StockVariant };

/** The protocol kind a variant is a variant of. */
export function variantKind(v: StockVariant): ProtocolKind {
  return STOCK_VARIANT_KINDS[v];
}

/** Variant `v` as a protocol for a guest of `vcpus` vCPUs patched by `patcherCpu`. */
export function variantProtocol(v: StockVariant, vcpus: number, patcherCpu: number): Protocol {
  const name = `${v}: ${SAYS[v]}`;
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
