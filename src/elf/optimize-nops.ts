/**
 * optimize_nops() (Linux 6.1 arch/x86/kernel/alternative.c): after a site is handled, runs of
 * single-byte NOPs (0x90, the padding apply_alternatives adds) are replaced by Linux's longest
 * NOPs (add_nops). It walks instruction by instruction and stops at the first byte it cannot
 * decode, exactly like the kernel.
 */
import { nopPadding } from '../x86/nops.ts';
import { decodeKernelInsn } from './kernel-insn.ts';

/** Rewrites `instr[0, len)` in place. `at(i)` gives a decode window starting at instr[i] (may extend past len). */
export function optimizeNops(instr: Uint8Array, len: number, address: number, window: (i: number) => Uint8Array = (i) => instr.subarray(i)): void {
  let i = 0;
  for (;;) {
    const insn = decodeKernelInsn(window(i), address + i);
    if (insn === undefined) return;
    if (insn.length === 1 && instr[i] === 0x90) {
      let j = i;
      while (j < len && instr[j] === 0x90) j++;
      const n = j - i;
      if (n > 1) instr.set(nopPadding(n), i);
      i += n;
    } else {
      i += insn.length;
    }
    if (i >= len) return;
  }
}
