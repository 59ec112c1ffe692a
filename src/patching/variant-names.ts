/**
 * The names of the stock broken variants (src/patching/variants.ts builds them) and the protocol
 * each is a variant of. Apart from it so that the CLI's help can list them without loading the
 * protocols, the guest and the decoder (issue 12: `pvpatch --help` start-up).
 */
import type { SwitchProtocol } from './switch-protocols.ts';

export const STOCK_VARIANT_KINDS = {
  'no-int3': 'text-poke-bp',
  'no-sync': 'text-poke-bp',
  'skip-one': 'text-poke-bp',
  'first-before-tail': 'text-poke-bp',
  'int3-retry': 'v1',
  'nmi-iret': 'v1',
  'no-barrier': 'v2',
} as const satisfies Record<string, SwitchProtocol>;

export type StockVariant = keyof typeof STOCK_VARIANT_KINDS;
export const STOCK_VARIANT_NAMES = Object.keys(STOCK_VARIANT_KINDS) as StockVariant[];
