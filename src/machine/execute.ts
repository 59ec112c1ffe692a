/**
 * The interpreter: one decoded instruction's effect on a vCPU (DESIGN.md §2 subset). One switch on
 * a small integer; flag math lives in src/x86/alu.ts; memory goes through x86-TSO (access.ts).
 * Hot path: low-level on purpose, allocation-free; guarded by `npm run bench -- machine`.
 */
import { Op, Opd, Seg, BASE_RIP, type Insn } from '../x86/insn.ts';
import { Flag, Reg, STATUS_FLAGS } from '../x86/registers.ts';
import * as alu from '../x86/alu.ts';
import { UnsupportedInstruction } from '../x86/errors.ts';
import { load, store, commit, drainAll, serialize, type Halves } from './access.ts';
import { Pseudo } from './footprint.ts';
import { deliver, iret, recordReturn, checkReturn, push64, pop64 } from './interrupts.ts';
import { MachineFault } from './errors.ts';
import { CostClass } from './chooser.ts';
import { Msr, Vector, type ExecContext } from './context.ts';
import { isCanonical } from './memory.ts';
import { verwWritable } from './gdt.ts';
import type { Vcpu } from './vcpu.ts';

const NOT_STATUS = ~STATUS_FLAGS;
/** RFLAGS bits POPF may change at CPL 0 (CF PF AF ZF SF TF IF DF OF AC ID). */
const POPF_MASK = 0x247fd5 & ~0x3000;

function effectiveAddress(c: Vcpu, i: Insn): number {
  let a = i.disp;
  const b = i.base;
  if (b >= 0 && b !== BASE_RIP) a += c.hi[b]! * 4294967296 + (c.lo[b]! >>> 0);
  const x = i.index;
  if (x >= 0) a += (c.hi[x]! * 4294967296 + (c.lo[x]! >>> 0)) * i.scale;
  if (i.seg === Seg.GS) a += c.gsBase;
  else if (i.seg === Seg.FS) a += c.fsBase;
  if (a >= -0x800000000000 && a < 0x800000000000) return a;
  return wrapAddress(c, i);
}

/** The slow, exact path: 64-bit wrap-around, then the canonical check (#GP otherwise). */
function wrapAddress(c: Vcpu, i: Insn): number {
  let a = BigInt(i.disp);
  if (i.base >= 0 && i.base !== BASE_RIP) a += c.getReg64(i.base);
  if (i.index >= 0) a += c.getReg64(i.index) * BigInt(i.scale);
  if (i.seg === Seg.GS) a += BigInt(c.gsBase);
  else if (i.seg === Seg.FS) a += BigInt(c.fsBase);
  const n = Number(BigInt.asIntN(64, a));
  if (!isCanonical(n)) throw new MachineFault('non-canonical', c.id, c.rip, `#GP: non-canonical address 0x${BigInt.asUintN(64, a).toString(16)}`);
  return n;
}

/** LEA's result: base + index*scale + disp modulo 2^64 (segment bases do not apply), as halves. */
function leaValue(c: Vcpu, i: Insn, out: Halves): void {
  let a = BigInt(i.disp);
  if (i.base >= 0 && i.base !== BASE_RIP) a += c.getReg64(i.base);
  if (i.index >= 0) a += c.getReg64(i.index) * BigInt(i.scale);
  const u = BigInt.asUintN(64, a);
  out.lo = Number(u & 0xffffffffn);
  out.hi = Number(u >> 32n);
}

function readReg(c: Vcpu, r: number, size: number, out: Halves): void {
  const v = c.lo[r]!;
  if (size === 8) { out.lo = v >>> 0; out.hi = c.hi[r]! >>> 0; return; }
  out.hi = 0;
  out.lo = size === 4 ? v >>> 0 : size === 2 ? v & 0xffff : v & 0xff;
}

function writeReg(c: Vcpu, r: number, size: number, lo: number, hi: number): void {
  if (size === 8) { c.lo[r] = lo; c.hi[r] = hi; return; }
  if (size === 4) { c.lo[r] = lo; c.hi[r] = 0; return; }
  if (size === 2) { c.lo[r] = (c.lo[r]! & ~0xffff) | (lo & 0xffff); return; }
  c.lo[r] = (c.lo[r]! & ~0xff) | (lo & 0xff);
}

function read(ctx: ExecContext, c: Vcpu, i: Insn, k: Opd, r: number, size: number, ea: number, out: Halves): void {
  switch (k) {
    case Opd.REG: readReg(c, r, size, out); return;
    case Opd.REGH: out.lo = (c.lo[r]! >>> 8) & 0xff; out.hi = 0; return;
    case Opd.MEM: load(ctx.memory, c, ea, size, out); return;
    case Opd.IMM:
      if (size === 8) { out.lo = i.immLo; out.hi = i.immHi; }
      else { out.lo = (i.immLo & alu.sizeMask(size)) >>> 0; out.hi = 0; }
      return;
    default: out.lo = 0; out.hi = 0;
  }
}

function write(ctx: ExecContext, c: Vcpu, k: Opd, r: number, size: number, ea: number, lo: number, hi: number, locked: boolean): void {
  if (k === Opd.REG) writeReg(c, r, size, lo, hi);
  else if (k === Opd.REGH) c.lo[r] = (c.lo[r]! & ~0xff00) | ((lo & 0xff) << 8);
  else if (locked) commit(ctx.memory, c.id, c.rip, ea, size, lo, hi);
  else {
    if (c.returns.size > 0) c.returns.delete(ea);
    store(ctx.memory, c, ctx.tso, ea, size, lo, hi);
  }
}

function push(ctx: ExecContext, c: Vcpu, lo: number, hi: number): void {
  const rsp = c.getAddr(Reg.RSP) - 8;
  c.setAddr(Reg.RSP, rsp);
  if (c.returns.size > 0) c.returns.delete(rsp);
  store(ctx.memory, c, ctx.tso, rsp, 8, lo, hi);
}

function signExtend(size: number, lo: number): { lo: number; hi: number } {
  const s = size === 1 ? (lo << 24) >> 24 : size === 2 ? (lo << 16) >> 16 : lo | 0;
  return { lo: s >>> 0, hi: s < 0 ? 0xffffffff : 0 };
}

/** Raise an exception whose handler must exist (#BP, #UD, #DE). */
function exception(ctx: ExecContext, c: Vcpu, vector: number, returnRip: number): void {
  ctx.emit({ type: 'exception', step: ctx.step, cpu: c.id, vector, rip: c.rip });
  deliver(ctx, c, vector, returnRip);
}

/** The built-in CPUID answers when the host defines none: a plain x86-64 CPU. */
function builtinCpuid(leaf: number): readonly [number, number, number, number] {
  if (leaf === 0) return [0xd, 0x756e6547, 0x6c65746e, 0x49656e69]; // "GenuineIntel"
  if (leaf === 1) return [0x000906ea, 0, 0x80000000, 0x078bfbff]; // bit 31 ecx: hypervisor present
  return [0, 0, 0, 0];
}

/**
 * Execute `i` on `c`. Returns the action's cost class; returns -1 when a hazard stopped the run.
 * RIP is advanced here; interrupt delivery happens before fetch, in the machine's step.
 */
export function execute(ctx: ExecContext, c: Vcpu, i: Insn): number {
  const size = i.size;
  const A = c.opA, B = c.opB, o = c.alu;
  const ea = (i.k0 === Opd.MEM || i.k1 === Opd.MEM) && i.op !== Op.LEA ? effectiveAddress(c, i) : 0;
  const next = i.next;
  c.rip = next;
  switch (i.op) {
    case Op.NOP:
    case Op.FENCE:
      return CostClass.Plain;
    case Op.MOV:
      read(ctx, c, i, i.k1, i.r1, size, ea, B);
      write(ctx, c, i.k0, i.r0, size, ea, B.lo, B.hi, false);
      return i.k0 === Opd.MEM ? CostClass.Store : i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain;
    case Op.MOVZX:
      read(ctx, c, i, i.k1, i.r1, i.srcSize, ea, B);
      writeReg(c, i.r0, size, B.lo, 0);
      return i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain;
    case Op.MOVSX: {
      read(ctx, c, i, i.k1, i.r1, i.srcSize, ea, B);
      const s = signExtend(i.srcSize, B.lo);
      writeReg(c, i.r0, size, size === 8 ? s.lo : s.lo & alu.sizeMask(size), s.hi);
      return i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain;
    }
    case Op.LEA: {
      // LEA computes the address and never touches memory: no canonical check, 64-bit wrap.
      leaValue(c, i, A);
      writeReg(c, i.r0, size, size === 8 ? A.lo : size === 4 ? A.lo : A.lo & 0xffff, size === 8 ? A.hi : 0);
      return CostClass.Plain;
    }
    case Op.ADD: case Op.OR: case Op.ADC: case Op.SBB: case Op.AND: case Op.SUB: case Op.XOR:
    case Op.CMP: case Op.TEST: {
      const locked = i.lock && i.k0 === Opd.MEM;
      if (locked) drainAll(ctx.memory, c);
      read(ctx, c, i, i.k0, i.r0, size, ea, A);
      read(ctx, c, i, i.k1, i.r1, size, ea, B);
      const cf = c.flags & Flag.CF;
      switch (i.op) {
        case Op.ADD: alu.add(o, size, A.lo, A.hi, B.lo, B.hi, 0); break;
        case Op.ADC: alu.add(o, size, A.lo, A.hi, B.lo, B.hi, cf); break;
        case Op.SUB: case Op.CMP: alu.sub(o, size, A.lo, A.hi, B.lo, B.hi, 0); break;
        case Op.SBB: alu.sub(o, size, A.lo, A.hi, B.lo, B.hi, cf); break;
        case Op.AND: case Op.TEST: o.lo = (A.lo & B.lo) >>> 0; o.hi = (A.hi & B.hi) >>> 0; o.flags = alu.logicFlags(size, o.lo, o.hi); break;
        case Op.OR: o.lo = (A.lo | B.lo) >>> 0; o.hi = (A.hi | B.hi) >>> 0; o.flags = alu.logicFlags(size, o.lo, o.hi); break;
        default: o.lo = (A.lo ^ B.lo) >>> 0; o.hi = (A.hi ^ B.hi) >>> 0; o.flags = alu.logicFlags(size, o.lo, o.hi); break;
      }
      c.flags = (c.flags & NOT_STATUS) | o.flags;
      if (i.op !== Op.CMP && i.op !== Op.TEST) write(ctx, c, i.k0, i.r0, size, ea, o.lo, o.hi, locked);
      return locked ? CostClass.Locked : i.k0 === Opd.MEM ? CostClass.Store : i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain;
    }
    case Op.INC: case Op.DEC: case Op.NEG: case Op.NOT: {
      const locked = i.lock && i.k0 === Opd.MEM;
      if (locked) drainAll(ctx.memory, c);
      read(ctx, c, i, i.k0, i.r0, size, ea, A);
      if (i.op === Op.NOT) {
        const m = size === 8 ? 0xffffffff : alu.sizeMask(size);
        write(ctx, c, i.k0, i.r0, size, ea, (~A.lo & m) >>> 0, size === 8 ? ~A.hi >>> 0 : 0, locked);
        return locked ? CostClass.Locked : CostClass.Plain;
      }
      if (i.op === Op.NEG) alu.sub(o, size, 0, 0, A.lo, A.hi, 0);
      else if (i.op === Op.INC) alu.add(o, size, A.lo, A.hi, 1, 0, 0);
      else alu.sub(o, size, A.lo, A.hi, 1, 0, 0);
      const keepCf = i.op === Op.NEG ? 0 : c.flags & Flag.CF;
      const f = i.op === Op.NEG ? o.flags : (o.flags & ~Flag.CF) | keepCf;
      c.flags = (c.flags & NOT_STATUS) | f;
      write(ctx, c, i.k0, i.r0, size, ea, o.lo, o.hi, locked);
      return locked ? CostClass.Locked : i.k0 === Opd.MEM ? CostClass.Store : CostClass.Plain;
    }
    case Op.SHL: case Op.SHR: case Op.SAR: case Op.ROL: case Op.ROR: case Op.RCL: case Op.RCR: {
      read(ctx, c, i, i.k0, i.r0, size, ea, A);
      const raw = i.k1 === Opd.IMM ? i.immLo : i.k1 === Opd.REG ? c.lo[Reg.RCX]! & 0xff : 1;
      const n = raw & (size === 8 ? 0x3f : 0x1f);
      if (n === 0) {
        if (size === 4 && i.k0 === Opd.REG) c.hi[i.r0] = 0; // the 32-bit write still zero-extends
        return CostClass.Plain;
      }
      if (i.op === Op.SHL || i.op === Op.SHR || i.op === Op.SAR) {
        alu.shift(o, i.op === Op.SHL ? 'shl' : i.op === Op.SHR ? 'shr' : 'sar', size, A.lo, A.hi, n);
        c.flags = (c.flags & NOT_STATUS) | o.flags;
      } else {
        const kind = i.op === Op.ROL ? 'rol' : i.op === Op.ROR ? 'ror' : i.op === Op.RCL ? 'rcl' : 'rcr';
        if (!alu.rotate(o, kind, size, A.lo, A.hi, n, c.flags & Flag.CF)) {
          if (size === 4 && i.k0 === Opd.REG) c.hi[i.r0] = 0;
          return CostClass.Plain;
        }
        c.flags = (c.flags & ~(Flag.CF | Flag.OF)) | o.flags;
      }
      write(ctx, c, i.k0, i.r0, size, ea, o.lo, o.hi, false);
      return CostClass.Plain;
    }
    case Op.IMUL1: case Op.MUL: case Op.IMUL2: case Op.IMUL3:
      multiply(ctx, c, i, ea);
      return CostClass.Plain;
    case Op.DIV: case Op.IDIV:
      return divide(ctx, c, i, ea) ? CostClass.Plain : CostClass.Interrupt;
    case Op.BT: case Op.BTS: case Op.BTR: case Op.BTC:
      return bitTest(ctx, c, i, ea);
    case Op.XCHG: {
      const locked = i.k0 === Opd.MEM || i.k1 === Opd.MEM; // XCHG with memory is always locked
      if (locked) drainAll(ctx.memory, c);
      read(ctx, c, i, i.k0, i.r0, size, ea, A);
      read(ctx, c, i, i.k1, i.r1, size, ea, B);
      write(ctx, c, i.k0, i.r0, size, ea, B.lo, B.hi, locked);
      write(ctx, c, i.k1, i.r1, size, ea, A.lo, A.hi, locked);
      return locked ? CostClass.Locked : CostClass.Plain;
    }
    case Op.CMPXCHG: {
      const locked = i.lock && i.k0 === Opd.MEM;
      if (locked) drainAll(ctx.memory, c);
      read(ctx, c, i, i.k0, i.r0, size, ea, A); // destination
      const accLo = size === 8 ? c.lo[Reg.RAX]! >>> 0 : (c.lo[Reg.RAX]! & alu.sizeMask(size)) >>> 0;
      const accHi = size === 8 ? c.hi[Reg.RAX]! >>> 0 : 0;
      alu.sub(o, size, accLo, accHi, A.lo, A.hi, 0);
      c.flags = (c.flags & NOT_STATUS) | o.flags;
      if ((o.flags & Flag.ZF) !== 0) {
        read(ctx, c, i, i.k1, i.r1, size, ea, B);
        write(ctx, c, i.k0, i.r0, size, ea, B.lo, B.hi, locked);
      } else {
        // The destination is written back unchanged (a locked RMW always writes), then RAX loads it.
        if (i.k0 === Opd.MEM) write(ctx, c, i.k0, i.r0, size, ea, A.lo, A.hi, locked);
        writeReg(c, Reg.RAX, size, A.lo, A.hi);
      }
      return locked ? CostClass.Locked : CostClass.Plain;
    }
    case Op.XADD: {
      const locked = i.lock && i.k0 === Opd.MEM;
      if (locked) drainAll(ctx.memory, c);
      read(ctx, c, i, i.k0, i.r0, size, ea, A);
      read(ctx, c, i, i.k1, i.r1, size, ea, B);
      alu.add(o, size, A.lo, A.hi, B.lo, B.hi, 0);
      c.flags = (c.flags & NOT_STATUS) | o.flags;
      write(ctx, c, i.k1, i.r1, size, ea, A.lo, A.hi, false);
      write(ctx, c, i.k0, i.r0, size, ea, o.lo, o.hi, locked);
      return locked ? CostClass.Locked : CostClass.Plain;
    }
    case Op.PUSH:
      read(ctx, c, i, i.k0, i.r0, 8, ea, A);
      push(ctx, c, A.lo, A.hi);
      return CostClass.Store;
    case Op.POP: {
      // Exact 64-bit value (pop64 returns an address-sized number).
      const rsp = c.getAddr(Reg.RSP);
      load(ctx.memory, c, rsp, 8, A);
      c.setAddr(Reg.RSP, rsp + 8);
      // POP to memory computes its address after incrementing RSP (SDM POP).
      const dst = i.k0 === Opd.MEM ? effectiveAddress(c, i) : 0;
      write(ctx, c, i.k0, i.r0, 8, dst, A.lo, A.hi, false);
      return CostClass.Load;
    }
    case Op.PUSHF:
      push(ctx, c, (c.flags & ~0x30000) >>> 0, 0);
      return CostClass.Store;
    case Op.POPF:
      c.flags = (pop64(ctx, c) & POPF_MASK) | 0x2 | (c.flags & 0x3000);
      return CostClass.Load;
    case Op.LAHF:
      c.lo[Reg.RAX] = (c.lo[Reg.RAX]! & ~0xff00) | (((c.flags & 0xd5) | 0x2) << 8);
      return CostClass.Plain;
    case Op.SAHF:
      c.flags = (c.flags & ~0xd5) | ((c.lo[Reg.RAX]! >>> 8) & 0xd5);
      return CostClass.Plain;
    case Op.SETCC:
      write(ctx, c, i.k0, i.r0, 1, ea, alu.condition(i.cc, c.flags) ? 1 : 0, 0, false);
      return CostClass.Plain;
    case Op.CMOVCC:
      read(ctx, c, i, i.k1, i.r1, size, ea, B);
      if (alu.condition(i.cc, c.flags)) writeReg(c, i.r0, size, B.lo, B.hi);
      else if (size === 4) c.hi[i.r0] = 0; // a 32-bit CMOV zero-extends even when it does not move
      return CostClass.Plain;
    case Op.BSWAP: {
      const r = i.r0;
      const sw = (x: number) => (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
      if (size === 8) { const l = c.lo[r]!, h = c.hi[r]!; c.lo[r] = sw(h); c.hi[r] = sw(l); }
      else { c.lo[r] = sw(c.lo[r]!); c.hi[r] = 0; }
      return CostClass.Plain;
    }
    case Op.CBW: { const v = (c.lo[Reg.RAX]! << 24) >> 24; writeReg(c, Reg.RAX, 2, v & 0xffff, 0); return CostClass.Plain; }
    case Op.CWDE: { const v = (c.lo[Reg.RAX]! << 16) >> 16; writeReg(c, Reg.RAX, 4, v >>> 0, 0); return CostClass.Plain; }
    case Op.CDQE: { const v = c.lo[Reg.RAX]!; c.hi[Reg.RAX] = v < 0 ? -1 : 0; return CostClass.Plain; }
    case Op.CWD: { const s = (c.lo[Reg.RAX]! & 0x8000) ? 0xffff : 0; writeReg(c, Reg.RDX, 2, s, 0); return CostClass.Plain; }
    case Op.CDQ: { const s = c.lo[Reg.RAX]! < 0 ? 0xffffffff : 0; writeReg(c, Reg.RDX, 4, s, 0); return CostClass.Plain; }
    case Op.CQO: { const s = c.hi[Reg.RAX]! < 0 ? -1 : 0; c.lo[Reg.RDX] = s; c.hi[Reg.RDX] = s; return CostClass.Plain; }
    case Op.CLC: c.flags &= ~Flag.CF; return CostClass.Plain;
    case Op.STC: c.flags |= Flag.CF; return CostClass.Plain;
    case Op.CMC: c.flags ^= Flag.CF; return CostClass.Plain;
    case Op.CLD: c.flags &= ~Flag.DF; return CostClass.Plain;
    case Op.STD: c.flags |= Flag.DF; return CostClass.Plain;
    case Op.CLI: c.flags &= ~Flag.IF; return CostClass.Plain;
    case Op.STI:
      if ((c.flags & Flag.IF) === 0) c.interruptShadow = true; // SDM STI: one-instruction shadow
      c.flags |= Flag.IF;
      return CostClass.Plain;
    case Op.JMP:
      c.rip = i.target;
      return CostClass.Branch;
    case Op.JCC:
      if (alu.condition(i.cc, c.flags)) c.rip = i.target;
      return CostClass.Branch;
    case Op.JMP_IND:
      read(ctx, c, i, i.k0, i.r0, 8, ea, A);
      c.rip = (A.hi | 0) * 4294967296 + A.lo;
      return CostClass.Branch;
    case Op.CALL:
    case Op.CALL_IND: {
      let target = i.target;
      if (i.op === Op.CALL_IND) {
        read(ctx, c, i, i.k0, i.r0, 8, ea, A);
        target = (A.hi | 0) * 4294967296 + A.lo;
      }
      push64(ctx, c, next);
      recordReturn(ctx, c, c.getAddr(Reg.RSP), next);
      c.rip = target;
      return CostClass.Branch;
    }
    case Op.RET: {
      const slot = c.getAddr(Reg.RSP);
      const target = pop64(ctx, c);
      if (i.popBytes) c.setAddr(Reg.RSP, c.getAddr(Reg.RSP) + i.popBytes);
      c.rip = target;
      return checkReturn(ctx, c, slot, target) ? -1 : CostClass.Branch;
    }
    case Op.INT3:
      exception(ctx, c, Vector.BP, next); // a trap: the frame holds the address after the 0xCC
      return CostClass.Interrupt;
    case Op.UD2:
      exception(ctx, c, Vector.UD, i.address);
      return CostClass.Interrupt;
    case Op.IRETQ:
      return iret(ctx, c) ? -1 : CostClass.Serializing;
    case Op.HLT:
      if (c.pvUnhalted) {
        c.pvUnhalted = false; // a kick already arrived: KVM does not block the vCPU
        return CostClass.Halt;
      }
      c.halted = true;
      ctx.emit({ type: 'halt', step: ctx.step, cpu: c.id, rip: i.address });
      return CostClass.Halt;
    case Op.PAUSE:
      c.lastPause = c.retired;
      return CostClass.Pause;
    case Op.MFENCE:
      drainAll(ctx.memory, c);
      return CostClass.Fence;
    case Op.CPUID: {
      const leaf = c.lo[Reg.RAX]! >>> 0, sub = c.lo[Reg.RCX]! >>> 0;
      const r = ctx.hooks.cpuid?.(c, leaf, sub) ?? builtinCpuid(leaf);
      writeReg(c, Reg.RAX, 4, r[0] >>> 0, 0);
      writeReg(c, Reg.RBX, 4, r[1] >>> 0, 0);
      writeReg(c, Reg.RCX, 4, r[2] >>> 0, 0);
      writeReg(c, Reg.RDX, 4, r[3] >>> 0, 0);
      if (ctx.hooks.cpuid !== undefined) ctx.memory.footprint?.pseudoRead(Pseudo.Host);
      serialize(ctx.memory, c);
      return CostClass.Hypercall; // CPUID always exits to the hypervisor under VMX
    }
    case Op.SERIALIZE:
      serialize(ctx.memory, c);
      return CostClass.Serializing;
    case Op.MOV_TO_CR:
      // SDM 8.3 / 9.3.1: MOV to a control register (other than CR8) is serializing.
      c.crLo[i.r0] = c.lo[i.r1]! >>> 0;
      c.crHi[i.r0] = c.hi[i.r1]! >>> 0;
      if (i.r0 === 8) return CostClass.Plain;
      serialize(ctx.memory, c);
      return CostClass.Serializing;
    case Op.MOV_FROM_CR:
      writeReg(c, i.r0, 8, c.crLo[i.r1]! | 0, c.crHi[i.r1]! | 0);
      return CostClass.Plain;
    case Op.VMCALL:
    case Op.VMMCALL: {
      const kind = i.op === Op.VMCALL ? 'vmcall' : 'vmmcall';
      // A VM exit: the host acts on this vCPU's behalf (a kick, a wake-up, the hypercall fix-up)
      // only after the vCPU's earlier stores are visible. The host runs on the same physical CPU
      // after them in program order, and its kick path takes locks and full barriers
      // (kvm_make_request's set_bit, rcuwait_wake_up's smp_mb) before the target can run; a
      // locked instruction is not reordered with earlier writes (SDM Vol. 3A 9.2.2), so the store
      // buffer drains first. Without this a PV unlock's `locked = 0` could still sit in the buffer
      // when the kicked waiter rechecks the lock, and it halts again for good.
      drainAll(ctx.memory, c);
      ctx.memory.footprint?.pseudoWrite(Pseudo.Host);
      const outcome = ctx.hooks.hypercall?.(c, kind, i) ?? 'ud';
      ctx.emit({ type: 'hypercall', step: ctx.step, cpu: c.id, kind, nr: c.lo[Reg.RAX]! >>> 0 });
      if (outcome === 'retry') c.rip = i.address;
      else if (outcome === 'ud') exception(ctx, c, Vector.UD, i.address);
      return CostClass.Hypercall;
    }
    case Op.WRMSR: {
      const msr = c.lo[Reg.RCX]! >>> 0;
      const lo = c.lo[Reg.RAX]! >>> 0, hi = c.lo[Reg.RDX]! >>> 0;
      if (msr === Msr.X2APIC_ICR) {
        // x2APIC MSR writes are not serializing (SDM 11.12.3): Linux fences before them.
        ctx.sendIpi(c.id, lo, hi);
        return CostClass.Interrupt;
      }
      if (msr === Msr.X2APIC_EOI) return CostClass.Plain;
      if (msr === Msr.GS_BASE) c.gsBase = (hi | 0) * 4294967296 + lo;
      else if (msr === Msr.FS_BASE) c.fsBase = (hi | 0) * 4294967296 + lo;
      else throw new MachineFault('unhandled-exception', c.id, i.address, `#GP: WRMSR to unmodelled MSR 0x${msr.toString(16)}`);
      serialize(ctx.memory, c); // WRMSR is serializing for other MSRs
      return CostClass.Serializing;
    }
    case Op.RDMSR: {
      const msr = c.lo[Reg.RCX]! >>> 0;
      const v = msr === Msr.GS_BASE ? c.gsBase : msr === Msr.FS_BASE ? c.fsBase : undefined;
      if (v === undefined) throw new MachineFault('unhandled-exception', c.id, i.address, `#GP: RDMSR of unmodelled MSR 0x${msr.toString(16)}`);
      writeReg(c, Reg.RAX, 4, v >>> 0, 0);
      writeReg(c, Reg.RDX, 4, Math.floor(v / 4294967296) >>> 0, 0);
      return CostClass.Plain;
    }
    case Op.RDTSC: {
      // The TSC is the vCPU's clock in cycles (kept by the timed strategy; 0 under the others).
      const t = Math.floor(c.time);
      writeReg(c, Reg.RAX, 4, t >>> 0, 0);
      writeReg(c, Reg.RDX, 4, Math.floor(t / 4294967296) >>> 0, 0);
      return CostClass.Plain;
    }
    case Op.BSF: case Op.BSR: case Op.POPCNT:
      bitScan(ctx, c, i, ea);
      return CostClass.Plain;
    case Op.VERW: {
      // SDM Vol. 2B VERR/VERW: read the 16-bit selector, ZF = writable at CPL (src/machine/gdt.ts),
      // other flags unchanged. Not a serializing instruction (SDM Vol. 3A 9.3 does not list it):
      // no store-buffer drain, no CMC synchronization. Its MD_CLEAR side effect (Linux's
      // mds_clear_cpu_buffers / CLEAR_CPU_BUFFERS: flush CPU-internal buffers) is
      // microarchitectural and has nothing to act on in this machine.
      const B = c.opB;
      read(ctx, c, i, i.k0, i.r0, 2, ea, B);
      c.flags = verwWritable(B.lo & 0xffff) ? c.flags | Flag.ZF : c.flags & ~Flag.ZF;
      return CostClass.Plain;
    }
    default:
      c.rip = i.address;
      throw new UnsupportedInstruction(i.address, i.bytes, i.mnemonic);
  }
}

function multiply(ctx: ExecContext, c: Vcpu, i: Insn, ea: number): void {
  const size = i.size, bits = BigInt(size * 8);
  const A = c.opA, B = c.opB;
  const trunc = (v: bigint) => BigInt.asUintN(size * 8, v);
  let wide: bigint, low: bigint, overflow: boolean;
  if (i.op === Op.IMUL2 || i.op === Op.IMUL3) {
    if (i.op === Op.IMUL2) { read(ctx, c, i, i.k0, i.r0, size, ea, A); read(ctx, c, i, i.k1, i.r1, size, ea, B); }
    else { read(ctx, c, i, i.k1, i.r1, size, ea, A); B.lo = size === 8 ? i.immLo : (i.immLo & alu.sizeMask(size)) >>> 0; B.hi = size === 8 ? i.immHi : 0; }
    wide = alu.toBigSigned(size, A.lo, A.hi) * alu.toBigSigned(size, B.lo, B.hi);
    low = trunc(wide);
    overflow = BigInt.asIntN(size * 8, low) !== wide;
    writeReg(c, i.r0, size, Number(low & 0xffffffffn), Number(low >> 32n));
  } else {
    // One-operand forms: rDX:rAX (or AX for bytes) = rAX * r/m.
    read(ctx, c, i, i.k0, i.r0, size, ea, B);
    const acc = c.getReg64(Reg.RAX) & ((1n << bits) - 1n);
    if (i.op === Op.MUL) {
      wide = acc * alu.toBig(B.lo, B.hi);
      overflow = wide >> bits !== 0n;
    } else {
      wide = BigInt.asIntN(size * 8, acc) * alu.toBigSigned(size, B.lo, B.hi);
      overflow = BigInt.asIntN(size * 8, wide) !== wide;
    }
    low = trunc(wide);
    const high = trunc(wide >> bits);
    if (size === 1) writeReg(c, Reg.RAX, 2, Number(BigInt.asUintN(16, wide)), 0);
    else {
      writeReg(c, Reg.RAX, size, Number(low & 0xffffffffn), Number(low >> 32n));
      writeReg(c, Reg.RDX, size, Number(high & 0xffffffffn), Number(high >> 32n));
    }
  }
  // CF = OF = the result did not fit; SF, ZF, AF, PF are undefined (we report SF/ZF/PF of the low half).
  const lo = Number(low & 0xffffffffn), hi = Number(low >> 32n);
  let f = alu.szp(size, lo, hi);
  if (overflow) f |= Flag.CF | Flag.OF;
  c.flags = (c.flags & NOT_STATUS) | f;
}

/** DIV/IDIV; returns false when #DE was raised. */
function divide(ctx: ExecContext, c: Vcpu, i: Insn, ea: number): boolean {
  const size = i.size, bits = BigInt(size * 8);
  const B = c.opB;
  read(ctx, c, i, i.k0, i.r0, size, ea, B);
  const mask = (1n << bits) - 1n;
  const dividendU = size === 1
    ? c.getReg64(Reg.RAX) & 0xffffn
    : ((c.getReg64(Reg.RDX) & mask) << bits) | (c.getReg64(Reg.RAX) & mask);
  const signed = i.op === Op.IDIV;
  const divisor = signed ? alu.toBigSigned(size, B.lo, B.hi) : alu.toBig(B.lo, B.hi);
  const dividend = signed ? BigInt.asIntN(size * 16, dividendU) : dividendU;
  const fault = (): boolean => {
    if (ctx.idt.has(Vector.DE)) { exception(ctx, c, Vector.DE, i.address); return false; }
    throw new MachineFault('divide-error', c.id, i.address, '#DE: divide error (division by zero or quotient overflow)');
  };
  if (divisor === 0n) return fault();
  const q = dividend / divisor, r = dividend % divisor;
  if (signed ? BigInt.asIntN(size * 8, q) !== q : q > mask) return fault();
  const qu = BigInt.asUintN(size * 8, q), ru = BigInt.asUintN(size * 8, r);
  if (size === 1) {
    c.lo[Reg.RAX] = (c.lo[Reg.RAX]! & ~0xffff) | Number(qu) | (Number(ru) << 8);
  } else {
    writeReg(c, Reg.RAX, size, Number(qu & 0xffffffffn), Number(qu >> 32n));
    writeReg(c, Reg.RDX, size, Number(ru & 0xffffffffn), Number(ru >> 32n));
  }
  return true;
}

function bitTest(ctx: ExecContext, c: Vcpu, i: Insn, ea: number): number {
  const size = i.size, bits = size * 8;
  const A = c.opA, B = c.opB;
  const locked = i.lock && i.k0 === Opd.MEM;
  if (locked) drainAll(ctx.memory, c);
  let addr = ea;
  let bit: number;
  if (i.k1 === Opd.IMM) bit = i.immLo & (bits - 1);
  else {
    read(ctx, c, i, i.k1, i.r1, size, 0, B);
    if (i.k0 === Opd.MEM) {
      // Bit-string addressing: a register offset can reach outside the operand (SDM BT).
      const off = alu.toBigSigned(size, B.lo, B.hi);
      const b = BigInt(bits);
      const q = off >= 0n ? off / b : -((-off + b - 1n) / b);
      addr = ea + Number(q) * size;
      bit = Number(off - q * b);
    } else bit = B.lo & (bits - 1); // a register operand: the offset is taken modulo its width
  }
  read(ctx, c, i, i.k0, i.r0, size, addr, A);
  const set = bit < 32 ? (A.lo >>> bit) & 1 : (A.hi >>> (bit - 32)) & 1;
  c.flags = (c.flags & ~Flag.CF) | (set ? Flag.CF : 0);
  if (i.op === Op.BT) return i.k0 === Opd.MEM ? CostClass.Load : CostClass.Plain;
  let lo = A.lo, hi = A.hi;
  const m = bit < 32 ? 1 << bit : 1 << (bit - 32);
  const on = i.op === Op.BTS ? true : i.op === Op.BTR ? false : !set;
  if (bit < 32) lo = on ? lo | m : lo & ~m; else hi = on ? hi | m : hi & ~m;
  write(ctx, c, i.k0, i.r0, size, addr, lo >>> 0, hi >>> 0, locked);
  return locked ? CostClass.Locked : CostClass.Plain;
}

function bitScan(ctx: ExecContext, c: Vcpu, i: Insn, ea: number): void {
  const size = i.size;
  const B = c.opB;
  read(ctx, c, i, i.k1, i.r1, size, ea, B);
  const v = alu.toBig(B.lo, B.hi);
  if (i.op === Op.POPCNT) {
    let n = 0;
    for (let x = v; x; x &= x - 1n) n++;
    writeReg(c, i.r0, size, n, 0);
    c.flags = (c.flags & NOT_STATUS) | (v === 0n ? Flag.ZF : 0);
    return;
  }
  if (v === 0n) { c.flags = (c.flags & NOT_STATUS) | Flag.ZF; return; } // destination unchanged (AMD; Intel leaves it undefined)
  const s = v.toString(2);
  const idx = i.op === Op.BSR ? s.length - 1 : s.length - 1 - s.lastIndexOf('1');
  writeReg(c, i.r0, size, idx, 0);
  c.flags = c.flags & NOT_STATUS;
}
