/**
 * Random instruction sequences for the differential test (DESIGN.md §8), built with the
 * assembler DSL so it is exercised too. A sequence is a list of steps (one instruction, or a
 * small group that only makes sense whole: a forward jump's window, a local call, pushfq+pop);
 * any prefix of the steps assembles and runs, which lets a mismatch be narrowed to its first step.
 *
 * Flags: architecturally undefined flags differ between CPUs, so the generator tracks, with
 * iced's per-instruction rflags info, which status flags hold a defined value, never emits an
 * instruction that reads a flag while it is undefined, and reports the defined set at the end of
 * every prefix. Memory operands reach the first 60 KiB of the scratch region as `[r15 + disp]`,
 * `[rip + x]`, `%gs:disp` (the GS base is the scratch base in both worlds) or, after masking an
 * index register, `[r15 + idx*scale + disp]`; r15 and rsp are never written except by balanced
 * push/pop/call/ret.
 */
import {
  Asm, AsmError, Label, Mem, mem, rip, gs, byte, word, dword, qword, r15,
  GPR64, GPR32, GPR16, GPR8, GPR8_HIGH, type AsmReg, type Operand,
} from '../../src/x86/asm.ts';
import { Reg, STATUS_FLAGS } from '../../src/x86/registers.ts';
import { Prng } from '../../src/sched/prng.ts';
import { FlagInfo } from './sequence-flags.ts';
import { CODE_BASE, GS_BASE, SCRATCH_BASE, STACK_TOP, type MemPatch } from '../native/native-runner.ts';

/** The project's PRNG (src/sched/prng.ts) with the draws a generator wants. */
export class SeqRandom {
  private readonly p: Prng;
  constructor(seed: number) {
    this.p = new Prng(seed);
  }
  u32(): number { return this.p.u32(); }
  /** Integer in [0, n). */
  int(n: number): number { return this.p.int(n); }
  u64(): bigint { return (BigInt(this.p.u32()) << 32n) | BigInt(this.p.u32()); }
  chance(q: number): boolean { return this.p.float() < q; }
  pick<T>(xs: readonly T[]): T { return xs[this.p.int(xs.length)]!; }
}

/** Edge values for registers, immediates and memory (DESIGN.md §8). */
export const EDGE_VALUES: readonly bigint[] = [
  0n, 1n, 2n, 0xffffffffffffffffn, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn,
  0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n,
];
const SHIFT_COUNTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 0x7f, 0xff];

export type { SeqInsn } from './sequence-flags.ts';
import type { SeqInsn } from './sequence-flags.ts';
type Item =
  | { t: 'insn'; insn: SeqInsn }
  | { t: 'nop'; len: number }
  | { t: 'jump'; cc: string | null; label: number }
  | { t: 'call'; label: number }
  /** `lea reg, [rip + label]`: a code address for an indirect call or jump. */
  | { t: 'lea-label'; reg: AsmReg; label: number }
  /** An indirect `call`/`jmp` through a register or memory. */
  | { t: 'indirect'; name: 'call' | 'jmp'; target: AsmReg | Mem }
  | { t: 'bind'; label: number };

export interface Step {
  items: Item[];
}

export interface Sequence {
  seed: number;
  index: number;
  /** 16 GPRs (rax..r15) at entry; rsp = STACK_TOP, r15 = SCRATCH_BASE. */
  regs: bigint[];
  /** Status flags at entry (x86 RFLAGS bits). */
  rflags: number;
  memSeed: bigint;
  patches: MemPatch[];
  steps: Step[];
  /** definedAfter[i]: status flags whose value is defined when the prefix of i+1 steps ends. */
  definedAfter: number[];
}

// ---- operands ---------------------------------------------------------------------------------

// `%gs:disp` below is scratch + disp only because both worlds set the GS base so.
if (GS_BASE !== SCRATCH_BASE) throw new Error('sequence-gen assumes GS_BASE = SCRATCH_BASE');

const BY_SIZE: Record<number, readonly AsmReg[]> = { 1: GPR8, 2: GPR16, 4: GPR32, 8: GPR64 };
const SIZED: Record<number, (m: Mem) => Mem> = { 1: byte, 2: word, 4: dword, 8: qword };
/** Highest displacement from r15 an access may start at (the stack lives above 60 KiB). */
const MAX_DISP = 0xf000 - 64;

class Gen {
  private readonly flags: FlagInfo;
  private hot: number[] = [];
  private defined = STATUS_FLAGS;
  private depth = 0;
  private nextLabel = 0;
  constructor(private readonly r: SeqRandom, flags: FlagInfo) {
    this.flags = flags;
  }

  /** A register of `size` bytes that may be written (never rsp or r15, nor their parts). */
  dst(size: number): AsmReg {
    if (size === 1 && this.r.chance(0.2)) return this.r.pick(GPR8_HIGH);
    let i: number;
    do i = this.r.int(16); while (i === Reg.RSP || i === Reg.R15);
    return BY_SIZE[size]![i]!;
  }
  /** Any register of `size` bytes, to read. */
  src(size: number): AsmReg {
    if (size === 1 && this.r.chance(0.2)) return this.r.pick(GPR8_HIGH);
    return BY_SIZE[size]![this.r.int(16)]!;
  }
  size(): number { return this.r.pick([1, 2, 4, 8]); }
  disp(extra = 0): number {
    if (this.hot.length > 0 && this.r.chance(0.75)) return this.r.pick(this.hot) + this.r.int(8);
    return this.r.int(MAX_DISP - extra);
  }
  mem(size: number, extra = 0): Mem {
    const d = this.disp(extra);
    const k = this.r.int(20);
    return SIZED[size]!(k < 13 ? mem(r15, d) : k < 17 ? rip(SCRATCH_BASE + d) : gs(d));
  }
  /** An immediate that fits an operation of `size` bytes (imm32 sign-extended for 64-bit). */
  imm(size: number): bigint {
    const v = this.r.chance(0.7) ? this.r.pick(EDGE_VALUES) : this.r.u64();
    const bits = size === 8 ? 32 : size * 8;
    let x = BigInt.asIntN(bits, v);
    if (this.r.chance(0.3)) x = BigInt(this.r.int(256) - 128);
    return x;
  }
  value(): bigint {
    if (this.r.chance(0.6)) return this.r.pick(EDGE_VALUES);
    if (this.r.chance(0.3)) return BigInt(this.r.int(200));
    return this.r.u64();
  }
  label(): number { return this.nextLabel++; }

  // ---- instruction families --------------------------------------------------------------------

  private alu(name: string): SeqInsn {
    const s = this.size();
    const form = this.r.int(5);
    const write = name !== 'cmp' && name !== 'test';
    const d = write ? this.dst(s) : this.src(s);
    switch (form) {
      case 0: return { name, ops: [d, this.src(s)] };
      case 1: return { name, ops: [d, this.imm(s)] };
      case 2: return name === 'test' ? { name, ops: [this.mem(s), this.src(s)] } : { name, ops: [d, this.mem(s)] };
      case 3: return { name, ops: [this.mem(s), this.src(s)] };
      default: return { name, ops: [this.mem(s), this.imm(s)] };
    }
  }

  private simple(): SeqInsn {
    const r = this.r;
    switch (r.int(24)) {
      case 0: case 1: {
        const s = this.size();
        switch (r.int(5)) {
          case 0: return { name: 'mov', ops: [this.dst(s), this.src(s)] };
          case 1: return { name: 'mov', ops: [this.dst(s), s === 8 && r.chance(0.5) ? this.value() : this.imm(s)] };
          case 2: return { name: 'mov', ops: [this.dst(s), this.mem(s)] };
          case 3: return { name: 'mov', ops: [this.mem(s), this.src(s)] };
          default: return { name: 'mov', ops: [this.mem(s), this.imm(s)] };
        }
      }
      case 2: {
        const name = r.pick(['movzx', 'movsx']);
        const from = r.pick([1, 2]);
        const to = r.pick(from === 1 ? [2, 4, 8] : [4, 8]);
        return { name, ops: [this.dst(to), r.chance(0.5) ? this.src(from) : this.mem(from)] };
      }
      case 3: return { name: 'movsxd', ops: [this.dst(8), r.chance(0.5) ? this.src(4) : this.mem(4)] };
      case 4: {
        const index = r.chance(0.6) ? this.src(8) : null;
        return {
          name: 'lea',
          ops: [this.dst(r.pick([2, 4, 8])), mem({ base: r.chance(0.9) ? this.src(8) : null, index: index === GPR64[Reg.RSP] ? null : index, scale: r.pick([1, 2, 4, 8]), disp: Number(BigInt.asIntN(32, this.value())) })],
        };
      }
      case 5: case 6: case 7: case 8:
        return this.alu(r.pick(['add', 'sub', 'adc', 'sbb', 'and', 'or', 'xor', 'cmp', 'test']));
      case 9: {
        const name = r.pick(['inc', 'dec', 'neg', 'not']);
        const s = this.size();
        return { name, ops: [r.chance(0.6) ? this.dst(s) : this.mem(s)] };
      }
      case 10: case 11: {
        const name = r.pick(['shl', 'shr', 'sar', 'rol', 'ror', 'rcl', 'rcr']);
        const s = this.size();
        const d = r.chance(0.7) ? this.dst(s) : this.mem(s);
        const form = r.int(3);
        return { name, ops: [d, form === 0 ? 1 : form === 1 ? r.pick(SHIFT_COUNTS) : GPR8[Reg.RCX]!] };
      }
      case 12: {
        const s = r.pick([2, 4, 8]);
        switch (r.int(3)) {
          case 0: return { name: 'imul', ops: [r.chance(0.7) ? this.src(r.pick([1, s])) : this.mem(s)] };
          case 1: return { name: 'imul', ops: [this.dst(s), r.chance(0.7) ? this.src(s) : this.mem(s)] };
          default: return { name: 'imul', ops: [this.dst(s), r.chance(0.7) ? this.src(s) : this.mem(s), this.imm(Math.min(s, 4))] };
        }
      }
      case 13: {
        const s = this.size();
        return { name: 'mul', ops: [r.chance(0.7) ? this.src(s) : this.mem(s)] };
      }
      case 14: {
        const name = r.pick(['bt', 'bts', 'btr', 'btc']);
        const s = r.pick([2, 4, 8]);
        const d = name === 'bt' ? this.src(s) : this.dst(s);
        if (r.chance(0.5)) return { name, ops: [d, this.src(s)] };
        return { name, ops: [r.chance(0.5) ? d : this.mem(s), r.pick(SHIFT_COUNTS)] };
      }
      case 15: {
        const s = this.size();
        return { name: 'xchg', ops: r.chance(0.6) ? [this.dst(s), this.dst(s)] : [this.mem(s), this.dst(s)] };
      }
      case 16: {
        const s = this.size();
        return { name: 'cmpxchg', ops: [r.chance(0.5) ? this.dst(s) : this.mem(s), this.src(s)] };
      }
      case 17: {
        const s = this.size();
        return { name: 'xadd', ops: [r.chance(0.5) ? this.dst(s) : this.mem(s), this.dst(s)] };
      }
      case 18: {
        const cc = r.pick(CCS);
        return { name: `set${cc}`, ops: [r.chance(0.7) ? this.dst(1) : this.mem(1)] };
      }
      case 19: {
        const s = r.pick([2, 4, 8]);
        return { name: `cmov${r.pick(CCS)}`, ops: [this.dst(s), r.chance(0.7) ? this.src(s) : this.mem(s)] };
      }
      case 20: return { name: 'bswap', ops: [this.dst(r.pick([4, 8]))] };
      case 21: return { name: r.pick(['cbw', 'cwde', 'cdqe', 'cwd', 'cdq', 'cqo']), ops: [] };
      case 22: return { name: r.pick(['stc', 'clc', 'cmc']), ops: [] };
      default: {
        // lock forms on memory
        const name = r.pick(['cmpxchg', 'xadd', 'xchg', 'bts', 'btr', 'btc', 'inc', 'dec', 'not', 'neg', 'or', 'and', 'add', 'sub', 'xor', 'adc', 'sbb']);
        const s = /^bt/.test(name) ? r.pick([2, 4, 8]) : this.size();
        const m = this.mem(s);
        if (/^(inc|dec|not|neg)$/.test(name)) return { name, ops: [m], lock: true };
        if (/^bt/.test(name)) return { name, ops: [m, r.pick(SHIFT_COUNTS)], lock: true };
        if (/^(cmpxchg|xadd|xchg)$/.test(name)) return { name, ops: [m, this.dst(s)], lock: true };
        return { name, ops: [m, r.chance(0.5) ? this.src(s) : this.imm(s)], lock: true };
      }
    }
  }

  /** Apply `insn`'s flag effect, or return false (leaving state alone) if it reads undefined flags. */
  private admit(insns: SeqInsn[]): boolean {
    let d = this.defined;
    for (const i of insns) {
      const e = this.flags.of(i);
      if ((e.read & STATUS_FLAGS & ~d) !== 0) return false;
      d = (d | e.modified) & ~e.undefined;
    }
    this.defined = d;
    return true;
  }

  /** One simple, admitted instruction (retrying on unencodable or undefined-flag picks). */
  private oneInsn(): SeqInsn {
    for (let tries = 0; ; tries++) {
      if (tries > 1000) throw new Error('sequence generator: no admissible instruction');
      let insn: SeqInsn;
      try {
        insn = this.simple();
        if (this.admit([insn])) return insn;
      } catch (e) {
        if (!(e instanceof AsmError)) throw e;
      }
    }
  }

  private insnsAdmitted(insns: SeqInsn[]): boolean {
    try {
      return this.admit(insns);
    } catch (e) {
      if (e instanceof AsmError) return false;
      throw e;
    }
  }

  /** Steps outside any window: everything, including jumps, calls and stack groups. */
  sequence(count: number): { steps: Step[]; definedAfter: number[] } {
    const steps: Step[] = [];
    const definedAfter: number[] = [];
    const push = (s: Step, d = this.defined) => { steps.push(s); definedAfter.push(d); };
    while (steps.length < count) {
      const k = this.r.int(32);
      if (k === 0 && this.depth < 6) {
        const src = this.r.pick<Operand>([this.src(8), this.mem(8), this.imm(4)]);
        this.depth++;
        push({ items: [{ t: 'insn', insn: { name: 'push', ops: [src] } }] });
      } else if (k === 1 && this.depth > 0) {
        this.depth--;
        push({ items: [{ t: 'insn', insn: { name: 'pop', ops: [this.r.chance(0.7) ? this.dst(8) : this.mem(8)] } }] });
      } else if (k === 2 && this.defined === STATUS_FLAGS) {
        const g: SeqInsn[] = [{ name: 'pushfq', ops: [] }, { name: 'pop', ops: [this.dst(8)] }];
        const reg32 = GPR32[GPR64.indexOf(g[1]!.ops[0] as AsmReg)]!;
        // Only the status flags: IF and the reserved bits differ between a user process and a guest.
        g.push({ name: 'and', ops: [reg32, STATUS_FLAGS] });
        if (this.insnsAdmitted(g)) push({ items: g.map((insn) => ({ t: 'insn', insn })) });
      } else if (k === 3) {
        push({ items: [{ t: 'nop', len: 1 + this.r.int(8) }] });
      } else if (k === 4 || k === 5) {
        this.jumpWindow(push, Math.min(1 + this.r.int(3), count - steps.length));
      } else if (k === 6) {
        this.callGroup(push);
      } else if (k === 7) {
        // bt/bts/btr/btc on memory with a register bit offset: keep the offset small first.
        const name = this.r.pick(['bt', 'bts', 'btr', 'btc']);
        const s = this.r.pick([2, 4, 8]);
        const off = this.dst(8);
        const g: SeqInsn[] = [
          { name: 'and', ops: [GPR32[GPR64.indexOf(off)]!, 0xff] },
          { name, ops: [this.mem(s, 40), BY_SIZE[s]![GPR64.indexOf(off)]!], lock: name !== 'bt' && this.r.chance(0.3) },
        ];
        if (this.insnsAdmitted(g)) push({ items: g.map((insn) => ({ t: 'insn', insn })) });
      } else if (k === 8) {
        this.sibGroup(push);
      } else if (k === 9) {
        this.divGroup(push);
      } else {
        push({ items: [{ t: 'insn', insn: this.oneInsn() }] });
      }
    }
    while (this.depth > 0) {
      this.depth--;
      push({ items: [{ t: 'insn', insn: { name: 'pop', ops: [this.dst(8)] } }] });
    }
    return { steps, definedAfter };
  }

  /** `jcc L` or `jmp L` over `n` steps. Flags at L: both paths' defined flags (jcc), the jump's (jmp). */
  private jumpWindow(push: (s: Step, d?: number) => void, n: number): void {
    const cc = this.r.chance(0.8) ? this.r.pick(CCS) : null;
    if (cc !== null && !this.insnsAdmitted([{ name: `j${cc}`, ops: [0] }])) return;
    const label = this.label();
    const atJump = this.defined;
    push({ items: [{ t: 'jump', cc, label }] });
    for (let i = 0; i < n; i++) {
      const insn = this.oneInsn();
      push({ items: [{ t: 'insn', insn }] }, this.defined & atJump);
    }
    this.defined = cc === null ? atJump : this.defined & atJump;
    push({ items: [{ t: 'bind', label }] });
  }

  /** `and idx, 0xff` then an access through `[r15 + idx*scale + disp]`. */
  private sibGroup(push: (s: Step, d?: number) => void): void {
    const r = this.r;
    const idx = this.dst(8);
    const i = GPR64.indexOf(idx);
    const s = this.size();
    const m = SIZED[s]!(mem({ base: r15, index: idx, scale: r.pick([1, 2, 4, 8]), disp: r.int(MAX_DISP - 255 * 8) }));
    const use: SeqInsn = r.pick<() => SeqInsn>([
      () => ({ name: 'mov', ops: [this.dst(s), m] }),
      () => ({ name: 'mov', ops: [m, this.src(s)] }),
      () => ({ name: 'add', ops: [m, this.imm(s)] }),
      () => ({ name: 'cmp', ops: [this.src(s), m] }),
      () => ({ name: 'xadd', ops: [m, this.dst(s)], lock: true }),
      () => ({ name: 'lea', ops: [this.dst(8), m] }),
    ])();
    const g: SeqInsn[] = [{ name: 'and', ops: [GPR32[i]!, 0xff] }, use];
    if (this.insnsAdmitted(g)) push({ items: g.map((insn) => ({ t: 'insn', insn })) });
  }

  /**
   * div/idiv that cannot fault: a divisor that is neither 0 nor (for idiv) -1, and a dividend
   * whose high half is zero (div) or the sign extension of the low half (idiv), so the quotient fits.
   */
  private divGroup(push: (s: Step, d?: number) => void): void {
    const r = this.r;
    const s = this.size();
    const signed = r.chance(0.5);
    const bits = s * 8;
    let v = BigInt.asUintN(bits, this.value());
    if (v === 0n || (signed && v === (1n << BigInt(bits)) - 1n)) v = 3n;
    let divisor: AsmReg | Mem;
    const g: SeqInsn[] = [];
    if (r.chance(0.6)) {
      let d: AsmReg;
      // Not a part of the dividend: al/ah for 8-bit division, rax/rdx otherwise.
      const clobbered = (x: AsmReg) => (s === 1 ? x === GPR8[Reg.RAX] || x === GPR8_HIGH[0] : x === BY_SIZE[s]![Reg.RAX] || x === BY_SIZE[s]![Reg.RDX]);
      do d = this.dst(s); while (clobbered(d));
      divisor = d;
      g.push({ name: 'mov', ops: [d, v] });
    } else {
      if (s === 8 && BigInt.asIntN(64, v) !== BigInt.asIntN(32, v)) v = BigInt.asUintN(64, BigInt.asIntN(32, v)) || 5n;
      if (signed && v === 0xffffffffffffffffn) v = 5n;
      divisor = this.mem(s);
      g.push({ name: 'mov', ops: [divisor, s === 8 ? BigInt.asIntN(64, v) : v] });
    }
    if (signed) g.push({ name: ['cbw', 'cwd', 'cdq', 'cqo'][[1, 2, 4, 8].indexOf(s)]!, ops: [] });
    else g.push(s === 1 ? { name: 'movzx', ops: [GPR32[Reg.RAX]!, GPR8[Reg.RAX]!] } : { name: 'xor', ops: [GPR32[Reg.RDX]!, GPR32[Reg.RDX]!] });
    g.push({ name: signed ? 'idiv' : 'div', ops: [divisor] });
    if (this.insnsAdmitted(g)) push({ items: g.map((insn) => ({ t: 'insn', insn })) });
  }

  /**
   * `call F; jmp L; F: body; ret; L:` as one step; the call is direct (e8), through a register
   * or through memory (then `lea reg, [rip + F]` makes the pointer first).
   */
  private callGroup(push: (s: Step, d?: number) => void): void {
    const f = this.label();
    const after = this.label();
    const items: Item[] = [];
    const how = this.r.int(3);
    if (how === 0) {
      items.push({ t: 'call', label: f });
    } else {
      const reg = this.dst(8);
      items.push({ t: 'lea-label', reg, label: f });
      if (how === 1) {
        items.push({ t: 'indirect', name: 'call', target: reg });
      } else {
        const slot = this.mem(8);
        items.push({ t: 'insn', insn: { name: 'mov', ops: [slot, reg] } }, { t: 'indirect', name: 'call', target: slot });
      }
    }
    items.push({ t: 'jump', cc: null, label: after }, { t: 'bind', label: f });
    const n = 1 + this.r.int(3);
    for (let i = 0; i < n; i++) items.push({ t: 'insn', insn: this.oneInsn() });
    items.push({ t: 'insn', insn: { name: 'ret', ops: [] } }, { t: 'bind', label: after });
    push({ items });
  }

  initialPatches(): MemPatch[] {
    const patches: MemPatch[] = [];
    const n = 2 + this.r.int(3);
    for (let i = 0; i < n; i++) {
      const off = this.r.chance(0.5) ? this.r.int(MAX_DISP) & ~7 : this.r.int(MAX_DISP);
      this.hot.push(off);
      const b = new Uint8Array(16);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, this.r.pick(EDGE_VALUES), true);
      dv.setBigUint64(8, this.r.pick(EDGE_VALUES), true);
      patches.push({ offset: off, bytes: b });
    }
    return patches;
  }
}

const CCS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];

/** Generates sequences from one seed; sequence i is the same whatever was generated before it. */
export class SequenceGenerator {
  private readonly flags = new FlagInfo();
  constructor(readonly seed: number) {}

  sequence(index: number): Sequence {
    const r = new SeqRandom((Math.imul(this.seed, 0x9e3779b1) + Math.imul(index, 0x85ebca6b)) ^ index);
    const g = new Gen(r, this.flags);
    const regs = Array.from({ length: 16 }, () => g.value());
    regs[Reg.RSP] = BigInt(STACK_TOP);
    regs[Reg.R15] = BigInt(SCRATCH_BASE);
    if (r.chance(0.5)) regs[Reg.RCX] = BigInt(r.pick(SHIFT_COUNTS)); // useful shift counts in cl
    const rflags = r.u32() & STATUS_FLAGS;
    const memSeed = BigInt(1 + r.int(8)); // few distinct images, so the simulator side can cache them
    const patches = g.initialPatches();
    const { steps, definedAfter } = g.sequence(4 + r.int(21));
    return { seed: this.seed, index, regs, rflags, memSeed, patches, steps, definedAfter };
  }
}

/** The code of the first `n` steps (all by default) at CODE_BASE, without an epilogue. */
export function assembleSequence(seq: Sequence, n = seq.steps.length): Uint8Array {
  const a = new Asm(CODE_BASE);
  const labels = new Map<number, Label>();
  const L = (id: number): Label => {
    let l = labels.get(id);
    if (!l) { l = a.label(`L${id}`); labels.set(id, l); }
    return l;
  };
  for (const step of seq.steps.slice(0, n)) {
    for (const it of step.items) {
      switch (it.t) {
        case 'insn': (it.insn.lock ? a.lock() : a).ins(it.insn.name, ...it.insn.ops); break;
        case 'nop': a.nop(it.len); break;
        case 'jump': if (it.cc === null) a.jmp(L(it.label)); else a.jcc(it.cc as 'e', L(it.label)); break;
        case 'call': a.call(L(it.label)); break;
        case 'lea-label': a.lea(it.reg, rip(L(it.label))); break;
        case 'indirect': a.ins(it.name, it.target); break;
        case 'bind': a.bind(L(it.label)); break;
      }
    }
  }
  // A prefix may end inside a jump's window: its target becomes the end of the code.
  for (const l of labels.values()) if (!l.bound) a.bind(l);
  return a.assemble().bytes;
}
