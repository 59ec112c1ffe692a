/**
 * apply_seal_endbr() (arch/x86/kernel/alternative.c, CONFIG_X86_KERNEL_IBT): every function objtool
 * found whose address is never taken (`.ibt_endbr_seal`) has its `endbr64` (f3 0f 1e fa) replaced
 * by a 4-byte poison NOP (gen_endbr_poison: `nopl -42(%rax)`, 0f 1f 40 d6, in 6.1; since 6.2 the
 * OSP NOP3 `nopw (%rax)`, 66 0f 1f 00, unique to former ENDBR sites), so an indirect branch to
 * it traps with IBT. poison_endbr() writes it whatever the CPU; a site that is not an ENDBR is
 * left alone (WARN_ON_ONCE in the kernel).
 */
import type { PatchedText } from './patched-text.ts';
import type { PatchDialect } from './table-layouts.ts';

export type EndbrOutcome = 'sealed' | 'not-endbr';

const ENDBR64 = [0xf3, 0x0f, 0x1e, 0xfa];
const ENDBR_POISON: Record<PatchDialect, Uint8Array> = { '6.1': Uint8Array.of(0x0f, 0x1f, 0x40, 0xd6), '6.12': Uint8Array.of(0x66, 0x0f, 0x1f, 0x00) };

export function applySealEndbr(sites: readonly number[], text: PatchedText, dialect: PatchDialect): EndbrOutcome[] {
  const poison = ENDBR_POISON[dialect];
  return sites.map((addr): EndbrOutcome => {
    const b = text.read(addr, 4);
    if (b === undefined || !ENDBR64.every((x, i) => b[i] === x)) return 'not-endbr';
    text.write(addr, poison);
    return 'sealed';
  });
}
