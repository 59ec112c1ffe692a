/**
 * apply_retpolines() and patch_retpoline() (Linux 6.1.y arch/x86/kernel/alternative.c, with the
 * ITS backport): every compiler-generated `CALL/JMP/Jcc __x86_indirect_thunk_<reg>` recorded by
 * objtool in `.retpoline_sites` is left alone when the kernel runs full retpolines
 * (X86_FEATURE_RETPOLINE without RETPOLINE_LFENCE); otherwise it becomes `[lfence;] call/jmp *%reg`
 * (plus `int3` after a JMP, NOP padding), or an inverted short Jcc around such a JMP.
 */
import { CALL_INSN_OPCODE, JMP32_INSN_OPCODE, INT3_INSN_OPCODE } from '../x86/relocate.ts';
import { featureByName } from './cpufeatures.ts';
import type { BootEnv } from './boot-env.ts';
import { decodeKernelInsn } from './kernel-insn.ts';
import { optimizeNops } from './optimize-nops.ts';
import type { PatchedText } from './patched-text.ts';

const RETPOLINE_THUNK_SIZE = 32;
const bit = (name: string): number => featureByName(name)!.bit;
const X86_FEATURE_RETPOLINE = bit('RETPOLINE');
const X86_FEATURE_RETPOLINE_LFENCE = bit('RETPOLINE_LFENCE');
const X86_FEATURE_INDIRECT_THUNK_ITS = bit('INDIRECT_THUNK_ITS');

/** Why a site was left as it was, or that its bytes cannot be predicted. */
export type RetpolineOutcome = 'patched' | 'kept' | 'not-a-thunk-call' | 'undecodable' | 'its-thunk-page';

/** CALL/JMP *%reg (emit_indirect). */
function emitIndirect(op: number, reg: number): number[] {
  const out: number[] = [];
  if (reg >= 8) out.push(0x41); // REX.B
  out.push(0xff, 0xc0 | (op === CALL_INSN_OPCODE ? 0x10 : 0x20) | (reg & 7));
  return out;
}

/** Lower half of a 64-byte cacheline, the ITS-unsafe place for an indirect branch's last byte. */
export function inLowerHalfOfCacheline(addr: number): boolean {
  return ((addr % 64) + 64) % 64 < 32;
}

/**
 * patch_retpoline: the bytes for one site, or an outcome saying why there are none. Pure: reads
 * only `insnBytes` (the current site) and `env`.
 */
export function patchRetpoline(address: number, insnBytes: Uint8Array, env: BootEnv): { outcome: RetpolineOutcome; bytes?: Uint8Array } {
  const insn = decodeKernelInsn(insnBytes, address);
  if (insn === undefined) return { outcome: 'undecodable' };
  let op = insn.op1;
  const isJcc32 = op === 0x0f && insn.op2 >= 0x80 && insn.op2 <= 0x8f;
  if (!(op === CALL_INSN_OPCODE || op === JMP32_INSN_OPCODE || isJcc32) || insn.branchTarget === undefined || env.indirectThunkArray === undefined) {
    return { outcome: 'not-a-thunk-call' };
  }
  const delta = insn.branchTarget - env.indirectThunkArray;
  const reg = delta / RETPOLINE_THUNK_SIZE;
  if (!Number.isInteger(reg) || reg < 0 || reg > 15 || reg === 4) return { outcome: 'not-a-thunk-call' };
  const has = (b: number): boolean => env.features.has(b);
  if (has(X86_FEATURE_RETPOLINE) && !has(X86_FEATURE_RETPOLINE_LFENCE)) return { outcome: 'kept' };

  const bytes: number[] = [];
  if (isJcc32) {
    bytes.push(0x70 + ((insn.op2 & 0xf) ^ 1), insn.length - 2); // Jncc.d8 over the JMP
    op = JMP32_INSN_OPCODE;
  }
  if (has(X86_FEATURE_RETPOLINE_LFENCE)) bytes.push(0x0f, 0xae, 0xe8);
  // cpu_wants_indirect_its_thunk_at: the kernel then allocates a thunk in a fresh module_alloc()
  // page, whose address is decided at run time.
  if (has(X86_FEATURE_INDIRECT_THUNK_ITS) && inLowerHalfOfCacheline(address + bytes.length + 1 + (reg >= 8 ? 1 : 0))) {
    return { outcome: 'its-thunk-page' };
  }
  bytes.push(...emitIndirect(op, reg));
  if (op === JMP32_INSN_OPCODE && bytes.length < insn.length) bytes.push(INT3_INSN_OPCODE);
  while (bytes.length < insn.length) bytes.push(0x90);
  if (bytes.length !== insn.length) return { outcome: 'kept' };
  const out = Uint8Array.from(bytes);
  optimizeNops(out, out.length, address);
  return { outcome: 'patched', bytes: out };
}

/** apply_retpolines over `.retpoline_sites`, in table order. Returns the outcome per site. */
export function applyRetpolines(sites: readonly number[], text: PatchedText, env: BootEnv): RetpolineOutcome[] {
  return sites.map((addr) => {
    const win = text.window(addr, 15);
    if (win === undefined) return 'undecodable';
    const r = patchRetpoline(addr, win, env);
    if (r.bytes !== undefined) text.write(addr, r.bytes);
    return r.outcome;
  });
}
