/**
 * ftrace_init() (kernel/trace/ftrace.c ftrace_process_locs → ftrace_init_nop, x86
 * arch/x86/kernel/ftrace.c ftrace_make_nop): every `__mcount_loc` entry is a `call __fentry__`
 * the compiler emitted at a function's start (CONFIG_FTRACE_MCOUNT_USE_CC); boot turns each into
 * the 5-byte NOP x86_nops[5], after checking the CALL is there (ftrace_modify_code_direct).
 * An entry that points elsewhere (a weak function the linker discarded leaves 0) is skipped.
 */
import { linuxNop } from '../x86/nops.ts';
import { CALL_INSN_OPCODE, rel32Target } from '../x86/relocate.ts';
import type { PatchedText } from './patched-text.ts';

export type FtraceOutcome = 'nop' | 'not-a-fentry-call' | 'outside-text';

const MCOUNT_INSN_SIZE = 5;

export function applyFtraceNops(sites: readonly number[], fentry: number | undefined, text: PatchedText): FtraceOutcome[] {
  const nop = linuxNop(MCOUNT_INSN_SIZE);
  return sites.map((addr): FtraceOutcome => {
    const b = text.read(addr, MCOUNT_INSN_SIZE);
    if (b === undefined || !text.image.isText(addr)) return 'outside-text';
    if (b[0] !== CALL_INSN_OPCODE || fentry === undefined || rel32Target(b, addr, MCOUNT_INSN_SIZE) !== fentry) return 'not-a-fentry-call';
    text.write(addr, nop);
    return 'nop';
  });
}
