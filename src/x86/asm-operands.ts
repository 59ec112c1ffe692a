/**
 * Operands of the assembler DSL (src/x86/asm.ts): registers, memory references, immediates,
 * labels. Registers are small objects, not bare iced `Register` numbers, because a bare number
 * must stay an immediate: `a.mov(rax, 5)` has to mean `$5`, not `Register.AH` (= 5).
 */
import { Register } from 'iced-x86';

/** A malformed instruction, operand or label in guest code written with the DSL. */
export class AsmError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'AsmError';
  }
}

export type RegClass = 'gpr' | 'seg' | 'cr' | 'dr' | 'ip';

/** A register operand; `register` is the iced-x86 value. */
export class AsmReg {
  constructor(
    readonly register: Register,
    readonly name: string,
    /** Size in bytes (segment registers: 2). */
    readonly size: number,
    readonly cls: RegClass,
  ) {}
  toString(): string {
    return this.name;
  }
}

const byRegister = new Map<Register, AsmReg>();
function def(register: Register, name: string, size: number, cls: RegClass = 'gpr'): AsmReg {
  const r = new AsmReg(register, name, size, cls);
  byRegister.set(register, r);
  return r;
}

export const rax = def(Register.RAX, 'rax', 8), rcx = def(Register.RCX, 'rcx', 8), rdx = def(Register.RDX, 'rdx', 8), rbx = def(Register.RBX, 'rbx', 8);
export const rsp = def(Register.RSP, 'rsp', 8), rbp = def(Register.RBP, 'rbp', 8), rsi = def(Register.RSI, 'rsi', 8), rdi = def(Register.RDI, 'rdi', 8);
export const r8 = def(Register.R8, 'r8', 8), r9 = def(Register.R9, 'r9', 8), r10 = def(Register.R10, 'r10', 8), r11 = def(Register.R11, 'r11', 8);
export const r12 = def(Register.R12, 'r12', 8), r13 = def(Register.R13, 'r13', 8), r14 = def(Register.R14, 'r14', 8), r15 = def(Register.R15, 'r15', 8);

export const eax = def(Register.EAX, 'eax', 4), ecx = def(Register.ECX, 'ecx', 4), edx = def(Register.EDX, 'edx', 4), ebx = def(Register.EBX, 'ebx', 4);
export const esp = def(Register.ESP, 'esp', 4), ebp = def(Register.EBP, 'ebp', 4), esi = def(Register.ESI, 'esi', 4), edi = def(Register.EDI, 'edi', 4);
export const r8d = def(Register.R8D, 'r8d', 4), r9d = def(Register.R9D, 'r9d', 4), r10d = def(Register.R10D, 'r10d', 4), r11d = def(Register.R11D, 'r11d', 4);
export const r12d = def(Register.R12D, 'r12d', 4), r13d = def(Register.R13D, 'r13d', 4), r14d = def(Register.R14D, 'r14d', 4), r15d = def(Register.R15D, 'r15d', 4);

export const ax = def(Register.AX, 'ax', 2), cx = def(Register.CX, 'cx', 2), dx = def(Register.DX, 'dx', 2), bx = def(Register.BX, 'bx', 2);
export const sp = def(Register.SP, 'sp', 2), bp = def(Register.BP, 'bp', 2), si = def(Register.SI, 'si', 2), di = def(Register.DI, 'di', 2);
export const r8w = def(Register.R8W, 'r8w', 2), r9w = def(Register.R9W, 'r9w', 2), r10w = def(Register.R10W, 'r10w', 2), r11w = def(Register.R11W, 'r11w', 2);
export const r12w = def(Register.R12W, 'r12w', 2), r13w = def(Register.R13W, 'r13w', 2), r14w = def(Register.R14W, 'r14w', 2), r15w = def(Register.R15W, 'r15w', 2);

export const al = def(Register.AL, 'al', 1), cl = def(Register.CL, 'cl', 1), dl = def(Register.DL, 'dl', 1), bl = def(Register.BL, 'bl', 1);
export const spl = def(Register.SPL, 'spl', 1), bpl = def(Register.BPL, 'bpl', 1), sil = def(Register.SIL, 'sil', 1), dil = def(Register.DIL, 'dil', 1);
export const r8b = def(Register.R8L, 'r8b', 1), r9b = def(Register.R9L, 'r9b', 1), r10b = def(Register.R10L, 'r10b', 1), r11b = def(Register.R11L, 'r11b', 1);
export const r12b = def(Register.R12L, 'r12b', 1), r13b = def(Register.R13L, 'r13b', 1), r14b = def(Register.R14L, 'r14b', 1), r15b = def(Register.R15L, 'r15b', 1);
/** Bits 8..15 of rax..rbx; not encodable together with a REX prefix. */
export const ah = def(Register.AH, 'ah', 1), ch = def(Register.CH, 'ch', 1), dh = def(Register.DH, 'dh', 1), bh = def(Register.BH, 'bh', 1);

export const es = def(Register.ES, 'es', 2, 'seg'), cs = def(Register.CS, 'cs', 2, 'seg'), ss = def(Register.SS, 'ss', 2, 'seg');
export const ds = def(Register.DS, 'ds', 2, 'seg'), fs = def(Register.FS, 'fs', 2, 'seg'), gsReg = def(Register.GS, 'gs', 2, 'seg');
export const cr0 = def(Register.CR0, 'cr0', 8, 'cr'), cr2 = def(Register.CR2, 'cr2', 8, 'cr'), cr3 = def(Register.CR3, 'cr3', 8, 'cr');
export const cr4 = def(Register.CR4, 'cr4', 8, 'cr'), cr8 = def(Register.CR8, 'cr8', 8, 'cr');

/** GPRs in encoding order (index = `Reg` of src/x86/registers.ts), per size. */
export const GPR64: readonly AsmReg[] = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
export const GPR32: readonly AsmReg[] = [eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d];
export const GPR16: readonly AsmReg[] = [ax, cx, dx, bx, sp, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w];
export const GPR8: readonly AsmReg[] = [al, cl, dl, bl, spl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b, r15b];
export const GPR8_HIGH: readonly AsmReg[] = [ah, ch, dh, bh];

/** The DSL operand for an iced `Register` value (GPRs, segment, control registers). */
export function reg(register: Register): AsmReg {
  const r = byRegister.get(register);
  if (r === undefined) throw new AsmError(`register ${Register[register] ?? register} is not supported by the assembler`);
  return r;
}

const byName = new Map([...byRegister.values()].map((r) => [r.name, r]));

/** A register by name (`rax`, `r8d`, `ah`, `r15b` or `r15l`, `cr3`), or undefined. */
export function regByName(name: string): AsmReg | undefined {
  return byName.get(name.toLowerCase().replace(/^(r\d+)l$/, '$1b'));
}

/** A branch target or RIP-relative data reference, bound to a position by `Asm.bind`. */
export class Label {
  /** @internal item index once bound, -1 before. */
  pos = -1;
  constructor(
    readonly name: string,
    /** @internal the Asm that owns it. */
    readonly owner: object,
  ) {}
  get bound(): boolean {
    return this.pos >= 0;
  }
  toString(): string {
    return this.name;
  }
}

/** Size of a memory access in bytes; 0 = not given (taken from a register operand). */
export type MemSize = 0 | 1 | 2 | 4 | 8;

/** A memory reference `seg:[base + index*scale + disp]`, or `[rip + target]`. */
export class Mem {
  constructor(
    readonly base: AsmReg | null,
    readonly index: AsmReg | null,
    readonly scale: 1 | 2 | 4 | 8,
    readonly disp: bigint,
    readonly size: MemSize,
    readonly seg: Register,
    /** RIP-relative target: an absolute address or a label (base is then null). */
    readonly ripTarget: bigint | Label | null,
  ) {}
  with(changes: { size?: MemSize; seg?: Register }): Mem {
    return new Mem(this.base, this.index, this.scale, this.disp, changes.size ?? this.size, changes.seg ?? this.seg, this.ripTarget);
  }
  toString(): string {
    const seg = this.seg === Register.None ? '' : `${reg(this.seg).name}:`;
    const sz = this.size === 0 ? '' : `${SIZE_NAMES[this.size]} `;
    if (this.ripTarget !== null) {
      const t = this.ripTarget instanceof Label ? this.ripTarget.name : '0x' + this.ripTarget.toString(16);
      return `${sz}${seg}[rip -> ${t}]`;
    }
    const parts: string[] = [];
    if (this.base) parts.push(this.base.name);
    if (this.index) parts.push(`${this.index.name}*${this.scale}`);
    if (this.disp !== 0n || parts.length === 0) parts.push(this.disp < 0n ? `-0x${(-this.disp).toString(16)}` : `0x${this.disp.toString(16)}`);
    return `${sz}${seg}[${parts.join('+').replace('+-', '-')}]`;
  }
}

const SIZE_NAMES: Record<number, string> = { 1: 'byte', 2: 'word', 4: 'dword', 8: 'qword' };

export type Imm = number | bigint;
/** Names kept for the text front-end (src/x86/asm-text.ts). */
export type RegOp = AsmReg;
export type MemOp = Mem;
export type ImmOp = Imm;
export type Operand = AsmReg | Mem | Imm | Label;
export type BranchTarget = Label | number | bigint;

/** An integer operand as a bigint, rejecting fractions and unsafe numbers. */
export function toBig(v: Imm, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isInteger(v)) throw new AsmError(`${what} ${v} is not an integer`);
  return BigInt(v);
}

/** An address as unsigned 64-bit; accepts the canonical signed form (-0x7f000000) too. */
export function toAddress(v: number | bigint): bigint {
  const b = toBig(v, 'address');
  if (b < -(1n << 63n) || b >= 1n << 64n) throw new AsmError(`address ${v} does not fit in 64 bits`);
  return BigInt.asUintN(64, b);
}

function gpr64(r: AsmReg | null | undefined, what: string): AsmReg | null {
  if (r === null || r === undefined) return null;
  if (!(r instanceof AsmReg) || r.cls !== 'gpr' || r.size !== 8) throw new AsmError(`${what} must be a 64-bit general register, got ${String(r)}`);
  return r;
}

export interface MemParts {
  base?: AsmReg | null;
  index?: AsmReg | null;
  /** 1, 2, 4 or 8. */
  scale?: number;
  disp?: number | bigint;
}

/** `[base + disp]`, or `[base + index*scale + disp]` from parts. The size comes from a wrapper. */
export function mem(base: AsmReg | MemParts | null, disp: number | bigint = 0): Mem {
  if (base === null || base instanceof AsmReg) {
    return new Mem(gpr64(base, 'base'), null, 1, toBig(disp, 'displacement'), 0, Register.None, null);
  }
  const scale = base.scale ?? 1;
  if (scale !== 1 && scale !== 2 && scale !== 4 && scale !== 8) throw new AsmError(`scale must be 1, 2, 4 or 8, got ${scale}`);
  const index = gpr64(base.index, 'index');
  if (index === rsp) throw new AsmError('rsp cannot be an index register');
  return new Mem(gpr64(base.base, 'base'), index, scale, toBig(base.disp ?? disp, 'displacement'), 0, Register.None, null);
}

/** The absolute address `[disp32]` (sign-extended), as in `movl $1, 0x10000`. */
export function abs(address: number | bigint): Mem {
  return new Mem(null, null, 1, toBig(address, 'address'), 0, Register.None, null);
}

/** `[rip + x]` reaching the absolute address `target`, or a label. */
export function rip(target: number | bigint | Label): Mem {
  const t = target instanceof Label ? target : toAddress(target);
  return new Mem(null, null, 1, 0n, 0, Register.None, t);
}

function segmented(seg: Register, x: Mem | number | bigint): Mem {
  const m = x instanceof Mem ? x : new Mem(null, null, 1, toBig(x, 'displacement'), 0, Register.None, null);
  return m.with({ seg });
}

/** `%gs:` override: `gs(0x10)` is the absolute `%gs:0x10` (per-CPU data), `gs(mem(rax, 8))` is `%gs:8(%rax)`. */
export function gs(x: Mem | number | bigint): Mem {
  return segmented(Register.GS, x);
}
/** `%fs:` override, like `gs`. */
export function fsSeg(x: Mem | number | bigint): Mem {
  return segmented(Register.FS, x);
}

function sized(size: MemSize, m: Mem): Mem {
  if (!(m instanceof Mem)) throw new AsmError(`size wrappers take a memory operand, got ${String(m)}`);
  return m.with({ size });
}
export const byte = (m: Mem): Mem => sized(1, m);
export const word = (m: Mem): Mem => sized(2, m);
export const dword = (m: Mem): Mem => sized(4, m);
export const qword = (m: Mem): Mem => sized(8, m);

/** How an operand reads in an error message: r64, m32, m, imm, label. */
export function describeOperand(op: Operand): string {
  if (op instanceof AsmReg) {
    if (op.cls === 'gpr') return `r${op.size * 8}`;
    return op.cls === 'seg' ? 'sreg' : op.cls;
  }
  if (op instanceof Mem) return op.size === 0 ? 'm' : `m${op.size * 8}`;
  if (op instanceof Label) return 'label';
  return 'imm';
}
