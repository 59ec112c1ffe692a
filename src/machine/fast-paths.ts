/**
 * Specialised handlers for the hottest instruction shapes (register and immediate ALU at 32/64
 * bits, register moves, simple loads and stores, INC/DEC, Jcc, JMP, NOP, PAUSE). Each does exactly
 * what the general interpreter (execute.ts) does for that shape, minus the operand dispatch.
 * Hot path: chosen once per decoded instruction; the differential test covers both paths.
 */
import { Op, Opd, Seg, NO_REG, BASE_RIP, type Insn, type FastHandler } from '../x86/insn.ts';
import { STATUS_FLAGS, Flag } from '../x86/registers.ts';
import * as alu from '../x86/alu.ts';
import { load, store } from './access.ts';
import { CostClass } from './chooser.ts';
import type { ExecContext } from './context.ts';
import type { Vcpu } from './vcpu.ts';

const NOT_STATUS = ~STATUS_FLAGS;
type Run = (ctx: ExecContext, c: Vcpu, i: Insn) => number;

function handler(run: Run): FastHandler {
  return { run: run as FastHandler['run'] };
}

/** ALU op on (a, b) at `size`, result in c.alu; returns whether the result is written back. */
function aluOp(c: Vcpu, op: Op, size: number, aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  const o = c.alu;
  switch (op) {
    case Op.ADD: alu.add(o, size, aLo, aHi, bLo, bHi, 0); return true;
    case Op.SUB: alu.sub(o, size, aLo, aHi, bLo, bHi, 0); return true;
    case Op.CMP: alu.sub(o, size, aLo, aHi, bLo, bHi, 0); return false;
    case Op.AND: o.lo = (aLo & bLo) >>> 0; o.hi = (aHi & bHi) >>> 0; o.flags = alu.szp(size, o.lo, o.hi); return true;
    case Op.TEST: o.lo = (aLo & bLo) >>> 0; o.hi = (aHi & bHi) >>> 0; o.flags = alu.szp(size, o.lo, o.hi); return false;
    case Op.OR: o.lo = (aLo | bLo) >>> 0; o.hi = (aHi | bHi) >>> 0; o.flags = alu.szp(size, o.lo, o.hi); return true;
    default: o.lo = (aLo ^ bLo) >>> 0; o.hi = (aHi ^ bHi) >>> 0; o.flags = alu.szp(size, o.lo, o.hi); return true;
  }
}

const ALU_OPS = new Set<Op>([Op.ADD, Op.SUB, Op.CMP, Op.AND, Op.TEST, Op.OR, Op.XOR]);

function aluRegReg(ctx: ExecContext, c: Vcpu, i: Insn): number {
  const lo = c.lo, hi = c.hi, d = i.r0, s = i.r1, wide = i.size === 8;
  const w = aluOp(c, i.op, i.size, lo[d]! >>> 0, wide ? hi[d]! >>> 0 : 0, lo[s]! >>> 0, wide ? hi[s]! >>> 0 : 0);
  const o = c.alu;
  c.flags = (c.flags & NOT_STATUS) | o.flags;
  if (w) { lo[d] = o.lo; hi[d] = wide ? o.hi : 0; }
  c.rip = i.next;
  return CostClass.Plain;
}

function aluRegImm(ctx: ExecContext, c: Vcpu, i: Insn): number {
  const lo = c.lo, hi = c.hi, d = i.r0, wide = i.size === 8;
  const w = aluOp(c, i.op, i.size, lo[d]! >>> 0, wide ? hi[d]! >>> 0 : 0, i.immLo, wide ? i.immHi : 0);
  const o = c.alu;
  c.flags = (c.flags & NOT_STATUS) | o.flags;
  if (w) { lo[d] = o.lo; hi[d] = wide ? o.hi : 0; }
  c.rip = i.next;
  return CostClass.Plain;
}

function incDecReg(ctx: ExecContext, c: Vcpu, i: Insn): number {
  const lo = c.lo, hi = c.hi, d = i.r0, wide = i.size === 8, o = c.alu;
  if (i.op === Op.INC) alu.add(o, i.size, lo[d]! >>> 0, wide ? hi[d]! >>> 0 : 0, 1, 0, 0);
  else alu.sub(o, i.size, lo[d]! >>> 0, wide ? hi[d]! >>> 0 : 0, 1, 0, 0);
  c.flags = (c.flags & NOT_STATUS) | (o.flags & ~Flag.CF) | (c.flags & Flag.CF);
  lo[d] = o.lo;
  hi[d] = wide ? o.hi : 0;
  c.rip = i.next;
  return CostClass.Plain;
}

function movRegReg(ctx: ExecContext, c: Vcpu, i: Insn): number {
  c.lo[i.r0] = c.lo[i.r1]!;
  c.hi[i.r0] = i.size === 8 ? c.hi[i.r1]! : 0;
  c.rip = i.next;
  return CostClass.Plain;
}

function movRegImm(ctx: ExecContext, c: Vcpu, i: Insn): number {
  c.lo[i.r0] = i.immLo;
  c.hi[i.r0] = i.size === 8 ? i.immHi : 0;
  c.rip = i.next;
  return CostClass.Plain;
}

function simpleAddress(c: Vcpu, i: Insn): number {
  const b = i.base;
  return b === NO_REG ? i.disp : i.disp + c.hi[b]! * 4294967296 + (c.lo[b]! >>> 0);
}

function movLoad(ctx: ExecContext, c: Vcpu, i: Insn): number {
  const t = c.opB;
  load(ctx.memory, c, simpleAddress(c, i), i.size, t);
  c.lo[i.r0] = t.lo;
  c.hi[i.r0] = i.size === 8 ? t.hi : 0;
  c.rip = i.next;
  return CostClass.Load;
}

function movStore(ctx: ExecContext, c: Vcpu, i: Insn): number {
  const ea = simpleAddress(c, i);
  if (c.returns.size > 0) c.returns.delete(ea);
  const r = i.r1;
  c.rip = i.next;
  if (i.k1 === Opd.IMM) store(ctx.memory, c, ctx.tso, ea, i.size, i.immLo, i.size === 8 ? i.immHi : 0);
  else store(ctx.memory, c, ctx.tso, ea, i.size, c.lo[r]! >>> 0, i.size === 8 ? c.hi[r]! >>> 0 : 0);
  return CostClass.Store;
}

function jcc(ctx: ExecContext, c: Vcpu, i: Insn): number {
  c.rip = alu.condition(i.cc, c.flags) ? i.target : i.next;
  return CostClass.Branch;
}

function jmp(ctx: ExecContext, c: Vcpu, i: Insn): number {
  c.rip = i.target;
  return CostClass.Branch;
}

function nop(ctx: ExecContext, c: Vcpu, i: Insn): number {
  c.rip = i.next;
  return CostClass.Plain;
}

function pause(ctx: ExecContext, c: Vcpu, i: Insn): number {
  c.lastPause = c.retired;
  c.rip = i.next;
  return CostClass.Pause;
}

const H = {
  aluRegReg: handler(aluRegReg),
  aluRegImm: handler(aluRegImm),
  incDecReg: handler(incDecReg),
  movRegReg: handler(movRegReg),
  movRegImm: handler(movRegImm),
  movLoad: handler(movLoad),
  movStore: handler(movStore),
  jcc: handler(jcc),
  jmp: handler(jmp),
  nop: handler(nop),
  pause: handler(pause),
};

/** The specialised handler for `i`, or undefined when the general interpreter must run it. */
export function specialize(i: Insn): FastHandler | undefined {
  const wide = i.size === 8 || i.size === 4;
  const simpleMem = i.index === NO_REG && i.seg === Seg.NONE && i.base !== BASE_RIP;
  switch (i.op) {
    case Op.NOP: return H.nop;
    case Op.PAUSE: return H.pause;
    case Op.JCC: return H.jcc;
    case Op.JMP: return H.jmp;
    case Op.INC: case Op.DEC:
      return wide && i.k0 === Opd.REG && !i.lock ? H.incDecReg : undefined;
    case Op.MOV:
      if (!wide) return undefined;
      if (i.k0 === Opd.REG && i.k1 === Opd.REG) return H.movRegReg;
      if (i.k0 === Opd.REG && i.k1 === Opd.IMM) return H.movRegImm;
      if (i.k0 === Opd.REG && i.k1 === Opd.MEM && simpleMem) return H.movLoad;
      if (i.k0 === Opd.MEM && (i.k1 === Opd.REG || i.k1 === Opd.IMM) && simpleMem) return H.movStore;
      return undefined;
    default:
      if (!ALU_OPS.has(i.op) || !wide || i.k0 !== Opd.REG) return undefined;
      if (i.k1 === Opd.REG) return H.aluRegReg;
      if (i.k1 === Opd.IMM) return H.aluRegImm;
      return undefined;
  }
}
