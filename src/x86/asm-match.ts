/**
 * Instruction selection for the assembler DSL: from a mnemonic and DSL operands to one iced-x86
 * `Code`, by matching the operands against every legacy-encoded, 64-bit-mode form that iced
 * knows (`CodeExt.opCode`), then taking the shortest encoding. Ties go to the first `Code` in
 * iced's order, which gives GAS's choices (`31 c0` for `xor eax,eax`: the rm,reg form).
 */
import {
  Code, CodeExt, EncodingKind, Encoder, Instruction, MemoryOperand, MemorySizeExt, Mnemonic,
  OpCodeOperandKind as K, Register,
} from 'iced-x86';
import { AsmError, AsmReg, Label, Mem, describeOperand, toBig, type Operand } from './asm-operands.ts';

interface CodeInfo {
  code: Code;
  mnemonic: Mnemonic;
  kinds: K[];
  /** 16/32/64, or 0 when the form has none. */
  operandSize: number;
  /** Size in bytes of a plain `mem` operand (0: any, e.g. lea). */
  memSize: number;
  canLock: boolean;
}

/** The chosen form of one instruction, with its operands in encoding order. */
export interface Selected {
  code: Code;
  mnemonic: Mnemonic;
  /** Operand kinds of `code`, in encoding order. */
  kinds: readonly K[];
  ops: Operand[];
  canLock: boolean;
}

/** Maps a label to the address the encoder should see (a pseudo-IP while assembling). */
export type LabelResolver = (l: Label) => bigint;

interface Index {
  byMnemonic: Map<Mnemonic, CodeInfo[]>;
  byName: Map<string, Mnemonic>;
  /** Memo of `lookupMnemonic` by the name as written (`jz`, `SETNAE`). */
  byRawName: Map<string, Mnemonic>;
  /** Memo of `select` by operand signature: selection is a pure function of it. */
  chosen: Map<string, { info: CodeInfo; swapped: boolean }>;
}

// Built once per process on first use; immutable afterwards except for the selection memo.
let index: Index | undefined;

const codeCount = Object.keys(Code).filter((k) => Number.isNaN(Number(k))).length;

function buildIndex(): Index {
  const byMnemonic = new Map<Mnemonic, CodeInfo[]>();
  for (let code = 0; code < codeCount; code++) {
    const o = CodeExt.opCode(code);
    try {
      if (o.encoding !== EncodingKind.Legacy || !o.mode64 || !o.isInstruction || o.decoderOption !== 0) continue;
      const kinds: K[] = [];
      for (let i = 0; i < o.opCount; i++) kinds.push(o.opKind(i));
      // moffs forms (a0..a3) take a 64-bit absolute address; GAS uses modrm forms instead.
      if (kinds.includes(K.mem_offs)) continue;
      const info: CodeInfo = {
        code,
        mnemonic: o.mnemonic,
        kinds,
        operandSize: o.operandSize,
        memSize: MemorySizeExt.size(o.memorySize),
        canLock: o.canUseLockPrefix,
      };
      const list = byMnemonic.get(o.mnemonic);
      if (list) list.push(info);
      else byMnemonic.set(o.mnemonic, [info]);
    } finally {
      o.free();
    }
  }
  const byName = new Map<string, Mnemonic>();
  for (const [k, v] of Object.entries(Mnemonic)) {
    if (typeof v === 'number') byName.set(k.toLowerCase(), v);
  }
  return { byMnemonic, byName, byRawName: new Map(), chosen: new Map() };
}

function getIndex(): Index {
  index ??= buildIndex();
  return index;
}

const CC_ALIASES: Record<string, string> = {
  c: 'b', nae: 'b', nc: 'ae', nb: 'ae', z: 'e', nz: 'ne', na: 'be', nbe: 'a',
  pe: 'p', po: 'np', nge: 'l', nl: 'ge', ng: 'le', nle: 'g',
};
const NAME_ALIASES: Record<string, string> = { sal: 'shl', movabs: 'mov', pushf: 'pushfq', popf: 'popfq' };

/** The iced mnemonic for a GAS/Intel name (`jz` -> `je`, `sal` -> `shl`, `setnae` -> `setb`). */
export function lookupMnemonic(name: string): Mnemonic {
  const idx = getIndex();
  const known = idx.byRawName.get(name);
  if (known !== undefined) return known;
  let n = name.toLowerCase();
  n = NAME_ALIASES[n] ?? n;
  const m = /^(j|set|cmov)(.+)$/.exec(n);
  if (m && CC_ALIASES[m[2]!]) n = m[1]! + CC_ALIASES[m[2]!];
  const mn = idx.byName.get(n);
  if (mn === undefined || mn === Mnemonic.INVALID) throw new AsmError(`unknown mnemonic '${name}'`);
  idx.byRawName.set(name, mn);
  return mn;
}

/** Condition-code suffix in canonical form (`z` -> `e`), for jcc/setcc/cmovcc. */
export function canonicalCc(cc: string): string {
  const c = cc.toLowerCase();
  return CC_ALIASES[c] ?? c;
}

const IMM_KINDS = [K.imm8, K.imm8_const_1, K.imm8sex16, K.imm8sex32, K.imm8sex64, K.imm16, K.imm32, K.imm32sex64, K.imm64];
const BRANCH_KINDS = [K.br64_1, K.br64_4];
const TWO_63 = 1n << 63n;

function fitsSigned(v: bigint, bits: number): boolean {
  const lim = 1n << BigInt(bits - 1);
  return v >= -lim && v < lim;
}
/** Accepts `v` as a `bits`-wide value (signed or unsigned spelling) and returns it sign-interpreted. */
function asWidth(v: bigint, bits: number): bigint | null {
  if (v < -(1n << BigInt(bits - 1)) || v >= 1n << BigInt(bits)) return null;
  return BigInt.asIntN(bits, v);
}

/**
 * The immediate as the encoder should receive it for operand kind `k`, or null when `v` does not
 * fit. Sign-extended forms are chosen only when the extension reproduces the value at the
 * instruction's operand size, as GAS does (`add $-1,%rax` -> `48 83 c0 ff`).
 */
function immFor(k: K, v: bigint): number | bigint | null {
  switch (k) {
    case K.imm8: { const w = asWidth(v, 8); return w === null ? null : Number(w); }
    case K.imm8_const_1: return v === 1n ? 1 : null;
    case K.imm8sex16: { const w = asWidth(v, 16); return w !== null && fitsSigned(w, 8) ? Number(w) : null; }
    case K.imm8sex32: { const w = asWidth(v, 32); return w !== null && fitsSigned(w, 8) ? Number(w) : null; }
    case K.imm8sex64: { const w = asWidth(v, 64); return w !== null && fitsSigned(w, 8) ? Number(w) : null; }
    case K.imm16: { const w = asWidth(v, 16); return w === null ? null : Number(w); }
    case K.imm32: { const w = asWidth(v, 32); return w === null ? null : Number(w); }
    case K.imm32sex64: { const w = asWidth(v, 64); return w !== null && fitsSigned(w, 32) ? Number(w) : null; }
    case K.imm64: return v >= -TWO_63 && v < 1n << 64n ? BigInt.asIntN(64, v) : null;
    default: return null;
  }
}

const GPR_REG_KINDS: Record<number, number> = {
  [K.r8_reg]: 1, [K.r8_opcode]: 1,
  [K.r16_reg]: 2, [K.r16_reg_mem]: 2, [K.r16_rm]: 2, [K.r16_opcode]: 2,
  [K.r32_reg]: 4, [K.r32_reg_mem]: 4, [K.r32_rm]: 4, [K.r32_opcode]: 4,
  [K.r64_reg]: 8, [K.r64_reg_mem]: 8, [K.r64_rm]: 8, [K.r64_opcode]: 8,
};
const RM_KINDS: Record<number, number> = { [K.r8_or_mem]: 1, [K.r16_or_mem]: 2, [K.r32_or_mem]: 4, [K.r64_or_mem]: 8 };
const FIXED_KINDS: Record<number, Register> = {
  [K.al]: Register.AL, [K.cl]: Register.CL, [K.ax]: Register.AX, [K.dx]: Register.DX, [K.eax]: Register.EAX, [K.rax]: Register.RAX,
  [K.es]: Register.ES, [K.cs]: Register.CS, [K.ss]: Register.SS, [K.ds]: Register.DS, [K.fs]: Register.FS, [K.gs]: Register.GS,
};

/** Memory size a form expects at operand `k` (0: none required). */
function memSizeOf(info: CodeInfo, k: K): number {
  return RM_KINDS[k] ?? (k === K.mem ? info.memSize : 0);
}

/** Does DSL operand `op` fit operand kind `k` of `info`? `looseImm` ignores immediate ranges. */
function accepts(info: CodeInfo, k: K, op: Operand, looseImm: boolean): boolean {
  if (op instanceof AsmReg) {
    if (op.cls === 'gpr') {
      const sz = GPR_REG_KINDS[k] ?? RM_KINDS[k];
      if (sz !== undefined) return sz === op.size;
    }
    if (op.cls === 'seg' && k === K.seg_reg) return true;
    if (op.cls === 'cr' && k === K.cr_reg) return true;
    if (op.cls === 'dr' && k === K.dr_reg) return true;
    return FIXED_KINDS[k] === op.register;
  }
  if (op instanceof Mem) {
    if (RM_KINDS[k] === undefined && k !== K.mem) return false;
    const want = memSizeOf(info, k);
    return op.size === 0 || want === 0 || want === op.size;
  }
  if (op instanceof Label) return BRANCH_KINDS.includes(k);
  if (BRANCH_KINDS.includes(k)) return true;
  if (!IMM_KINDS.includes(k)) return false;
  return looseImm || immFor(k, toBig(op, 'immediate')) !== null;
}

function matches(info: CodeInfo, ops: readonly Operand[], looseImm: boolean): boolean {
  if (info.kinds.length !== ops.length) return false;
  for (let i = 0; i < ops.length; i++) if (!accepts(info, info.kinds[i]!, ops[i]!, looseImm)) return false;
  return true;
}

/** Which immediate kinds accept `v`, as a bit mask over IMM_KINDS (hot: loops, no closures). */
function immClass(v: bigint): number {
  let mask = 0;
  for (let i = 0; i < IMM_KINDS.length; i++) if (immFor(IMM_KINDS[i]!, v) !== null) mask |= 1 << i;
  return mask;
}

function signature(mn: Mnemonic, ops: readonly Operand[]): string {
  let key = String(mn);
  for (const op of ops) {
    if (op instanceof AsmReg) key += `|r${op.register}`;
    // REX.B/X matter: they make ah..bh unencodable alongside, so they are part of the key.
    else if (op instanceof Mem) key += `|m${op.size}${isExtended(op.base) ? 'B' : ''}${isExtended(op.index) ? 'X' : ''}`;
    else if (op instanceof Label) key += '|L';
    else {
      key += `|i${immClass(toBig(op, 'immediate'))}`;
    }
  }
  return key;
}

function isExtended(r: AsmReg | null): boolean {
  return r !== null && r.register >= Register.R8 && r.register <= Register.R15;
}

function describeAll(ops: readonly Operand[]): string {
  return `(${ops.map(describeOperand).join(', ')})`;
}

/** The operand text of an instruction for error messages: `mov rax, byte [rdi]`. */
export function describeInsn(name: string, ops: readonly Operand[]): string {
  return ops.length === 0 ? name : `${name} ${ops.map((o) => (typeof o === 'bigint' || typeof o === 'number' ? `0x${BigInt.asUintN(64, toBig(o, 'immediate')).toString(16)}` : String(o))).join(', ')}`;
}

const MEASURE_IP = 0x100000n;
const measureResolver: LabelResolver = () => MEASURE_IP;

/** Encoded length of `info` with `ops` (labels and RIP targets placed near, so any form fits). */
function encodedLength(name: string, info: CodeInfo, ops: readonly Operand[]): number {
  const insn = createInstruction(name, info.code, info.kinds, ops, measureResolver, true);
  const enc = new Encoder(64);
  try {
    return enc.encode(insn, MEASURE_IP);
  } catch (e) {
    throw new AsmError(`cannot encode '${describeInsn(name, ops)}': ${(e as Error).message ?? String(e)}`);
  } finally {
    enc.free();
    insn.free();
  }
}

/** Operand orders worth trying: `xchg` and `test` are symmetric, so GAS accepts either order. */
function orders(mn: Mnemonic, ops: readonly Operand[]): Operand[][] {
  const out = [ops.slice()];
  if ((mn === Mnemonic.Xchg || mn === Mnemonic.Test) && ops.length === 2) out.push([ops[1]!, ops[0]!]);
  return out;
}

/** Pick the form of `name ops` (see the file comment), or throw an `AsmError` saying why none fits. */
export function select(name: string, ops: readonly Operand[]): Selected {
  const idx = getIndex();
  const mn = lookupMnemonic(name);
  const key = signature(mn, ops);
  const memo = idx.chosen.get(key);
  if (memo) {
    const { info, swapped } = memo;
    return { code: info.code, mnemonic: mn, kinds: info.kinds, ops: swapped ? [ops[1]!, ops[0]!] : ops.slice(), canLock: info.canLock };
  }
  const forms = idx.byMnemonic.get(mn) ?? [];
  const userSize16 = ops.some((o) => (o instanceof AsmReg && o.cls === 'gpr' && o.size === 2) || (o instanceof Mem && o.size === 2));
  let cands: { info: CodeInfo; ops: Operand[]; swapped: boolean }[] = [];
  orders(mn, ops).forEach((order, i) => {
    for (const info of forms) if (matches(info, order, false)) cands.push({ info, ops: order, swapped: i === 1 });
  });
  // `90` is NOP in 64-bit mode, not `xchg eax,eax` (which zero-extends rax): SDM XCHG note.
  cands = cands.filter((c) => !(c.info.code === Code.Xchg_r32_EAX && c.ops[0] instanceof AsmReg && c.ops[0].register === Register.EAX));
  if (cands.length === 0) {
    const loose = forms.some((f) => orders(mn, ops).some((o) => matches(f, o, true)));
    if (loose) throw new AsmError(`immediate out of range for '${describeInsn(name, ops)}' ${describeAll(ops)}`);
    throw new AsmError(`no encoding of '${name}' for operands ${describeAll(ops)}`);
  }
  // Without a 16-bit operand, a 66-prefixed form (pushw, callw) is never what the author meant.
  if (!userSize16 && cands.some((c) => c.info.operandSize !== 16)) cands = cands.filter((c) => c.info.operandSize !== 16);
  const memAt = ops.findIndex((o) => o instanceof Mem && o.size === 0);
  if (memAt >= 0) {
    const sizeOf = (c: (typeof cands)[number]) => memSizeOf(c.info, c.info.kinds[c.swapped ? 1 - memAt : memAt]!);
    // Far forms (`call *m16:64`) only when nothing else fits: GAS's `call *(%rax)` is near.
    const plain = (s: number) => s === 1 || s === 2 || s === 4 || s === 8;
    if (cands.some((c) => plain(sizeOf(c)))) cands = cands.filter((c) => sizeOf(c) === 0 || plain(sizeOf(c)));
    const sizes = new Set(cands.map(sizeOf).filter((s) => s !== 0));
    if (sizes.size > 1) {
      throw new AsmError(`'${describeInsn(name, ops)}' needs an operand size: wrap the memory operand in byte/word/dword/qword`);
    }
  }
  let best = cands[0]!;
  const branch = cands.find((c) => c.info.kinds.includes(K.br64_4));
  if (branch) {
    best = branch; // rel32; the block encoder shortens it to rel8 when the target is near
  } else if (cands.length === 1) {
    encodedLength(name, best.info, best.ops); // surfaces unencodable mixes (ah with a REX prefix) here, not at assemble()
  } else {
    let bestLen = encodedLength(name, best.info, best.ops);
    for (const c of cands.slice(1)) {
      const len = encodedLength(name, c.info, c.ops);
      if (len < bestLen) { best = c; bestLen = len; }
    }
  }
  idx.chosen.set(key, { info: best.info, swapped: best.swapped });
  return { code: best.info.code, mnemonic: mn, kinds: best.info.kinds, ops: best.ops, canLock: best.info.canLock };
}

/** The iced memory operand for a DSL one. The caller frees it. */
function memoryOperand(m: Mem, resolve: LabelResolver): MemoryOperand {
  if (m.ripTarget !== null) {
    const t = m.ripTarget instanceof Label ? resolve(m.ripTarget) : m.ripTarget;
    return new MemoryOperand(Register.RIP, Register.None, 1, t, 8, false, m.seg);
  }
  const base = m.base?.register ?? Register.None;
  const index = m.index?.register ?? Register.None;
  if (base === Register.None && index === Register.None) {
    // An absolute `[disp32]` (SIB, no base): sign-extended to 64 bits.
    const d = BigInt.asIntN(64, m.disp);
    if (!fitsSigned(d, 32) || m.disp >= 1n << 64n || m.disp < -TWO_63) throw new AsmError(`absolute address 0x${m.disp.toString(16)} does not fit a sign-extended disp32`);
    return new MemoryOperand(Register.None, Register.None, 1, d, 8, false, m.seg);
  }
  if (!fitsSigned(m.disp, 32)) throw new AsmError(`displacement ${m.disp} of ${m} does not fit 32 bits`);
  // displSize 0 with disp 0 gives `(%rdi)` with no displacement byte (iced adds one for rbp/r13).
  return new MemoryOperand(base, index, m.scale, m.disp, m.disp === 0n ? 0 : 1, false, m.seg);
}

type Val = Register | MemoryOperand | number | bigint;

/**
 * An iced `Instruction` of form `code` with `ops` (in encoding order). Labels and RIP-relative
 * label references go through `resolve`. The caller frees the result.
 */
export function createInstruction(name: string, code: Code, kinds: readonly K[], ops: readonly Operand[], resolve: LabelResolver, measuring = false): Instruction {
  let shape = '';
  const vals: Val[] = [];
  const mems: MemoryOperand[] = [];
  try {
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const k = kinds[i]!;
      if (op instanceof AsmReg) { shape += 'R'; vals.push(op.register); }
      else if (op instanceof Mem) {
        const mo = memoryOperand(op, resolve);
        mems.push(mo);
        shape += 'M'; vals.push(mo);
      } else if (BRANCH_KINDS.includes(k)) {
        shape += 'B';
        vals.push(op instanceof Label ? resolve(op) : measuring ? MEASURE_IP : BigInt.asUintN(64, toBig(op, 'branch target')));
      } else {
        const v = immFor(k, toBig(op as number | bigint, 'immediate'));
        if (v === null) throw new AsmError(`immediate out of range for '${describeInsn(name, ops)}'`);
        shape += typeof v === 'bigint' ? 'Q' : 'I';
        vals.push(v);
      }
    }
  } catch (e) {
    for (const mo of mems) mo.free();
    throw e;
  }
  try {
    // iced's create* takes ownership of the MemoryOperand, whether it succeeds or throws.
    return build(code, shape, vals);
  } catch (e) {
    if (e instanceof AsmError) throw e;
    throw new AsmError(`cannot encode '${describeInsn(name, ops)}': ${(e as Error).message ?? String(e)}`);
  }
}

function build(code: Code, shape: string, v: Val[]): Instruction {
  // Hot (every instruction of every assembly): plain casts, no helper closures.
  const [a, b, c] = v;
  switch (shape) {
    case '': return Instruction.create(code);
    case 'R': return Instruction.createReg(code, a as Register);
    case 'M': return Instruction.createMem(code, a as MemoryOperand);
    case 'I': return Instruction.createI32(code, a as number);
    case 'B': return Instruction.createBranch(code, a as bigint);
    case 'RR': return Instruction.createRegReg(code, a as Register, b as Register);
    case 'RI': return Instruction.createRegI32(code, a as Register, b as number);
    case 'RQ': return Instruction.createRegI64(code, a as Register, b as bigint);
    case 'RM': return Instruction.createRegMem(code, a as Register, b as MemoryOperand);
    case 'MR': return Instruction.createMemReg(code, a as MemoryOperand, b as Register);
    case 'MI': return Instruction.createMemI32(code, a as MemoryOperand, b as number);
    case 'IR': return Instruction.createI32Reg(code, a as number, b as Register);
    case 'II': return Instruction.createI32I32(code, a as number, b as number);
    case 'RRR': return Instruction.createRegRegReg(code, a as Register, b as Register, c as Register);
    case 'RRI': return Instruction.createRegRegI32(code, a as Register, b as Register, c as number);
    case 'RMI': return Instruction.createRegMemI32(code, a as Register, b as MemoryOperand, c as number);
    case 'RMR': return Instruction.createRegMemReg(code, a as Register, b as MemoryOperand, c as Register);
    case 'MRI': return Instruction.createMemRegI32(code, a as MemoryOperand, b as Register, c as number);
    case 'MRR': return Instruction.createMemRegReg(code, a as MemoryOperand, b as Register, c as Register);
    default: throw new AsmError(`operand shape ${shape} of ${Code[code]} is not supported by the assembler`);
  }
}
