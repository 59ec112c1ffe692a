/**
 * apply_returns() and patch_return() (Linux 6.1.y arch/x86/kernel/alternative.c, ITS backport):
 * every `JMP __x86_return_thunk` that objtool recorded in `.return_sites` becomes `JMP
 * x86_return_thunk` (the thunk the mitigations chose) when the CPU wants a return thunk there,
 * else a plain `RET` padded with INT3. Static-call trampolines (a site followed by `0f b9 cc`, the
 * tramp_ud signature) are rewritten by `__static_call_fixup` to the same RET form
 * (arch/x86/kernel/static_call.c).
 */
import { encodeRel32, fitsRel32, JMP32_INSN_OPCODE, RET_INSN_OPCODE, INT3_INSN_OPCODE } from '../x86/relocate.ts';
import { featureByName } from './cpufeatures.ts';
import type { BootEnv } from './boot-env.ts';
import { inLowerHalfOfCacheline } from './apply-retpolines.ts';
import { decodeKernelInsn } from './kernel-insn.ts';
import type { PatchedText } from './patched-text.ts';

const X86_FEATURE_RETHUNK = featureByName('RETHUNK')!.bit;
const TRAMP_UD = [0x0f, 0xb9, 0xcc];

export type ReturnOutcome = 'patched' | 'unchanged' | 'static-call-trampoline' | 'not-a-return-thunk' | 'undecodable' | 'unknown-thunk';

/** cpu_wants_rethunk_at(): its_return_thunk only serves returns in the lower half of a cacheline. */
export function cpuWantsRethunkAt(addr: number, env: BootEnv): boolean {
  if (!env.features.has(X86_FEATURE_RETHUNK)) return false;
  if (!env.itsReturnThunk) return true;
  return inLowerHalfOfCacheline(addr);
}

/** The bytes patch_return writes for a `length`-byte return site at `addr` (pure). */
export function patchReturn(addr: number, length: number, env: BootEnv): Uint8Array | undefined {
  const out = new Uint8Array(length).fill(INT3_INSN_OPCODE);
  if (cpuWantsRethunkAt(addr, env)) {
    if (env.activeReturnThunk === undefined || !fitsRel32(env.activeReturnThunk - (addr + 5))) return undefined;
    out.set(encodeRel32(JMP32_INSN_OPCODE, addr, env.activeReturnThunk), 0);
  } else {
    out[0] = RET_INSN_OPCODE;
  }
  return out;
}

export function applyReturns(sites: readonly number[], text: PatchedText, env: BootEnv): ReturnOutcome[] {
  return sites.map((addr): ReturnOutcome => {
    const win = text.window(addr, 15);
    const insn = win === undefined ? undefined : decodeKernelInsn(win, addr);
    if (insn === undefined) return 'undecodable';
    const dest = insn.op1 === JMP32_INSN_OPCODE ? insn.branchTarget : undefined;
    const after = text.read(addr + 5, 3);
    if (after !== undefined && TRAMP_UD.every((b, i) => after[i] === b)) {
      // __static_call_fixup → __static_call_transform(tramp, RET, NULL, true): 5 bytes.
      if (insn.op1 === RET_INSN_OPCODE || dest === env.returnThunk) {
        const bytes = patchReturn(addr, 5, env);
        if (bytes === undefined) return 'unknown-thunk';
        text.write(addr, bytes);
      }
      return 'static-call-trampoline';
    }
    if (dest === undefined || dest !== env.returnThunk) return 'not-a-return-thunk';
    const bytes = patchReturn(addr, insn.length, env);
    if (bytes === undefined) return 'unknown-thunk';
    const before = text.read(addr, insn.length)!;
    const same = bytes.every((b, i) => b === before[i]);
    text.write(addr, bytes);
    return same ? 'unchanged' : 'patched';
  });
}
