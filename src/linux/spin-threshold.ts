/**
 * The speed knob (issue 10, item 8): SPIN_THRESHOLD (1 << 15, kernel/locking/qspinlock_paravirt.h)
 * is how many times a PV waiter spins before it halts in pv_wait. The compiler made it two
 * immediates in __pv_queued_spin_lock_slowpath, `mov $0x8000, %reg`: one for pv_wait_node's loop,
 * one for pv_wait_head_or_lock's. A scenario may write a smaller value into both (as a kernel
 * built with a smaller SPIN_THRESHOLD would have), so that sweeps of the real code reach the halt
 * in hundreds of instructions instead of tens of thousands; the run header names it as a
 * deviation from the real kernel.
 */
import { Op, Opd } from '../x86/insn.ts';
import { decodeInsn } from '../x86/decode.ts';
import type { PatchedText } from '../elf/patched-text.ts';
import type { Memory } from '../machine/memory.ts';
import type { LinuxKernel } from './kernel.ts';
import { symbolOf } from './kernel.ts';
import { LinuxGuestError } from './errors.ts';

export const SPIN_THRESHOLD = 1 << 15;

/** The address of each SPIN_THRESHOLD immediate (the imm32 of `mov $0x8000, %r32`), in code order. */
export function spinThresholdImmediates(text: PatchedText, kernel: LinuxKernel): number[] {
  const start = symbolOf(kernel, '__pv_queued_spin_lock_slowpath');
  const out: number[] = [];
  let at = start;
  while (at === start || kernel.image.symbols.nameAt(at) === undefined) {
    const bytes = text.window(at, 15);
    if (bytes === undefined) break;
    const insn = decodeInsn(bytes, at);
    // B8+r id: the immediate is the last four bytes of the instruction.
    if (insn.op === Op.MOV && insn.k0 === Opd.REG && insn.k1 === Opd.IMM && insn.immLo === SPIN_THRESHOLD && insn.len === 5) out.push(at + 1);
    at += insn.len;
  }
  if (out.length !== 2) throw new LinuxGuestError(`${kernel.release}: expected the two SPIN_THRESHOLD immediates (mov $0x8000) in __pv_queued_spin_lock_slowpath, found ${out.length}`);
  return out;
}

/** Write `value` into both immediates, as the loader (before any vCPU runs). */
export function setSpinThreshold(mem: Memory, immediates: readonly number[], value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > 0x7fffffff) throw new LinuxGuestError(`spin threshold must be an integer 1..2^31-1, not ${value}`);
  for (const at of immediates) mem.writeBytes(at, [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff]);
}
