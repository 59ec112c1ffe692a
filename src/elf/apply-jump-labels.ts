/**
 * Jump labels (static keys): jump_label_init() (kernel/jump_label.c) and the x86 patcher
 * (arch/x86/kernel/jump_label.c __jump_label_patch). Each `__jump_table` entry's site holds a
 * 2- or 5-byte JMP to its target or the NOP of that size (objtool NOPs the
 * `arch_static_branch` JMPs at build time); its state is
 * `jump_label_type = static_key_enabled(key) ^ branch`: JUMP_LABEL_JMP writes `jmp target`
 * (text_gen_insn), JUMP_LABEL_NOP writes x86_nops[size].
 *
 * A key's `enabled` count is the first word of struct static_key in .data (STATIC_KEY_INIT_TRUE
 * = 1); the boot environment may decide it otherwise (a key the kernel sets from CPU features,
 * the platform or the command line before user space runs). Every other key stays at its
 * static default; a running kernel may have flipped it since, which `--compare` names.
 */
import { linuxNop } from '../x86/nops.ts';
import { fitsRel8, JMP32_INSN_OPCODE, JMP8_INSN_OPCODE, putS32 } from '../x86/relocate.ts';
import type { KernelImage } from './image.ts';
import { decodeKernelInsn } from './kernel-insn.ts';
import type { PatchedText } from './patched-text.ts';
import type { JumpEntry } from './tables.ts';

export type JumpLabelOutcome = 'jmp' | 'nop' | 'unexpected-insn';

/** The two encodings of an entry's site, for `size` 2 or 5. */
export function jumpLabelBytes(e: JumpEntry, size: 2 | 5, jump: boolean): Uint8Array | undefined {
  if (!jump) return linuxNop(size);
  const out = new Uint8Array(size);
  const disp = e.target - (e.code + size);
  if (size === 2) {
    if (!fitsRel8(disp)) return undefined;
    out[0] = JMP8_INSN_OPCODE;
    out[1] = disp & 0xff;
  } else {
    out[0] = JMP32_INSN_OPCODE;
    putS32(out, 1, disp);
  }
  return out;
}

/** arch_jump_entry_size: the length of the instruction at the site (2 or 5), else undefined. */
export function jumpEntrySize(code: Uint8Array, address: number): 2 | 5 | undefined {
  const len = decodeKernelInsn(code, address)?.length;
  return len === 2 || len === 5 ? len : undefined;
}

/** static_key.enabled as the image initialises it. */
export function keyEnabledInImage(image: KernelImage, key: number): boolean | undefined {
  const b = image.read(key, 4);
  if (b === undefined) return undefined;
  return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) > 0;
}

export interface JumpLabelState {
  readonly outcome: JumpLabelOutcome;
  readonly size?: 2 | 5;
  /** The key's enabled state used. */
  readonly enabled?: boolean;
}

/** Every entry at its boot state: `decided(key)` when the boot environment decides the key, else the image's default. */
export function applyJumpLabels(entries: readonly JumpEntry[], text: PatchedText, decided: (key: number) => boolean | undefined): JumpLabelState[] {
  return entries.map((e): JumpLabelState => {
    const win = text.window(e.code, 15);
    const size = win === undefined ? undefined : jumpEntrySize(win, e.code);
    const enabled = decided(e.key) ?? keyEnabledInImage(text.image, e.key);
    if (size === undefined || enabled === undefined) return { outcome: 'unexpected-insn' };
    const jump = enabled !== e.branch;
    const bytes = jumpLabelBytes(e, size, jump);
    if (bytes === undefined) return { outcome: 'unexpected-insn' };
    text.write(e.code, bytes);
    return { outcome: jump ? 'jmp' : 'nop', size, enabled };
  });
}
