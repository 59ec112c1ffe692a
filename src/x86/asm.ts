/**
 * The assembler DSL: guest code written in TypeScript becomes real x86-64 bytes through
 * iced-x86's `BlockEncoder` (DESIGN.md §2). Each item gets a unique pseudo-IP; a label is the
 * pseudo-IP of the item bound after it, so the block encoder resolves branches and RIP-relative
 * references to labels, and picks rel8 or rel32 for jcc/jmp.
 *
 *   const a = new Asm(0xffffffff81000000n);
 *   a.mov(byte(mem(rdi)), 0); a.nop(4);                    // c6 07 00 0f 1f 40 00
 *   const out = a.assemble();
 */
import { BlockEncoder, BlockEncoderOptions, Decoder, DecoderOptions, Instruction, OpCodeOperandKind as K, OpKind } from 'iced-x86';
import { linuxNop } from './nops.ts';
import { canonicalCc, createInstruction, describeInsn, select, type Selected } from './asm-match.ts';
import {
  AsmError, AsmReg, Label, Mem, qword, rip, toAddress, type BranchTarget, type Operand,
} from './asm-operands.ts';

import { Assembled, canonical } from './asm-output.ts';

export * from './asm-operands.ts';
export { Assembled, canonical } from './asm-output.ts';
export { lookupMnemonic } from './asm-match.ts';

type Item =
  | { kind: 'insn'; name: string; sel: Selected; lock: boolean }
  | { kind: 'data'; bytes: Uint8Array }
  /** A branch whose form is fixed (`e8`/`e9`/`0f 8x` + rel32): patched after layout. */
  | { kind: 'rel32'; name: string; opcode: readonly number[]; target: BranchTarget }
  | { kind: 'raw'; insn: Instruction };

/** Pseudo-IPs are non-canonical, so they never collide with a real absolute target. */
const PSEUDO_BASE = 0x8000_0000_0000_0000n;
const pseudoIp = (i: number): bigint => PSEUDO_BASE + BigInt(i) * 16n;

const CC_INDEX: Record<string, number> = {
  o: 0, no: 1, b: 2, ae: 3, e: 4, ne: 5, be: 6, a: 7, s: 8, ns: 9, p: 10, np: 11, l: 12, ge: 13, le: 14, g: 15,
};
/** Condition codes accepted by `jcc`/`setcc`/`cmovcc` (canonical names and GAS aliases). */
export type Cc =
  | 'o' | 'no' | 'b' | 'ae' | 'e' | 'ne' | 'be' | 'a' | 's' | 'ns' | 'p' | 'np' | 'l' | 'ge' | 'le' | 'g'
  | 'c' | 'nae' | 'nc' | 'nb' | 'z' | 'nz' | 'na' | 'nbe' | 'pe' | 'po' | 'nge' | 'nl' | 'ng' | 'nle';
export type Condition = Cc;

export class Asm {
  readonly base: bigint;
  private readonly items: Item[] = [];
  private readonly named = new Map<string, Label>();
  private readonly used = new Set<Label>();
  private anon = 0;
  private pendingLock = false;

  /** `base`: absolute address of the first byte (canonical signed number, or bigint). */
  constructor(base: number | bigint) {
    this.base = toAddress(base);
  }

  /** The label called `name` (created on first use); without a name, a fresh anonymous one. */
  label(name?: string): Label {
    if (name === undefined) return new Label(`.L${this.anon++}`, this);
    let l = this.named.get(name);
    if (!l) {
      l = new Label(name, this);
      this.named.set(name, l);
    }
    return l;
  }

  /** Place `label` at the current position. */
  bind(label: Label): this {
    this.own(label);
    if (label.bound) throw new AsmError(`label '${label.name}' is bound twice`);
    label.pos = this.items.length;
    if (!this.named.has(label.name)) this.named.set(label.name, label);
    return this;
  }

  /** Create (or look up) label `name` and bind it here. */
  here(name?: string): Label {
    const l = this.label(name);
    this.bind(l);
    return l;
  }

  /** The next instruction gets a `lock` prefix (f0). */
  lock(): this {
    this.pendingLock = true;
    return this;
  }

  /** Any legacy-encoded instruction by mnemonic (GAS or iced name): `a.ins('bts', qword(mem(rdi)), 3)`. */
  ins(name: string, ...ops: Operand[]): this {
    for (const op of ops) {
      if (op instanceof Label) this.use(op);
      if (op instanceof Mem && op.ripTarget instanceof Label) this.use(op.ripTarget);
    }
    const sel = select(name, ops);
    const lock = this.pendingLock;
    this.pendingLock = false;
    if (lock && !(sel.canLock && sel.ops[0] instanceof Mem)) {
      throw new AsmError(`lock prefix is not allowed on '${describeInsn(name, ops)}': it needs a lockable instruction with a memory destination`);
    }
    this.items.push({ kind: 'insn', name, sel, lock });
    return this;
  }

  /** A ready-made iced instruction, encoded as given (copied; call `dispose()` to free copies). */
  emit(insn: Instruction): this {
    this.noLock('emit');
    this.items.push({ kind: 'raw', insn: insn.clone() });
    return this;
  }

  /** Raw bytes: data, or a hand-made instruction. */
  bytes(data: Uint8Array | readonly number[]): this {
    this.noLock('bytes');
    const b = Uint8Array.from(data);
    for (const v of b.length === data.length ? data : []) {
      if (!Number.isInteger(v) || v < 0 || v > 255) throw new AsmError(`byte value ${v} is not 0..255`);
    }
    for (let at = 0; at < b.length; at += 16) this.items.push({ kind: 'data', bytes: b.slice(at, at + 16) });
    return this;
  }

  /** The single Linux NOP of `len` bytes (1..8), as Linux writes it (src/x86/nops.ts). */
  nop(len = 1): this {
    let bytes: Uint8Array;
    try {
      bytes = linuxNop(len);
    } catch (e) {
      throw new AsmError((e as Error).message);
    }
    return this.bytes(bytes);
  }

  // Branches.
  /** `call target`: `e8 rel32` to a label or absolute address; `call *op` for a register or memory. */
  call(target: BranchTarget | AsmReg | Mem, opts: { indirect?: boolean } = {}): this {
    if (target instanceof AsmReg) return this.ins('call', target);
    if (target instanceof Mem) return this.callIndirect(target);
    if (opts.indirect) return this.callIndirect(rip(target));
    return this.rel32('call', [0xe8], target);
  }
  /** `call *mem`, e.g. `callIndirect(rip(pv_ops_slot))` -> `ff 15 rel32`. */
  callIndirect(m: Mem): this {
    return this.ins('call', m.size === 0 ? qword(m) : m);
  }
  /** `jmp target`; `{near: true}` forces `e9 rel32` (otherwise rel8 when it fits). */
  jmp(target: BranchTarget | AsmReg | Mem, opts: { near?: boolean } = {}): this {
    if (target instanceof AsmReg || target instanceof Mem) return this.ins('jmp', target);
    return opts.near ? this.rel32('jmp', [0xe9], target) : this.ins('jmp', target);
  }
  /** `j<cc> target`; `{near: true}` forces `0f 8x rel32`. */
  jcc(cc: Cc, target: BranchTarget, opts: { near?: boolean } = {}): this {
    const c = canonicalCc(cc);
    const n = CC_INDEX[c];
    if (n === undefined) throw new AsmError(`unknown condition code '${cc}'`);
    return opts.near ? this.rel32(`j${c}`, [0x0f, 0x80 + n], target) : this.ins(`j${c}`, target);
  }
  jo(t: BranchTarget): this { return this.jcc('o', t); }
  jno(t: BranchTarget): this { return this.jcc('no', t); }
  jb(t: BranchTarget): this { return this.jcc('b', t); }
  jae(t: BranchTarget): this { return this.jcc('ae', t); }
  je(t: BranchTarget): this { return this.jcc('e', t); }
  jz(t: BranchTarget): this { return this.jcc('e', t); }
  jne(t: BranchTarget): this { return this.jcc('ne', t); }
  jnz(t: BranchTarget): this { return this.jcc('ne', t); }
  jbe(t: BranchTarget): this { return this.jcc('be', t); }
  ja(t: BranchTarget): this { return this.jcc('a', t); }
  js(t: BranchTarget): this { return this.jcc('s', t); }
  jns(t: BranchTarget): this { return this.jcc('ns', t); }
  jp(t: BranchTarget): this { return this.jcc('p', t); }
  jnp(t: BranchTarget): this { return this.jcc('np', t); }
  jl(t: BranchTarget): this { return this.jcc('l', t); }
  jge(t: BranchTarget): this { return this.jcc('ge', t); }
  jle(t: BranchTarget): this { return this.jcc('le', t); }
  jg(t: BranchTarget): this { return this.jcc('g', t); }
  ret(popBytes?: number): this { return popBytes === undefined ? this.ins('ret') : this.ins('ret', popBytes); }

  // Data movement and arithmetic (operands as in Intel syntax: destination first).
  mov(d: Operand, s: Operand): this { return this.ins('mov', d, s); }
  movzx(d: AsmReg, s: AsmReg | Mem): this { return this.ins('movzx', d, s); }
  movsx(d: AsmReg, s: AsmReg | Mem): this { return this.ins('movsx', d, s); }
  movsxd(d: AsmReg, s: AsmReg | Mem): this { return this.ins('movsxd', d, s); }
  lea(d: AsmReg, s: Mem): this { return this.ins('lea', d, s); }
  add(d: Operand, s: Operand): this { return this.ins('add', d, s); }
  sub(d: Operand, s: Operand): this { return this.ins('sub', d, s); }
  adc(d: Operand, s: Operand): this { return this.ins('adc', d, s); }
  sbb(d: Operand, s: Operand): this { return this.ins('sbb', d, s); }
  and(d: Operand, s: Operand): this { return this.ins('and', d, s); }
  or(d: Operand, s: Operand): this { return this.ins('or', d, s); }
  xor(d: Operand, s: Operand): this { return this.ins('xor', d, s); }
  cmp(d: Operand, s: Operand): this { return this.ins('cmp', d, s); }
  test(d: Operand, s: Operand): this { return this.ins('test', d, s); }
  inc(d: Operand): this { return this.ins('inc', d); }
  dec(d: Operand): this { return this.ins('dec', d); }
  neg(d: Operand): this { return this.ins('neg', d); }
  not(d: Operand): this { return this.ins('not', d); }
  shl(d: Operand, n: Operand): this { return this.ins('shl', d, n); }
  shr(d: Operand, n: Operand): this { return this.ins('shr', d, n); }
  sar(d: Operand, n: Operand): this { return this.ins('sar', d, n); }
  rol(d: Operand, n: Operand): this { return this.ins('rol', d, n); }
  ror(d: Operand, n: Operand): this { return this.ins('ror', d, n); }
  rcl(d: Operand, n: Operand): this { return this.ins('rcl', d, n); }
  rcr(d: Operand, n: Operand): this { return this.ins('rcr', d, n); }
  imul(...ops: Operand[]): this { return this.ins('imul', ...ops); }
  mul(s: Operand): this { return this.ins('mul', s); }
  div(s: Operand): this { return this.ins('div', s); }
  idiv(s: Operand): this { return this.ins('idiv', s); }
  bt(d: Operand, b: Operand): this { return this.ins('bt', d, b); }
  bts(d: Operand, b: Operand): this { return this.ins('bts', d, b); }
  btr(d: Operand, b: Operand): this { return this.ins('btr', d, b); }
  btc(d: Operand, b: Operand): this { return this.ins('btc', d, b); }
  xchg(d: Operand, s: Operand): this { return this.ins('xchg', d, s); }
  cmpxchg(d: Operand, s: Operand): this { return this.ins('cmpxchg', d, s); }
  xadd(d: Operand, s: Operand): this { return this.ins('xadd', d, s); }
  push(s: Operand): this { return this.ins('push', s); }
  pop(d: Operand): this { return this.ins('pop', d); }
  setcc(cc: Cc, d: Operand): this { return this.ins(`set${canonicalCc(cc)}`, d); }
  cmovcc(cc: Cc, d: Operand, s: Operand): this { return this.ins(`cmov${canonicalCc(cc)}`, d, s); }
  bswap(d: AsmReg): this { return this.ins('bswap', d); }
  cbw(): this { return this.ins('cbw'); }
  cwde(): this { return this.ins('cwde'); }
  cdqe(): this { return this.ins('cdqe'); }
  cwd(): this { return this.ins('cwd'); }
  cdq(): this { return this.ins('cdq'); }
  cqo(): this { return this.ins('cqo'); }

  // System and flag instructions.
  pushfq(): this { return this.ins('pushfq'); }
  popfq(): this { return this.ins('popfq'); }
  stc(): this { return this.ins('stc'); }
  clc(): this { return this.ins('clc'); }
  cmc(): this { return this.ins('cmc'); }
  std(): this { return this.ins('std'); }
  cld(): this { return this.ins('cld'); }
  cli(): this { return this.ins('cli'); }
  sti(): this { return this.ins('sti'); }
  int3(): this { return this.ins('int3'); }
  hlt(): this { return this.ins('hlt'); }
  pause(): this { return this.ins('pause'); }
  cpuid(): this { return this.ins('cpuid'); }
  mfence(): this { return this.ins('mfence'); }
  lfence(): this { return this.ins('lfence'); }
  sfence(): this { return this.ins('sfence'); }
  serialize(): this { return this.ins('serialize'); }
  vmcall(): this { return this.ins('vmcall'); }
  vmmcall(): this { return this.ins('vmmcall'); }
  iretq(): this { return this.ins('iretq'); }
  endbr64(): this { return this.ins('endbr64'); }
  ud2(): this { return this.ins('ud2'); }
  rdmsr(): this { return this.ins('rdmsr'); }
  wrmsr(): this { return this.ins('wrmsr'); }

  /** Encode everything: resolves labels, picks branch sizes, patches fixed-form branches. */
  assemble(): Assembled {
    if (this.pendingLock) throw new AsmError('lock() is not followed by an instruction');
    for (const l of this.used) {
      if (!l.bound) throw new AsmError(`unknown label '${l.name}': used but never bound`);
    }
    const n = this.items.length;
    const endRef = [...this.used].some((l) => l.pos === n);
    // A label bound after the last item has no instruction to point at: give the block encoder
    // the real end address instead, and repeat until the layout agrees with it.
    let endGuess = this.base;
    let bytes: Uint8Array = new Uint8Array(0);
    let offsets: number[] = [];
    for (let round = 0; ; round++) {
      const end = endGuess;
      bytes = this.encodeBlock((l) => (l.pos < n ? pseudoIp(l.pos) : end));
      offsets = this.layout(bytes);
      const realEnd = this.base + BigInt(bytes.length);
      if (!endRef || realEnd === endGuess) break;
      if (round >= 8) throw new AsmError('branch layout does not converge');
      endGuess = realEnd;
    }
    const addrOf = (i: number): bigint => BigInt.asUintN(64, this.base + BigInt(offsets[i]!));
    this.items.forEach((it, i) => {
      if (it.kind !== 'rel32') return;
      const target = it.target instanceof Label ? addrOf(it.target.pos) : toAddress(it.target);
      const at = offsets[i]!;
      const len = it.opcode.length + 4;
      const rel = BigInt.asIntN(64, target - addrOf(i) - BigInt(len));
      if (rel < -(1n << 31n) || rel >= 1n << 31n) {
        throw new AsmError(`'${it.name}' target 0x${target.toString(16)} is out of rel32 range from 0x${addrOf(i).toString(16)}`);
      }
      new DataView(bytes.buffer, bytes.byteOffset).setInt32(at + it.opcode.length, Number(rel), true);
    });
    const labels = new Map<string, number>();
    for (const [name, l] of this.named) if (l.bound) labels.set(name, canonical(addrOf(l.pos)));
    for (const l of this.used) if (l.bound) labels.set(l.name, canonical(addrOf(l.pos)));
    const pieces = this.items.map((it, i) => ({ offset: offsets[i]!, end: offsets[i + 1]!, data: it.kind === 'data' }));
    return new Assembled(this.base, bytes, labels, pieces);
  }

  /** Free the copies that `emit()` made. The Asm can no longer assemble them afterwards. */
  dispose(): void {
    for (const it of this.items) if (it.kind === 'raw') it.insn.free();
    this.items.length = 0;
  }

  private encodeBlock(resolve: (l: Label) => bigint): Uint8Array {
    const be = new BlockEncoder(64, BlockEncoderOptions.None);
    try {
      this.items.forEach((it, i) => {
        let insn: Instruction;
        switch (it.kind) {
          case 'insn':
            insn = createInstruction(it.name, it.sel.code, it.sel.kinds, it.sel.ops, resolve);
            if (it.lock) insn.hasLockPrefix = true;
            break;
          case 'data':
            insn = Instruction.createDeclareByte(it.bytes);
            break;
          case 'rel32':
            insn = Instruction.createDeclareByte(Uint8Array.from([...it.opcode, 0, 0, 0, 0]));
            break;
          case 'raw':
            insn = it.insn.clone();
            break;
        }
        insn.ip = pseudoIp(i);
        be.add(insn);
        insn.free();
      });
      return be.encode(this.base);
    } catch (e) {
      if (e instanceof AsmError) throw e;
      throw new AsmError(`cannot encode block at 0x${this.base.toString(16)}: ${(e as Error).message ?? String(e)}`);
    } finally {
      be.free();
    }
  }

  /** Offset of every item (and of the end) in the encoded block. */
  private layout(bytes: Uint8Array): number[] {
    const offsets: number[] = [];
    const dec = new Decoder(64, bytes, DecoderOptions.None);
    const tmp = new Instruction();
    try {
      let at = 0;
      this.items.forEach((it) => {
        offsets.push(at);
        if (it.kind === 'data') at += it.bytes.length;
        else if (it.kind === 'rel32') at += it.opcode.length + 4;
        else {
          dec.position = at;
          dec.ip = this.base + BigInt(at);
          dec.decodeOut(tmp);
          // The block encoder rewrites a branch it cannot reach with rel32 into a longer
          // sequence; guest code must not silently change shape, so refuse. (Other instructions
          // may decode under another mnemonic: `48 90` is xchg rax,rax and also nop.)
          const branch = it.kind === 'insn'
            ? it.sel.kinds.length === 1 && (it.sel.kinds[0] === K.br64_1 || it.sel.kinds[0] === K.br64_4)
            : it.insn.op0Kind === OpKind.NearBranch64;
          const want = it.kind === 'insn' ? it.sel.mnemonic : it.insn.mnemonic;
          if (branch && (tmp.mnemonic !== want || tmp.op0Kind !== OpKind.NearBranch64)) {
            throw new AsmError(`'${it.kind === 'insn' ? describeInsn(it.name, it.sel.ops) : 'emitted instruction'}' at 0x${(this.base + BigInt(at)).toString(16)}: target out of rel32 range`);
          }
          at += tmp.length;
        }
      });
      offsets.push(at);
      if (at !== bytes.length) throw new AsmError(`internal: layout ${at} != encoded length ${bytes.length}`);
      return offsets;
    } finally {
      tmp.free();
      dec.free();
    }
  }

  private rel32(name: string, opcode: readonly number[], target: BranchTarget): this {
    this.noLock(name);
    if (target instanceof Label) this.use(target);
    else toAddress(target);
    this.items.push({ kind: 'rel32', name, opcode, target });
    return this;
  }

  private use(l: Label): void {
    this.own(l);
    this.used.add(l);
  }

  private own(l: Label): void {
    if (l.owner !== this) throw new AsmError(`label '${l.name}' belongs to another Asm`);
  }

  private noLock(what: string): void {
    if (this.pendingLock) throw new AsmError(`lock prefix cannot apply to ${what}`);
  }
}
