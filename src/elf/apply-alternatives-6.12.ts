/**
 * apply_alternatives() as Linux 6.5+ does it, for 6.12 (arch/x86/kernel/alternative.c):
 * - nested ALTERNATIVE()s (consecutive entries for one site) are all padded to the largest instrlen;
 * - an entry that does not apply still gets optimize_nops() over its site;
 * - one that applies copies its replacement; ALT_FLAG_DIRECT_CALL entries (pv-ops since 6.8,
 *   `call *pv_ops[x](%rip)` with `call BUG_func` as replacement) become a direct CALL to what
 *   the pv_ops slot holds (alt_replace_call: NULL calls BUG_func, `nop_func` leaves no CALL);
 * - the buffer is padded with 0x90 and apply_relocation() re-aims every relative branch and
 *   %rip-relative operand that leaves the replacement by (replacement - site), turns a JMP.d32
 *   that fits into JMP.d8 + INT3 padding, then optimize_nops() turns every run of NOP/NOPL
 *   into one NOP of up to ASM_NOP_MAX (11) bytes, or a JMP.d8 over INT3s when longer (add_nop).
 */
import { ASM_NOP_MAX_6_5, linuxNop } from '../x86/nops.ts';
import { CALL_INSN_OPCODE, INT3_INSN_OPCODE, JMP32_INSN_OPCODE, JMP8_INSN_OPCODE, getS32, putS32 } from '../x86/relocate.ts';
import { altApplies, type AltOutcome } from './apply-alternatives.ts';
import type { BootEnv } from './boot-env.ts';
import { EXTRA_FEATURE_BASE, X86_FEATURE_LIMIT } from './cpufeatures.ts';
import { decodeKernelInsn, decodeKernelInsnOperands, type KernelInsn } from './kernel-insn.ts';
import type { PatchedText } from './patched-text.ts';
import type { AltInstr } from './tables.ts';

const MAX_PATCH_LEN = 255 - 1;


/** add_nop: one NOP of `len` bytes, or a JMP over INT3s when no single NOP is that long. */
export function addNop(buf: Uint8Array, at: number, len: number): void {
  if (len === 0) return;
  if (len <= ASM_NOP_MAX_6_5) {
    buf.set(linuxNop(len, ASM_NOP_MAX_6_5), at);
    return;
  }
  let i = at;
  if (len < 128) {
    buf[i] = JMP8_INSN_OPCODE;
    buf[i + 1] = (len - 2) & 0xff;
    i += 2;
  } else {
    buf[i] = JMP32_INSN_OPCODE;
    putS32(buf, i + 1, len - 5);
    i += 5;
  }
  buf.fill(INT3_INSN_OPCODE, i, at + len);
}

/** insn_is_nop: NOP (not REP NOP = PAUSE) and NOPL, nothing else. */
function isNop(buf: Uint8Array, i: number, insn: KernelInsn): boolean {
  if (insn.op1 === 0x90) return buf[i] !== 0xf3;
  return insn.op1 === 0x0f && insn.op2 === 0x1f;
}

function decodeAt(buf: Uint8Array, i: number, address: number): KernelInsn | undefined {
  return decodeKernelInsn(buf.subarray(i, Math.min(buf.length, i + 15)), address + i);
}

/** optimize_nops over buf[0, len): every maximal run of NOP instructions becomes one add_nop. */
export function optimizeNops612(buf: Uint8Array, len: number, address: number): void {
  for (let i = 0, next = 0; i < len; i = next) {
    const insn = decodeAt(buf, i, address);
    if (insn === undefined) return;
    next = i + insn.length;
    if (!isNop(buf, i, insn)) continue;
    if (next === len) return; // already optimized
    while (next < len) {
      const n = decodeAt(buf, next, address);
      if (n === undefined || !isNop(buf, next, n)) break;
      next += n.length;
    }
    addNop(buf, i, next - i);
  }
}

/** need_reloc: a target outside the replacement [repl, repl + len] needs re-aiming. */
function needReloc(target: number, repl: number, replLen: number): boolean {
  return target < repl || target > repl + replLen;
}

function getSigned(buf: Uint8Array, at: number, size: number): number {
  if (size === 1) return (buf[at]! << 24) >> 24;
  if (size === 2) return ((buf[at]! | (buf[at + 1]! << 8)) << 16) >> 16;
  return getS32(buf, at);
}

function putSigned(buf: Uint8Array, at: number, size: number, v: number): boolean {
  if (size === 1) {
    if (v < -128 || v > 127) return false;
    buf[at] = v & 0xff;
  } else if (size === 2) {
    if (v < -0x8000 || v > 0x7fff) return false;
    buf[at] = v & 0xff;
    buf[at + 1] = (v >> 8) & 0xff;
  } else {
    if (v < -0x80000000 || v > 0x7fffffff) return false;
    putS32(buf, at, v);
  }
  return true;
}

/** __apply_relocation + optimize_nops; false when a displacement overflows (the kernel BUG()s). */
export function applyRelocation(buf: Uint8Array, instr: number, instrlen: number, repl: number, replLen: number): boolean {
  const diff = repl - instr;
  for (let i = 0, next = 0; i < instrlen; i = next) {
    // Decoded as if at the replacement: targets are compared with the replacement's range.
    const insn = decodeKernelInsnOperands(buf.subarray(i, Math.min(buf.length, i + 15)), repl + i);
    if (insn === undefined) break;
    next = i + insn.length;
    const isJcc32 = insn.op1 === 0x0f && insn.op2 >= 0x80 && insn.op2 <= 0x8f;
    const isBranch = isJcc32 || (insn.op1 >= 0x70 && insn.op1 <= 0x7f) || insn.op1 === JMP8_INSN_OPCODE || insn.op1 === JMP32_INSN_OPCODE || insn.op1 === CALL_INSN_OPCODE;
    if (isBranch && insn.immSize > 0) {
      const imm = getSigned(buf, i + insn.immOffset, insn.immSize);
      if (needReloc(repl + next + imm, repl, replLen) && !putSigned(buf, i + insn.immOffset, insn.immSize, imm + diff)) return false;
      if (insn.op1 === JMP32_INSN_OPCODE) {
        const short = imm + diff + (5 - 2);
        if (short >= -128 && short <= 127) {
          buf[i] = JMP8_INSN_OPCODE;
          buf[i + 1] = short & 0xff;
          buf.fill(INT3_INSN_OPCODE, i + 2, i + insn.length);
        }
      }
    }
    if (insn.ripRelative && insn.dispSize > 0) {
      const disp = getSigned(buf, i + insn.dispOffset, insn.dispSize);
      if (needReloc(repl + next + disp, repl, replLen) && !putSigned(buf, i + insn.dispOffset, insn.dispSize, disp + diff)) return false;
    }
  }
  optimizeNops612(buf, instrlen, instr);
  return true;
}

/** alt_replace_call: the CALL's target through the pv_ops slot; undefined length = BUG. */
function altReplaceCall(a: AltInstr, buf: Uint8Array, text: PatchedText, env: BootEnv): number | undefined {
  const site = text.read(a.address, 6);
  if (a.replacementlen !== 5 || buf[0] !== CALL_INSN_OPCODE || a.instrlen !== 6 || site === undefined || site[0] !== 0xff || site[1] !== 0x15) return undefined;
  const slot = a.address + 6 + getS32(site, 2);
  const ptr = text.read(slot, 8);
  if (ptr === undefined || env.bugFunc === undefined) return undefined;
  let target = env.pvOpAt(slot) ?? Number(new DataView(ptr.buffer, ptr.byteOffset, 8).getBigInt64(0, true));
  if (target === 0) target = env.bugFunc;
  // (BUG_func - .) + (target - BUG_func) := target - .
  putS32(buf, 1, getS32(buf, 1) + (target - env.bugFunc));
  return target === env.nopFunc ? 0 : 5;
}

export function applyAlternatives612(entries: readonly AltInstr[], text: PatchedText, env: BootEnv): AltOutcome[] {
  // Nested ALTERNATIVE()s: every entry of one site takes the largest instrlen.
  const instrlen = entries.map((a) => a.instrlen);
  for (let i = 0; i < entries.length; ) {
    let j = i + 1;
    while (j < entries.length && entries[j]!.address === entries[i]!.address) j++;
    const max = Math.max(...instrlen.slice(i, j));
    instrlen.fill(max, i, j);
    i = j;
  }
  return entries.map((a, idx): AltOutcome => {
    const len = instrlen[idx]!;
    if (len > MAX_PATCH_LEN || (a.feature >= X86_FEATURE_LIMIT && a.feature < EXTRA_FEATURE_BASE)) return 'bad-entry';
    const cur = text.read(a.address, len);
    if (cur === undefined) return 'bad-entry';
    const buf = new Uint8Array(Math.max(len, a.replacementlen));
    if (!altApplies(a, env.features)) {
      buf.set(cur);
      optimizeNops612(buf, len, a.address);
      text.write(a.address, buf.subarray(0, len));
      return 'not-applied';
    }
    const repl = text.read(a.replacement, a.replacementlen);
    if (repl === undefined) return 'bad-entry';
    buf.set(repl);
    let size: number | undefined = a.replacementlen;
    if (a.directCall) size = altReplaceCall({ ...a, instrlen: len }, buf, text, env);
    if (size === undefined) return 'bad-entry';
    buf.fill(0x90, size, len);
    if (!applyRelocation(buf, a.address, len, a.replacement, a.replacementlen)) return 'bad-entry';
    text.write(a.address, buf.subarray(0, Math.max(size, len)));
    return 'patched';
  });
}
