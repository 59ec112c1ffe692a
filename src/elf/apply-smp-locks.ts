/**
 * alternatives_smp_unlock() (arch/x86/kernel/alternative.c): when no other CPU will come up
 * (`nosmp`, `maxcpus=0|1`: setup_max_cpus <= 1, or a single present CPU), alternative_instructions
 * patches the kernel to uniprocessor code: every `lock` prefix objtool's LOCK_PREFIX recorded in
 * `.smp_locks` inside [_text, _etext) becomes a DS segment override (0xf0 → 0x3e), a one-byte
 * NOP prefix. Entries of 0 (the section's page padding) are skipped, as the kernel does.
 */
import type { PatchedText } from './patched-text.ts';

export type SmpLockOutcome = 'unlocked' | 'not-lock' | 'outside-text';

const LOCK_PREFIX = 0xf0;
const DS_PREFIX = 0x3e;

export function applySmpUnlock(sites: readonly (number | undefined)[], text: PatchedText, textStart: number, textEnd: number): SmpLockOutcome[] {
  return sites.map((addr): SmpLockOutcome => {
    if (addr === undefined || addr < textStart || addr >= textEnd) return 'outside-text';
    const b = text.read(addr, 1);
    if (b === undefined || b[0] !== LOCK_PREFIX) return 'not-lock';
    text.write(addr, Uint8Array.of(DS_PREFIX));
    return 'unlocked';
  });
}

/** Whether the command line keeps other CPUs down (setup_max_cpus <= 1). */
export function uniprocessorBoot(options: ReadonlyMap<string, string | true>): boolean {
  if (options.has('nosmp')) return true;
  const max = options.get('maxcpus');
  return typeof max === 'string' && /^\d+$/.test(max) && Number(max) <= 1;
}
