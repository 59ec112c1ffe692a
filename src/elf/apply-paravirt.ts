/**
 * apply_paravirt() (Linux 6.1 arch/x86/kernel/alternative.c) with paravirt_patch()
 * (arch/x86/kernel/paravirt.c): every `.parainstructions` site, an indirect `call *pv_ops+N(%rip)`,
 * becomes a direct CALL to whatever pv_ops[type] holds, or nothing when it holds `_paravirt_nop`,
 * and the rest of the site is padded with Linux's NOPs (add_nops). In 6.1 there is no native
 * inline code here: the inline forms (`cli`, `pushf; pop %rax`, ...) arrive later through the
 * ALT_NOT(X86_FEATURE_XENPV) alternatives that wrap these sites; 5.10 still wrote them here
 * (native-patch-5.10.ts, through env.nativeInline).
 */
import { nopPadding } from '../x86/nops.ts';
import { encodeRel32, fitsRel32, CALL_INSN_OPCODE, JMP32_INSN_OPCODE } from '../x86/relocate.ts';
import type { BootEnv } from './boot-env.ts';
import type { ParaSite } from './tables.ts';

/** The bytes apply_paravirt writes at one site (pure); undefined when the target is out of CALL reach (a corrupt table). */
export function paravirtPatch(site: ParaSite, original: Uint8Array, env: BootEnv): Uint8Array | undefined {
  const buf = original.slice(0, site.len);
  const op = env.pvOp(site.type);
  let used = 0;
  const inline = env.nativeInline?.(site.type, site.len);
  if (inline !== undefined) {
    buf.set(inline, 0);
    used = inline.length;
  } else if (op.kind === 'function' || op.kind === 'bug') {
    // CALL_INSN_SIZE = 5; a site shorter than a CALL would BUG() in the kernel.
    if (site.len >= 5) {
      if (!fitsRel32(op.address - (site.address + 5))) return undefined;
      // 5.10's paravirt_patch_default: the `jmp *pv_ops` sites (cpu.iret, usergs_sysret64) get a JMP.
      const jmp = env.nativeInline !== undefined && original[0] === 0xff && original[1] === 0x25;
      buf.set(encodeRel32(jmp ? JMP32_INSN_OPCODE : CALL_INSN_OPCODE, site.address, op.address), 0);
      used = 5;
    }
  }
  buf.set(nopPadding(site.len - used), used);
  return buf;
}
