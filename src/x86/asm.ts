/**
 * The assembler DSL: guest code written in TypeScript becomes real x86-64 bytes through iced-x86's
 * BlockEncoder, which resolves labels and picks short or near branches (DESIGN.md §2).
 *
 *   const a = new Asm(0xffffffff81000000);
 *   const top = a.here('top');
 *   a.ins('add', rax, rcx).ins('dec', ecx).jcc('ne', top).hlt();
 *   a.mov(byte(mem(rdi)), 0);            // c6 07 00, the native unlock (seed 001)
 *   a.callIndirect(rip(pvOpsSlot));      // ff 15 rel32, a PVOP call site
 *   const out = a.assemble();            // bytes, label addresses, listing
 */
import { BlockEncoder, Encoder, Instruction, MemoryOperand, Register, Code, OpCodeOperandKind as K } from 'iced-x86';
import { linuxNop } from './nops.ts';
import { disassemble, hexBytes, hexAddress } from './format.ts';
import {
  candidates, operandSize, regSize, immFits, isImmKind, isBranchKind, regFits, memFits,
  type Candidate, type RegOp, type MemOp, type ImmOp,
} from './asm-select.ts';

export type { RegOp, MemOp, ImmOp } from './asm-select.ts';

export class AsmError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'AsmError';
  }
}

/** A position in the code, possibly not yet bound. */
export class Label {
  constructor(readonly name: string) {}
}

export type Operand = RegOp | MemOp | ImmOp | Label;

export function reg(r: Register): RegOp {
  if (regSize(r) === 0) throw new AsmError(`${Register[r]} is not a general register`);
  return { kind: 'reg', reg: r };
}

const R = (r: Register) => reg(r);
export const rax = R(Register.RAX), rcx = R(Register.RCX), rdx = R(Register.RDX), rbx = R(Register.RBX);
export const rsp = R(Register.RSP), rbp = R(Register.RBP), rsi = R(Register.RSI), rdi = R(Register.RDI);
export const r8 = R(Register.R8), r9 = R(Register.R9), r10 = R(Register.R10), r11 = R(Register.R11);
export const r12 = R(Register.R12), r13 = R(Register.R13), r14 = R(Register.R14), r15 = R(Register.R15);
export const eax = R(Register.EAX), ecx = R(Register.ECX), edx = R(Register.EDX), ebx = R(Register.EBX);
export const esp = R(Register.ESP), ebp = R(Register.EBP), esi = R(Register.ESI), edi = R(Register.EDI);
export const r8d = R(Register.R8D), r9d = R(Register.R9D), r10d = R(Register.R10D), r11d = R(Register.R11D);
export const r12d = R(Register.R12D), r13d = R(Register.R13D), r14d = R(Register.R14D), r15d = R(Register.R15D);
export const ax = R(Register.AX), cx = R(Register.CX), dx = R(Register.DX), bx = R(Register.BX);
export const sp = R(Register.SP), bp = R(Register.BP), si = R(Register.SI), di = R(Register.DI);
export const al = R(Register.AL), cl = R(Register.CL), dl = R(Register.DL), bl = R(Register.BL);
export const ah = R(Register.AH), ch = R(Register.CH), dh = R(Register.DH), bh = R(Register.BH);
export const spl = R(Register.SPL), bpl = R(Register.BPL), sil = R(Register.SIL), dil = R(Register.DIL);
export const r8b = R(Register.R8L), r9b = R(Register.R9L), r10b = R(Register.R10L), r11b = R(Register.R11L);
export const r12b = R(Register.R12L), r13b = R(Register.R13L), r14b = R(Register.R14L), r15b = R(Register.R15L);

/** A general register by name (`rax`, `r8d`, `ah`, `r15b`/`r15l`), or undefined. */
export function regByName(name: string): RegOp | undefined {
  const n = name.toUpperCase().replace(/^(R\d+)B$/, '$1L');
  const r = Register[n as keyof typeof Register];
  return typeof r === 'number' && regSize(r) > 0 ? reg(r) : undefined;
}

function regOf(v: RegOp | undefined): Register {
  return v ? v.reg : Register.None;
}

/** `[base + disp]` or `[base + index*scale + disp]`. */
export function mem(base: RegOp | { base?: RegOp; index?: RegOp; scale?: number; disp?: number | bigint }, disp: number | bigint = 0): MemOp {
  const o = 'kind' in base ? { base, disp } : base;
  const scale = o.scale ?? 1;
  if (![1, 2, 4, 8].includes(scale)) throw new AsmError(`index scale must be 1, 2, 4 or 8, not ${scale}`);
  for (const r of [o.base, o.index]) if (r && regSize(r.reg) !== 8) throw new AsmError('addresses use 64-bit registers');
  return { kind: 'mem', base: regOf(o.base), index: regOf(o.index), scale, disp: BigInt(o.disp ?? 0), seg: Register.None };
}

/** An absolute address `[disp32]` (sign-extended), as in `movl $1, 0x10000`. */
export function abs(address: number | bigint): MemOp {
  return { kind: 'mem', base: Register.None, index: Register.None, scale: 1, disp: BigInt(address), seg: Register.None };
}

/** RIP-relative to a label or an absolute address: `call *pv_ops+off(%rip)`. */
export function rip(target: Label | number | bigint): MemOp {
  const ripTarget = target instanceof Label ? { label: target.name } : { address: BigInt.asUintN(64, BigInt(target)) };
  return { kind: 'mem', base: Register.RIP, index: Register.None, scale: 1, disp: 0n, seg: Register.None, ripTarget };
}

const sized = (size: 1 | 2 | 4 | 8) => (m: MemOp): MemOp => ({ ...m, size });
export const byte = sized(1), word = sized(2), dword = sized(4), qword = sized(8);

/** The %gs: segment override (per-CPU data). A number means an absolute %gs offset. */
export function gs(m: MemOp | number | bigint): MemOp {
  const base = typeof m === 'object' ? m : abs(m);
  return { ...base, seg: Register.GS };
}

const CONDITIONS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'] as const;
const CC_ALIASES: Record<string, string> = { z: 'e', nz: 'ne', c: 'b', nc: 'ae', nae: 'b', nb: 'ae', na: 'be', nbe: 'a', pe: 'p', po: 'np', nge: 'l', nl: 'ge', ng: 'le', nle: 'g' };
export type Condition = (typeof CONDITIONS)[number] | keyof typeof CC_ALIASES;

/** GAS/Intel condition aliases (jz, setnz, cmovc, ...) → iced's mnemonic names. */
function canonicalMnemonic(name: string): string {
  const m = /^(j|set|cmov)([a-z]+)$/.exec(name);
  if (!m || name === 'jmp') return name;
  const cc = CC_ALIASES[m[2]!];
  return cc ? m[1] + cc : name;
}

/** Pseudo addresses that identify instructions to the block encoder: non-canonical, never real. */
const ID_BASE = 0x7fff_0000_0000_0000n;

type Item =
  | { kind: 'insn'; id: bigint; make: () => Instruction; text: string }
  | { kind: 'bytes'; id: bigint; data: Uint8Array };

export interface Assembled {
  base: bigint;
  bytes: Uint8Array;
  /** Label name → absolute address (a canonical address as a signed number). */
  labels: Map<string, number>;
  address(label: string): number;
  listing(): string;
}

function describe(op: Operand): string {
  if (op instanceof Label) return `label ${op.name}`;
  if (typeof op === 'number' || typeof op === 'bigint') return 'imm';
  if (op.kind === 'reg') return `r${regSize(op.reg) * 8}`;
  return op.size ? `m${op.size * 8}` : 'mem';
}

export class Asm {
  readonly base: bigint;
  private readonly items: Item[] = [];
  /** Label name → index of the item it is bound before (items.length = the end). */
  private readonly bound = new Map<string, number>();
  private readonly labels = new Map<string, Label>();
  private nextId = 1n;
  private pendingLock = false;
  private readonly encoder = new Encoder(64);

  constructor(base: number | bigint) {
    this.base = BigInt.asUintN(64, BigInt(base));
  }

  /** Create (or look up) a named label; forward references are fine. */
  label(name?: string): Label {
    const n = name ?? `.L${this.labels.size}`;
    let l = this.labels.get(n);
    if (!l) { l = new Label(n); this.labels.set(n, l); }
    return l;
  }

  /** Bind a label to the current position. */
  bind(l: Label): this {
    if (this.bound.has(l.name)) throw new AsmError(`label '${l.name}' is bound twice`);
    this.bound.set(l.name, this.items.length);
    return this;
  }

  /** Create and bind a label here. */
  here(name?: string): Label {
    const l = this.label(name);
    this.bind(l);
    return l;
  }

  /** The next instruction carries the LOCK prefix. */
  lock(): this {
    this.pendingLock = true;
    return this;
  }

  /** Raw bytes (data, or hand-made instructions). */
  bytes(data: Uint8Array | number[]): this {
    const d = Uint8Array.from(data);
    if (d.length > 0) this.items.push({ kind: 'bytes', id: ID_BASE + this.nextId++, data: d });
    return this;
  }

  /** Linux's NOP of `n` bytes (arch/x86/include/asm/nops.h). */
  nop(n = 1): this {
    return this.bytes(linuxNop(n));
  }

  /** An iced Instruction as it is (for exact forms the selector would not choose). */
  emit(instr: Instruction): this {
    const copy = instr;
    this.addItem(() => copy, 'emit');
    return this;
  }

  /** Instructions are built at assemble time, when every label's pseudo id is known. */
  private addItem(make: () => Instruction, text: string): void {
    this.items.push({ kind: 'insn', id: ID_BASE + this.nextId++, make, text });
  }

  /** Any legacy instruction by mnemonic, with the shortest matching encoding. */
  ins(mnemonic: string, ...ops: Operand[]): this {
    const name = canonicalMnemonic(mnemonic.toLowerCase());
    const lock = this.pendingLock;
    this.pendingLock = false;
    const cands = candidates(name);
    if (cands.length === 0) throw new AsmError(`unknown mnemonic '${mnemonic}'`);
    const text = `${name} ${ops.map(describe).join(', ')}`.trim();
    // An indirect near CALL/JMP reads a 64-bit pointer.
    if ((name === 'call' || name === 'jmp') && ops.length === 1) {
      const o = ops[0]!;
      if (typeof o === 'object' && !(o instanceof Label) && o.kind === 'mem' && o.size === undefined) ops = [{ ...o, size: 8 }];
    }
    const isBranch = ops.length === 1 && (ops[0] instanceof Label || ((typeof ops[0] === 'number' || typeof ops[0] === 'bigint') && cands.some((c) => c.kinds.length === 1 && isBranchKind(c.kinds[0]!))));
    if (isBranch) {
      const c = cands.find((x) => x.kinds.length === 1 && x.kinds[0] === K.br64_4) ?? cands.find((x) => x.kinds.length === 1 && x.kinds[0] === K.br64_1);
      if (!c) throw new AsmError(`'${mnemonic}' takes no branch target`);
      const t = ops[0] as Label | number | bigint;
      this.addItem(() => Instruction.createBranch(c.code, this.resolve(t)), text);
      return this;
    }
    const matches = cands.filter((c) => this.fits(c, ops));
    if (matches.length === 0) throw new AsmError(`no encoding of '${mnemonic}' for operands (${ops.map(describe).join(', ')})`);
    if (lock && !matches.some((c) => c.lock)) throw new AsmError(`'${mnemonic}' cannot take a LOCK prefix with these operands`);
    const usable = lock ? matches.filter((c) => c.lock) : matches;
    // Shortest encoding wins; ties keep iced's order (GAS's choices, e.g. 31 c0 for xor eax,eax).
    let best: { c: Candidate; len: number } | undefined;
    for (const c of usable) {
      let len: number;
      try {
        const probe = this.build(c, ops, lock, true);
        len = this.encoder.encode(probe, 0x1000n);
        probe.free();
      } catch {
        continue;
      }
      if (!best || len < best.len) best = { c, len };
    }
    if (!best) throw new AsmError(`no encoding of '${mnemonic}' for operands (${ops.map(describe).join(', ')}) fits the values given`);
    const chosen = best.c;
    this.addItem(() => this.build(chosen, ops, lock, false), text);
    return this;
  }

  private fits(c: Candidate, ops: Operand[]): boolean {
    if (c.kinds.length !== ops.length) return false;
    const size = operandSize(c.kinds);
    const implied = ops.reduce<number>((s, o) => (typeof o === 'object' && !(o instanceof Label) && o.kind === 'reg' ? s || regSize(o.reg) : s), 0);
    for (let i = 0; i < ops.length; i++) {
      const k = c.kinds[i]!;
      const o = ops[i]!;
      if (o instanceof Label) return false;
      if (typeof o === 'number' || typeof o === 'bigint') {
        if (!isImmKind(k) || !immFits(k, BigInt(o), size)) return false;
      } else if (o.kind === 'reg') {
        if (!regFits(k, o.reg)) return false;
      } else {
        if (!memFits(k, o, implied)) return false;
        if (k !== K.mem && o.size === undefined && implied === 0) return false; // size unknown
      }
    }
    return true;
  }

  private resolveMem(m: MemOp, probe: boolean): MemoryOperand {
    if (m.ripTarget) {
      const t = probe ? 0x1000n : m.ripTarget.label !== undefined ? this.resolve(this.label(m.ripTarget.label)) : m.ripTarget.address!;
      return MemoryOperand.new64(Register.RIP, Register.None, 1, t, 8, false, m.seg);
    }
    // No base and no index: an absolute disp32 (SIB form, no 0x67 prefix), which iced spells displSize 8.
    const displSize = m.base === Register.None && m.index === Register.None ? 8 : m.disp === 0n ? 0 : 1;
    return MemoryOperand.new64(m.base, m.index, m.scale, BigInt.asUintN(64, m.disp), displSize, false, m.seg);
  }

  private build(c: Candidate, ops: Operand[], lock: boolean, probe: boolean): Instruction {
    const size = operandSize(c.kinds);
    const imm = (o: ImmOp, k: K): { i32?: number; u32?: number; u64?: bigint } => {
      const v = BigInt(o);
      if (k === K.imm64) return { u64: BigInt.asUintN(64, v) };
      const s = BigInt.asIntN(Math.min(size, 4) * 8, v);
      return s >= 0n && v >= 0x80000000n ? { u32: Number(v & 0xffffffffn) } : { i32: Number(BigInt.asIntN(32, s)) };
    };
    const shape = ops.map((o) => (typeof o === 'number' || typeof o === 'bigint' ? 'i' : o instanceof Label ? 'l' : o.kind === 'reg' ? 'r' : 'm')).join('');
    const r = (i: number) => (ops[i] as RegOp).reg;
    const m = (i: number) => this.resolveMem(ops[i] as MemOp, probe);
    const code = c.code;
    let ins: Instruction;
    const withImm = (i: number, f32: (v: number) => Instruction, fu32: (v: number) => Instruction, f64: (v: bigint) => Instruction) => {
      const v = imm(ops[i] as ImmOp, c.kinds[i]!);
      return v.u64 !== undefined ? f64(v.u64) : v.u32 !== undefined ? fu32(v.u32) : f32(v.i32!);
    };
    switch (shape) {
      case '': ins = Instruction.create(code); break;
      case 'r': ins = Instruction.createReg(code, r(0)); break;
      case 'm': ins = Instruction.createMem(code, m(0)); break;
      case 'i': ins = withImm(0, (v) => Instruction.createI32(code, v), (v) => Instruction.createU32(code, v), (v) => Instruction.createU32(code, Number(v))); break;
      case 'rr': ins = Instruction.createRegReg(code, r(0), r(1)); break;
      case 'rm': ins = Instruction.createRegMem(code, r(0), m(1)); break;
      case 'mr': ins = Instruction.createMemReg(code, m(0), r(1)); break;
      case 'ri': ins = withImm(1, (v) => Instruction.createRegI32(code, r(0), v), (v) => Instruction.createRegU32(code, r(0), v), (v) => Instruction.createRegU64(code, r(0), v)); break;
      case 'mi': ins = withImm(1, (v) => Instruction.createMemI32(code, m(0), v), (v) => Instruction.createMemU32(code, m(0), v), (v) => Instruction.createMemU32(code, m(0), Number(v))); break;
      case 'rri': ins = withImm(2, (v) => Instruction.createRegRegI32(code, r(0), r(1), v), (v) => Instruction.createRegRegU32(code, r(0), r(1), v), (v) => Instruction.createRegRegU32(code, r(0), r(1), Number(v))); break;
      case 'rmi': ins = withImm(2, (v) => Instruction.createRegMemI32(code, r(0), m(1), v), (v) => Instruction.createRegMemU32(code, r(0), m(1), v), (v) => Instruction.createRegMemU32(code, r(0), m(1), Number(v))); break;
      case 'mri': ins = withImm(2, (v) => Instruction.createMemRegI32(code, m(0), r(1), v), (v) => Instruction.createMemRegU32(code, m(0), r(1), v), (v) => Instruction.createMemRegU32(code, m(0), r(1), Number(v))); break;
      default: throw new AsmError(`operand shape (${shape}) is not supported by the DSL`);
    }
    if (lock) ins.hasLockPrefix = true;
    return ins;
  }

  /** During assemble(): label → pseudo id of the item it is bound before. */
  private labelIds: Map<string, bigint> | undefined;

  private resolve(t: Label | number | bigint): bigint {
    if (!(t instanceof Label)) return BigInt.asUintN(64, BigInt(t));
    const id = this.labelIds?.get(t.name);
    if (id === undefined) {
      if (!this.bound.has(t.name)) throw new AsmError(`label '${t.name}' is used but never bound`);
      throw new AsmError(`label '${t.name}' is bound at the very end of the code, where nothing can be referenced`);
    }
    return id;
  }

  // Convenience methods for the instructions guest code uses most.
  mov(a: Operand, b: Operand): this { return this.ins('mov', a, b); }
  add(a: Operand, b: Operand): this { return this.ins('add', a, b); }
  sub(a: Operand, b: Operand): this { return this.ins('sub', a, b); }
  and(a: Operand, b: Operand): this { return this.ins('and', a, b); }
  or(a: Operand, b: Operand): this { return this.ins('or', a, b); }
  xor(a: Operand, b: Operand): this { return this.ins('xor', a, b); }
  cmp(a: Operand, b: Operand): this { return this.ins('cmp', a, b); }
  test(a: Operand, b: Operand): this { return this.ins('test', a, b); }
  lea(a: Operand, b: Operand): this { return this.ins('lea', a, b); }
  movzx(a: Operand, b: Operand): this { return this.ins('movzx', a, b); }
  movsx(a: Operand, b: Operand): this { return this.ins('movsx', a, b); }
  cmpxchg(a: Operand, b: Operand): this { return this.ins('cmpxchg', a, b); }
  xadd(a: Operand, b: Operand): this { return this.ins('xadd', a, b); }
  xchg(a: Operand, b: Operand): this { return this.ins('xchg', a, b); }
  bts(a: Operand, b: Operand): this { return this.ins('bts', a, b); }
  btr(a: Operand, b: Operand): this { return this.ins('btr', a, b); }
  shl(a: Operand, b: Operand): this { return this.ins('shl', a, b); }
  shr(a: Operand, b: Operand): this { return this.ins('shr', a, b); }
  inc(a: Operand): this { return this.ins('inc', a); }
  dec(a: Operand): this { return this.ins('dec', a); }
  neg(a: Operand): this { return this.ins('neg', a); }
  not(a: Operand): this { return this.ins('not', a); }
  push(a: Operand): this { return this.ins('push', a); }
  pop(a: Operand): this { return this.ins('pop', a); }
  jmp(t: Label | number | bigint): this { return this.ins('jmp', t); }
  jcc(cc: Condition, t: Label | number | bigint): this {
    const c = CC_ALIASES[cc] ?? cc;
    if (!(CONDITIONS as readonly string[]).includes(c)) throw new AsmError(`unknown condition '${cc}'`);
    return this.ins(`j${c}`, t);
  }
  jne(t: Label | number | bigint): this { return this.jcc('ne', t); }
  je(t: Label | number | bigint): this { return this.jcc('e', t); }
  /** CALL rel32 (e8) to a label or address; with an operand that is memory or a register, CALL indirect. */
  call(t: Label | number | bigint | MemOp | RegOp): this {
    if (typeof t === 'object' && !(t instanceof Label)) return this.ins('call', t);
    const target = t;
    this.addItem(() => Instruction.createBranch(Code.Call_rel32_64, this.resolve(target)), 'call');
    return this;
  }
  /** `call *mem` (ff 15 rel32 for a RIP-relative operand): a PVOP call site. */
  callIndirect(m: MemOp): this { return this.ins('call', { ...m, size: 8 }); }
  ret(): this { return this.ins('ret'); }
  hlt(): this { return this.ins('hlt'); }
  pause(): this { return this.ins('pause'); }
  int3(): this { return this.ins('int3'); }
  iretq(): this { return this.ins('iretq'); }
  cli(): this { return this.ins('cli'); }
  sti(): this { return this.ins('sti'); }
  cpuid(): this { return this.ins('cpuid'); }
  mfence(): this { return this.ins('mfence'); }
  serialize(): this { return this.ins('serialize'); }
  vmcall(): this { return this.ins('vmcall'); }
  vmmcall(): this { return this.ins('vmmcall'); }
  pushfq(): this { return this.ins('pushfq'); }
  popfq(): this { return this.ins('popfq'); }
  endbr64(): this { return this.ins('endbr64'); }
  wrmsr(): this { return this.ins('wrmsr'); }

  /** Encode everything; labels get their addresses. */
  assemble(): Assembled {
    // Each item gets a pseudo id; a label is the id of the item it precedes.
    this.labelIds = new Map();
    for (const [name, at] of this.bound) {
      const item = this.items[at];
      if (item) this.labelIds.set(name, item.id);
    }
    for (const name of this.labels.keys()) {
      if (!this.bound.has(name)) throw new AsmError(`label '${name}' is used but never bound`);
    }
    const be = new BlockEncoder(64, 0);
    const made: Instruction[] = [];
    try {
      for (const it of this.items) {
        const ins = it.kind === 'insn' ? it.make() : Instruction.createDeclareByte(it.data);
        ins.ip = it.id;
        made.push(ins);
        be.add(ins);
      }
      let bytes: Uint8Array;
      try {
        bytes = this.items.length > 0 ? be.encode(this.base) : new Uint8Array(0);
      } catch (e) {
        throw new AsmError(`cannot encode the block at ${hexAddress(Number(BigInt.asIntN(64, this.base)))}: ${e instanceof Error ? e.message : String(e)}`);
      }
      return this.layout(bytes);
    } finally {
      for (const m of made) m.free();
      be.free();
      this.labelIds = undefined;
    }
  }

  /** Find each item's offset in the output (the block encoder keeps order, one output per item). */
  private layout(bytes: Uint8Array): Assembled {
    const offsets: number[] = [];
    let off = 0;
    for (const it of this.items) {
      offsets.push(off);
      if (it.kind === 'bytes') off += it.data.length;
      else {
        const line = disassemble(bytes.subarray(off, Math.min(bytes.length, off + 15)), 0)[0];
        if (!line || !line.valid) throw new AsmError(`internal: cannot re-read encoded ${it.text} at offset ${off}`);
        off += line.bytes.length;
      }
    }
    if (off !== bytes.length) throw new AsmError(`internal: layout ${off} != ${bytes.length} bytes`);
    const baseNum = Number(BigInt.asIntN(64, this.base));
    const labels = new Map<string, number>();
    for (const [name, at] of this.bound) labels.set(name, baseNum + (at < offsets.length ? offsets[at]! : bytes.length));
    const items = this.items;
    return {
      base: this.base,
      bytes,
      labels,
      address(label: string): number {
        const a = labels.get(label);
        if (a === undefined) throw new AsmError(`no label '${label}'`);
        return a;
      },
      listing(): string {
        const byOffset = new Map<number, string[]>();
        for (const [name, at] of labels) byOffset.set(at - baseNum, [...(byOffset.get(at - baseNum) ?? []), name]);
        const out: string[] = [];
        items.forEach((it, k) => {
          const o = offsets[k]!;
          for (const n of byOffset.get(o) ?? []) out.push(`${n}:`);
          const end = k + 1 < offsets.length ? offsets[k + 1]! : bytes.length;
          const chunk = bytes.subarray(o, end);
          const lines = disassemble(chunk, baseNum + o);
          const text = lines.length === 1 && lines[0]!.valid ? lines[0]!.text : `.byte ${Array.from(chunk, (b) => '0x' + b.toString(16)).join(', ')}`;
          out.push(`  ${hexAddress(baseNum + o)}  ${hexBytes(chunk).padEnd(24)} ${text}`);
        });
        return out.join('\n');
      },
    };
  }
}
