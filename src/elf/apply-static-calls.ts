/**
 * Static calls: static_call_init() (kernel/static_call_inline.c __static_call_init) rewrites every
 * `.static_call_sites` entry, a `call/jmp __SCT__<name>` objtool recorded, to reach the key's
 * current function directly, through arch_static_call_transform()
 * (arch/x86/kernel/static_call.c __static_call_transform):
 *   CALL func | NOP (x86_nops[5], func NULL) | JMP func (tail) | RET (tail, func NULL: `ret; int3 x4`,
 *   or `jmp x86_return_thunk` with X86_FEATURE_RETHUNK), and a call of __static_call_return0
 *   becomes `xor %eax,%eax` with three CS prefixes (xor5rax).
 * A key (`__SCK__<name>`, struct static_call_key) holds its function in its first word. The
 * trampolines `__SCT__<name>` (`jmp func`, or RET) are left as the image has them until a
 * static_call_update(); `__static_call_fixup` turned a RET trampoline's return thunk already
 * (apply-returns.ts).
 */
import { linuxNop } from '../x86/nops.ts';
import { CALL_INSN_OPCODE, encodeRel32, fitsRel32, JMP32_INSN_OPCODE, RET_INSN_OPCODE } from '../x86/relocate.ts';
import type { KernelImage } from './image.ts';
import type { PatchedText } from './patched-text.ts';
import type { StaticCallSite } from './tables.ts';

export type StaticCallOutcome = 'call' | 'nop' | 'jmp' | 'ret' | 'return0' | 'unexpected-insn';

/** `2e 2e 2e 31 c0`: the five-byte `xor %eax,%eax` a call of __static_call_return0 becomes. */
const XOR5RAX = Uint8Array.of(0x2e, 0x2e, 0x2e, 0x31, 0xc0);

export interface StaticCallEnv {
  /** X86_FEATURE_RETHUNK with the thunk bugs.c chose, for a NULL tail call. */
  readonly rethunk: number | undefined;
  readonly return0: number | undefined;
}

/** key->func as the image initialises it (0 = NULL). */
export function staticCallKeyFunc(image: KernelImage, key: number): number | undefined {
  const b = image.read(key, 8);
  if (b === undefined) return undefined;
  return Number(new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0, true));
}

/** __static_call_transform's bytes for a site (5 bytes), or undefined when out of reach. */
export function staticCallBytes(site: number, func: number, tail: boolean, env: StaticCallEnv): { outcome: StaticCallOutcome; bytes: Uint8Array } | undefined {
  const reach = (t: number): boolean => fitsRel32(t - (site + 5));
  if (!tail) {
    if (func === 0) return { outcome: 'nop', bytes: linuxNop(5) };
    if (func === env.return0) return { outcome: 'return0', bytes: XOR5RAX };
    return reach(func) ? { outcome: 'call', bytes: encodeRel32(CALL_INSN_OPCODE, site, func) } : undefined;
  }
  if (func !== 0) return reach(func) ? { outcome: 'jmp', bytes: encodeRel32(JMP32_INSN_OPCODE, site, func) } : undefined;
  if (env.rethunk !== undefined) return reach(env.rethunk) ? { outcome: 'ret', bytes: encodeRel32(JMP32_INSN_OPCODE, site, env.rethunk) } : undefined;
  return { outcome: 'ret', bytes: Uint8Array.of(RET_INSN_OPCODE, 0xcc, 0xcc, 0xcc, 0xcc) };
}

/** static_call_init over every site, each key at its image function or at `func(key)` when the boot decides it. */
export function applyStaticCalls(sites: readonly StaticCallSite[], text: PatchedText, env: StaticCallEnv, decided: (key: number) => number | undefined): StaticCallOutcome[] {
  return sites.map((s): StaticCallOutcome => {
    const cur = text.read(s.address, 5);
    // __static_call_validate: the site is a CALL, a JMP (tail) or already one of the forms.
    // A Jcc tail call (0f 8x, 6 bytes) is not modelled and reported as such.
    const nop5 = cur !== undefined && cur[0] === 0x0f && cur[1] === 0x1f;
    if (cur === undefined || !(cur[0] === CALL_INSN_OPCODE || cur[0] === JMP32_INSN_OPCODE || nop5 || cur[0] === 0x2e || cur[0] === RET_INSN_OPCODE)) return 'unexpected-insn';
    const func = decided(s.key) ?? staticCallKeyFunc(text.image, s.key);
    if (func === undefined) return 'unexpected-insn';
    const r = staticCallBytes(s.address, func, s.tail, env);
    if (r === undefined) return 'unexpected-insn';
    text.write(s.address, r.bytes);
    return r.outcome;
  });
}
