/**
 * Instruction selection for the assembler DSL: from a mnemonic and operands to the iced-x86
 * `Code` with the shortest legacy encoding, as GAS would pick (e.g. `xor eax,eax` → 31 c0).
 * Candidates come from iced's own opcode tables (`CodeExt.opCode`), so nothing is hand-listed.
 */
import { Code, CodeExt, EncodingKind, Mnemonic, OpCodeOperandKind as K, Register } from 'iced-x86';

export interface Candidate {
  code: Code;
  kinds: K[];
  lock: boolean;
}

/** Register operand. */
export interface RegOp {
  readonly kind: 'reg';
  readonly reg: Register;
}

/** Memory operand; `size` in bytes when the instruction does not say. */
export interface MemOp {
  readonly kind: 'mem';
  readonly base: Register;
  readonly index: Register;
  readonly scale: number;
  readonly disp: bigint;
  readonly size?: 1 | 2 | 4 | 8;
  readonly seg: Register;
  /** RIP-relative to a label (resolved by the block encoder) or an absolute address. */
  readonly ripTarget?: { label?: string; address?: bigint };
}

export type ImmOp = number | bigint;

let index: Map<string, Candidate[]> | undefined;

/** Mnemonic (lowercase) → legacy-encoded Codes valid in 64-bit mode. Built once, lazily. */
export function candidates(mnemonic: string): Candidate[] {
  if (!index) {
    index = new Map();
    const names = Object.keys(Mnemonic).filter((k) => Number.isNaN(Number(k)));
    const byValue = new Map<number, string>(names.map((n) => [Mnemonic[n as keyof typeof Mnemonic], n.toLowerCase()]));
    const count = Object.keys(Code).filter((k) => Number.isNaN(Number(k))).length;
    for (let c = 1; c < count; c++) {
      const oc = CodeExt.opCode(c as Code);
      try {
        if (!oc.isInstruction || !oc.mode64 || oc.encoding !== EncodingKind.Legacy) continue;
        const kinds: K[] = [];
        for (let i = 0; i < oc.opCount; i++) kinds.push(oc.opKind(i));
        const name = byValue.get(oc.mnemonic);
        if (!name) continue;
        // Far branches through memory (m16:16/32/64) are outside 64-bit kernel code.
        if (/_m16(16|32|64)$/.test(Code[c as Code] ?? '')) continue;
        const list = index.get(name) ?? [];
        list.push({ code: c as Code, kinds, lock: oc.canUseLockPrefix });
        index.set(name, list);
      } finally {
        oc.free();
      }
    }
  }
  return index.get(mnemonic) ?? [];
}

/** Size in bytes of a general register, or 0. */
export function regSize(r: Register): number {
  if (r >= Register.AL && r <= Register.R15L) return 1;
  if (r >= Register.AX && r <= Register.R15W) return 2;
  if (r >= Register.EAX && r <= Register.R15D) return 4;
  if (r >= Register.RAX && r <= Register.R15) return 8;
  return 0;
}

const REG_KIND_SIZE = new Map<K, number>([
  [K.r8_or_mem, 1], [K.r8_reg, 1], [K.r8_opcode, 1],
  [K.r16_or_mem, 2], [K.r16_reg, 2], [K.r16_rm, 2], [K.r16_opcode, 2], [K.r16_reg_mem, 2],
  [K.r32_or_mem, 4], [K.r32_reg, 4], [K.r32_rm, 4], [K.r32_opcode, 4], [K.r32_reg_mem, 4],
  [K.r64_or_mem, 8], [K.r64_reg, 8], [K.r64_rm, 8], [K.r64_opcode, 8], [K.r64_reg_mem, 8],
]);
const FIXED = new Map<K, Register>([[K.al, Register.AL], [K.cl, Register.CL], [K.ax, Register.AX], [K.dx, Register.DX], [K.eax, Register.EAX], [K.rax, Register.RAX]]);
const MEM_KIND_SIZE = new Map<K, number>([[K.r8_or_mem, 1], [K.r16_or_mem, 2], [K.r32_or_mem, 4], [K.r64_or_mem, 8], [K.mem, 0]]);

/** The operand size a candidate works at (from its first sized operand), in bytes. */
export function operandSize(kinds: K[]): number {
  for (const k of kinds) {
    const s = REG_KIND_SIZE.get(k);
    if (s) return s;
    const f = FIXED.get(k);
    if (f !== undefined) return regSize(f);
  }
  return 8;
}

/** Does immediate `v` fit operand kind `k` at operand size `size` (bytes)? */
export function immFits(k: K, v: bigint, size: number): boolean {
  const bits = BigInt(size * 8);
  if (v < -(1n << (bits - 1n)) || v >= 1n << bits) return false;
  const s = BigInt.asIntN(size * 8, v);
  switch (k) {
    case K.imm8_const_1: return v === 1n;
    case K.imm8: return v >= -128n && v <= 255n;
    case K.imm8sex16: case K.imm8sex32: case K.imm8sex64: return s >= -128n && s <= 127n;
    case K.imm16: return v >= -32768n && v <= 65535n;
    case K.imm32: return v >= -(1n << 31n) && v < 1n << 32n;
    case K.imm32sex64: return s >= -(1n << 31n) && s < 1n << 31n;
    case K.imm64: return true;
    default: return false;
  }
}

export function isImmKind(k: K): boolean {
  return k === K.imm8 || k === K.imm8_const_1 || k === K.imm8sex16 || k === K.imm8sex32 || k === K.imm8sex64 ||
    k === K.imm16 || k === K.imm32 || k === K.imm32sex64 || k === K.imm64;
}

export function isBranchKind(k: K): boolean {
  return k === K.br64_1 || k === K.br64_4;
}

/** Does a register operand fit kind `k`? */
export function regFits(k: K, r: Register): boolean {
  const f = FIXED.get(k);
  if (f !== undefined) return f === r;
  const s = REG_KIND_SIZE.get(k);
  return s !== undefined && s === regSize(r);
}

/** Does a memory operand fit kind `k`? `implied` is the size other operands give, 0 if none. */
export function memFits(k: K, m: MemOp, implied: number): boolean {
  const s = MEM_KIND_SIZE.get(k);
  if (s === undefined) return false;
  if (s === 0) return true; // `mem`: the size comes from the instruction itself (lea, ...)
  const want = m.size ?? implied;
  return want === s;
}
