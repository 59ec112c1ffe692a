/**
 * The platforms whose boot patching `inspect` reproduces (src/elf/platforms.ts defines what each
 * does). Apart from it so that the CLI can list them in its help without loading the ELF readers
 * and the decoder (issue 12: `pvpatch --help` start-up).
 */
export type Platform = 'bare-metal' | 'kvm' | 'kvm-realtime' | 'xen-pv';
export const PLATFORMS: readonly Platform[] = ['bare-metal', 'kvm', 'kvm-realtime', 'xen-pv'];
