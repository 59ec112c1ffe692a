/**
 * The names of the protocols a guest scenario can switch its lock ops with (src/patching/
 * hint-switch.ts runs them). Apart from it so that the CLI can list them in its help without
 * loading the protocols, the guest and the decoder (issue 12: `pvpatch --help` start-up).
 */
export const SWITCH_PROTOCOLS = ['v2', 'v1', 'text-poke-bp'] as const;
export type SwitchProtocol = (typeof SWITCH_PROTOCOLS)[number];
