/**
 * apply_alternatives() (Linux 6.1 arch/x86/kernel/alternative.c): in table order (a later entry
 * may overwrite an earlier one, which memcpy/memset rely on), copy each replacement over its site
 * when boot_cpu_has(feature) (or its absence, for ALT_NOT), re-targeting a 5-byte CALL and turning a
 * copied JMP into the shortest JMP that reaches (recompute_jump), pad with 0x90, then
 * optimize_nops() the site whether it was patched or not.
 */
import { nopPadding } from '../x86/nops.ts';
import { getS32, putS32, relocateRel32, CALL_INSN_OPCODE, JMP8_INSN_OPCODE, JMP32_INSN_OPCODE } from '../x86/relocate.ts';
import type { BootEnv } from './boot-env.ts';
import { EXTRA_FEATURE_BASE, X86_FEATURE_LIMIT } from './cpufeatures.ts';
import { optimizeNops } from './optimize-nops.ts';
import type { PatchedText } from './patched-text.ts';
import type { AltInstr } from './tables.ts';

const MAX_PATCH_LEN = 255 - 1;

/** Whether apply_alternatives copies this entry's replacement for the given features. */
export function altApplies(a: AltInstr, features: ReadonlySet<number>): boolean {
  return features.has(a.feature) !== a.inverted;
}

/**
 * recompute_jump: a 5-byte replacement starting with JMP is re-aimed from the site, as a 2-byte
 * JMP + 3-byte NOP when the forward distance fits a rel8. The kernel's negative-offset test
 * (`((n_dspl - 2) & 0xff) == (n_dspl - 2)`) never holds for a negative value, so backward jumps
 * always stay 5 bytes; we keep that quirk.
 */
function recomputeJump(a: AltInstr, buf: Uint8Array): void {
  if (a.replacementlen !== 5) return;
  const oDspl = getS32(buf, 1);
  const target = a.replacement + a.replacementlen + oDspl;
  let n = target - a.address;
  const twoByte = n >= 0 ? n - 2 <= 127 : ((n - 2) & 0xff) === n - 2;
  if (twoByte) {
    n -= 2;
    buf[0] = JMP8_INSN_OPCODE;
    buf[1] = n & 0xff;
    buf.set(nopPadding(3), 2);
  } else {
    n -= 5;
    buf[0] = JMP32_INSN_OPCODE;
    putS32(buf, 1, n);
  }
}

/** The bytes written at an entry's site when it applies (before optimize_nops); pure. */
export function alternativeBytes(a: AltInstr, replacement: Uint8Array): Uint8Array {
  const size = Math.max(a.instrlen, a.replacementlen);
  const buf = new Uint8Array(size).fill(0x90);
  buf.set(replacement.subarray(0, a.replacementlen), 0);
  if (a.replacementlen === 5 && buf[0] === CALL_INSN_OPCODE) relocateRel32(buf, 1, a.replacement, a.address);
  if (a.replacementlen > 0 && (replacement[0] === JMP8_INSN_OPCODE || replacement[0] === JMP32_INSN_OPCODE)) recomputeJump(a, buf);
  return buf;
}

export type AltOutcome = 'patched' | 'not-applied' | 'bad-entry';

export function applyAlternatives(entries: readonly AltInstr[], text: PatchedText, env: BootEnv): AltOutcome[] {
  return entries.map((a): AltOutcome => {
    // The kernel BUG()s on these; a corrupt table must not stop the others here.
    if (a.instrlen > MAX_PATCH_LEN || (a.feature >= X86_FEATURE_LIMIT && a.feature < EXTRA_FEATURE_BASE)) return 'bad-entry';
    let outcome: AltOutcome = 'not-applied';
    if (altApplies(a, env.features)) {
      const repl = text.read(a.replacement, a.replacementlen);
      if (repl === undefined) return 'bad-entry';
      if (!text.write(a.address, alternativeBytes(a, repl))) return 'bad-entry';
      outcome = 'patched';
    }
    const site = text.read(a.address, a.instrlen);
    if (site === undefined) return 'bad-entry';
    const copy = site.slice();
    optimizeNops(copy, a.instrlen, a.address, (i) => (i < a.instrlen ? concatWindow(copy, i, text.window(a.address + a.instrlen, 15)) : text.window(a.address + i, 15) ?? new Uint8Array(0)));
    text.write(a.address, copy);
    return outcome;
  });
}

/** copy[i..] followed by the bytes after the site, so an instruction that crosses the site end decodes as in memory. */
function concatWindow(copy: Uint8Array, i: number, after: Uint8Array | undefined): Uint8Array {
  const head = copy.subarray(i);
  if (head.length >= 15 || after === undefined) return head;
  const out = new Uint8Array(Math.min(15, head.length + after.length));
  out.set(head, 0);
  out.set(after.subarray(0, out.length - head.length), head.length);
  return out;
}
