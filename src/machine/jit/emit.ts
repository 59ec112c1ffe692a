/**
 * JavaScript for one instruction inside a compiled block: the same effect, in the same order, as
 * the interpreter (src/machine/execute.ts, or src/machine/fast-paths.ts where the decoded
 * instruction carries a fast handler, since the two differ in RIP at a fault and in the
 * canonical-address check). Memory goes through the access layer (load, store, commit, drainAll:
 * TSO store buffer, forwarding, faults). `compilable` says which instructions a block may hold;
 * anything else ends the block and runs in the interpreter.
 */
import { Op, Opd, Seg, NO_REG, BASE_RIP, type Insn } from '../../x86/insn.ts';
import { Flag, STATUS_FLAGS } from '../../x86/registers.ts';
import { CostClass } from '../chooser.ts';
import { PendingKind, materializeCarry, conditionOf } from './flags.ts';
import type { BlockWriter } from './writer.ts';

const NOT_STATUS = ~STATUS_FLAGS;
const ALU = new Set<Op>([Op.ADD, Op.SUB, Op.CMP, Op.AND, Op.OR, Op.XOR, Op.TEST]);
const isReg = (k: Opd): boolean => k === Opd.REG || k === Opd.REGH;

/** Can a block hold `i` (other than as its closing JMP/Jcc)? */
export function compilable(i: Insn): boolean {
  switch (i.op) {
    case Op.NOP: case Op.FENCE: case Op.PAUSE:
      return true;
    case Op.MOV:
      return (isReg(i.k0) && (isReg(i.k1) || i.k1 === Opd.IMM || i.k1 === Opd.MEM)) || (i.k0 === Opd.MEM && (isReg(i.k1) || i.k1 === Opd.IMM));
    case Op.MOVZX:
      return i.k0 === Opd.REG && (isReg(i.k1) || i.k1 === Opd.MEM);
    case Op.LEA:
      return i.k0 === Opd.REG && i.size >= 2;
    case Op.INC: case Op.DEC:
      return isReg(i.k0) || i.k0 === Opd.MEM;
    case Op.CMPXCHG:
      return i.k0 === Opd.MEM && isReg(i.k1);
    case Op.SETCC:
      return isReg(i.k0);
    case Op.CMOVCC:
      return i.k0 === Opd.REG && (isReg(i.k1) || i.k1 === Opd.MEM);
    default:
      if (!ALU.has(i.op)) return false;
      if (isReg(i.k0)) return isReg(i.k1) || i.k1 === Opd.IMM || i.k1 === Opd.MEM;
      return i.k0 === Opd.MEM && (isReg(i.k1) || i.k1 === Opd.IMM) && (!i.lock || (i.op !== Op.CMP && i.op !== Op.TEST));
  }
}

/** What the block loop needs to know after an instruction. */
export interface Emitted {
  cost: CostClass;
  /** A store's address temporary and size (the block ends if it wrote into its own bytes). */
  store?: { ea: string; size: number };
}

/** Does the interpreter run `i` through its fast handler's simple addressing (fast-paths.ts)? */
function fastMemory(i: Insn): boolean {
  return i.fast !== undefined && i.op === Op.MOV && (i.k0 === Opd.MEM || i.k1 === Opd.MEM);
}

/** Emit the effective address of `i`'s memory operand into a temporary (execute.ts's effectiveAddress). */
function address(w: BlockWriter, i: Insn): string {
  const b = i.base, x = i.index;
  if (fastMemory(i)) {
    if (b === NO_REG) return w.let(i.disp);
    w.used.add(b);
    return w.let(`${i.disp} + h${b} * 4294967296 + (l${b} >>> 0)`);
  }
  const ea = w.let(i.disp);
  const hasBase = b >= 0 && b !== BASE_RIP;
  if (hasBase) { w.used.add(b); w.emit(`${ea} += h${b} * 4294967296 + (l${b} >>> 0);`); }
  if (x >= 0) { w.used.add(x); w.emit(`${ea} += (h${x} * 4294967296 + (l${x} >>> 0)) * ${i.scale};`); }
  const seg = i.seg === Seg.GS ? 'c.gsBase' : i.seg === Seg.FS ? 'c.fsBase' : '0';
  if (seg !== '0') w.emit(`${ea} += ${seg};`);
  const bl = hasBase ? `l${b}` : '0', bh = hasBase ? `h${b}` : '0', xl = x >= 0 ? `l${x}` : '0', xh = x >= 0 ? `h${x}` : '0';
  w.emit(`if (!(${ea} >= -0x800000000000 && ${ea} < 0x800000000000)) ${ea} = wrapEa(c, ${i.address}, ${i.disp}, ${hasBase}, ${bl}, ${bh}, ${x >= 0}, ${xl}, ${xh}, ${i.scale}, ${seg});`);
  return ea;
}

/** Load `size` bytes at `ea` into two temporaries. */
function loadInto(w: BlockWriter, ea: string, size: number): [string, string] {
  w.emit(`load(mem, c, ${ea}, ${size}, T);`);
  return [w.let('T.lo'), w.let('T.hi')];
}

/** A plain (buffered) store, as execute.ts's write() does it. */
function storeTo(w: BlockWriter, ea: string, size: number, lo: string, hi: string): void {
  w.emit(`if (c.returns.size > 0) c.returns.delete(${ea}); store(mem, c, tso, ${ea}, ${size}, ${lo}, ${hi});`);
}

/** Source operand `k1` of `i` at `size` (register, immediate or memory at `ea`). */
function source(w: BlockWriter, i: Insn, size: number, ea: string): [string, string] {
  if (i.k1 === Opd.IMM) return w.imm(i, size);
  if (i.k1 === Opd.MEM) return loadInto(w, ea, size);
  const [lo, hi] = w.readReg(i.k1, i.r1, size);
  return [w.let(lo), w.let(hi)];
}

/** Emit `i`; `compilable(i)` must hold. */
export function emitInsn(w: BlockWriter, i: Insn): Emitted {
  if (i.op === Op.LEA) return lea(w, i);
  // The interpreter's NOP handler (fast-paths.ts) never forms the address of a NOP's operand.
  if (i.op === Op.NOP) return { cost: CostClass.Plain };
  const mem = i.k0 === Opd.MEM || i.k1 === Opd.MEM;
  // Faults can leave from here on: F must read as the interpreter's c.flags at this point.
  if (mem) w.faultPoint();
  const ea = mem ? address(w, i) : '';
  const size = i.size;
  // c.rip during the accesses, for fault reports: the fast handlers advance it after a load and
  // before a store; execute() advances it first.
  if (mem) w.emit(`c.rip = ${fastMemory(i) && i.k1 === Opd.MEM ? i.address : i.next};`);
  switch (i.op) {
    case Op.FENCE: return { cost: CostClass.Plain };
    case Op.PAUSE: w.emit('c.lastPause = r0 + n;'); return { cost: CostClass.Pause };
    case Op.MOV: {
      const [lo, hi] = source(w, i, size, ea);
      if (i.k0 === Opd.MEM) { storeTo(w, ea, size, lo, hi); return { cost: CostClass.Store, store: { ea, size } }; }
      w.writeReg(i.k0, i.r0, size, lo, hi);
      return { cost: i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain };
    }
    case Op.MOVZX: {
      const [lo] = i.k1 === Opd.MEM ? loadInto(w, ea, i.srcSize) : w.readReg(i.k1, i.r1, i.srcSize);
      w.writeReg(i.k0, i.r0, size, lo, '0');
      return { cost: i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain };
    }
    case Op.INC: case Op.DEC: return incDec(w, i, ea);
    case Op.CMPXCHG: return cmpxchg(w, i, ea);
    case Op.SETCC: {
      const cond = condition(w, i.cc);
      w.writeReg(i.k0, i.r0, 1, `(${cond} ? 1 : 0)`, '0');
      return { cost: CostClass.Plain };
    }
    case Op.CMOVCC: {
      const [lo, hi] = source(w, i, size, ea);
      const cond = condition(w, i.cc);
      w.emit(`if (${cond}) {`);
      w.writeReg(Opd.REG, i.r0, size, lo, hi);
      // A 32-bit CMOV zero-extends even when it does not move.
      w.emit(size === 4 ? `} else h${i.r0} = 0;` : '}');
      return { cost: CostClass.Plain };
    }
    default: return aluOp(w, i, ea);
  }
}

/** A condition code as an expression: from the pending flags when they can answer, else from F. */
export function condition(w: BlockWriter, cc: number): string {
  const p = w.pending;
  const direct = p === null ? undefined : conditionOf(p, cc);
  if (direct !== undefined) return w.let(direct);
  w.settle();
  return w.let(`cond(${cc}, F)`);
}

function lea(w: BlockWriter, i: Insn): Emitted {
  // 64-bit wrap-around sum in halves (execute.ts computes it with BigInt; the value is the same).
  const d = BigInt.asUintN(64, BigInt(i.disp));
  const lo = w.let(Number(d & 0xffffffffn)), hi = w.let(Number(d >> 32n));
  const add = (xl: string, xh: string): void => {
    const s = w.let(`${lo} + ${xl}`);
    w.emit(`${lo} = ${s} >>> 0; ${hi} = (${hi} + ${xh} + (${s} > 0xffffffff ? 1 : 0)) >>> 0;`);
  };
  const b = i.base, x = i.index;
  if (b >= 0 && b !== BASE_RIP) { w.used.add(b); add(`(l${b} >>> 0)`, `(h${b} >>> 0)`); }
  if (x >= 0) {
    w.used.add(x);
    const k = Math.log2(i.scale);
    if (k === 0) add(`(l${x} >>> 0)`, `(h${x} >>> 0)`);
    else add(`((l${x} << ${k}) >>> 0)`, `(((h${x} << ${k}) | (l${x} >>> ${32 - k})) >>> 0)`);
  }
  const size = i.size;
  w.writeReg(Opd.REG, i.r0, size, size === 2 ? `(${lo} & 0xffff)` : lo, size === 8 ? hi : '0');
  return { cost: CostClass.Plain };
}

/** Destination operand `k0` of `i` at `size`. */
function destination(w: BlockWriter, i: Insn, size: number, ea: string): [string, string] {
  if (i.k0 === Opd.MEM) return loadInto(w, ea, size);
  const [lo, hi] = w.readReg(i.k0, i.r0, size);
  return [w.let(lo), w.let(hi)];
}

function aluOp(w: BlockWriter, i: Insn, ea: string): Emitted {
  const size = i.size;
  const locked = i.lock && i.k0 === Opd.MEM;
  if (locked) w.emit('drainAll(mem, c);');
  const [aL, aH] = destination(w, i, size, ea);
  const [bL, bH] = source(w, i, size, ea);
  const writes = i.op !== Op.CMP && i.op !== Op.TEST;
  const kind = i.op === Op.ADD ? PendingKind.Add : i.op === Op.SUB || i.op === Op.CMP ? PendingKind.Sub : PendingKind.Logic;
  const rL = w.temp(), rH = w.temp();
  if (size === 8) {
    if (kind === PendingKind.Add) { const s = w.let(`${aL} + ${bL}`); w.emit(`${rL} = ${s} >>> 0; ${rH} = (${aH} + ${bH} + (${s} > 0xffffffff ? 1 : 0)) >>> 0;`); }
    else if (kind === PendingKind.Sub) { const s = w.let(`${aL} - ${bL}`); w.emit(`${rL} = ${s} >>> 0; ${rH} = (${aH} - ${bH} - (${s} < 0 ? 1 : 0)) >>> 0;`); }
    else { const o = i.op === Op.OR ? '|' : i.op === Op.XOR ? '^' : '&'; w.emit(`${rL} = (${aL} ${o} ${bL}) >>> 0; ${rH} = (${aH} ${o} ${bH}) >>> 0;`); }
  } else if (size === 4 || kind === PendingKind.Logic) {
    // Below 64 bits the operands are already masked to the size; AND/OR/XOR stay within it.
    const m = size === 4 ? '>>> 0' : `& ${size === 2 ? 0xffff : 0xff}`;
    const o = kind === PendingKind.Add ? '+' : kind === PendingKind.Sub ? '-' : i.op === Op.OR ? '|' : i.op === Op.XOR ? '^' : '&';
    w.emit(`${rL} = (${aL} ${o} ${bL}) ${m}; ${rH} = 0;`);
  } else {
    w.emit(`${kind === PendingKind.Add ? 'aluAdd' : 'aluSub'}(O, ${size}, ${aL}, 0, ${bL}, 0, 0); ${rL} = O.lo; ${rH} = 0;`);
  }
  const pending = { kind, size, aL, aH, bL, bH, rL, rH };
  if (size >= 4 && !(writes && i.k0 === Opd.MEM)) w.pending = pending;
  else {
    // Eager: 8/16-bit flags, or a store after the flags (a fault there must see them set).
    w.pending = pending;
    if (size < 4) w.emit(kind === PendingKind.Logic ? `F = (F & ${NOT_STATUS}) | szp(${size}, ${rL}, 0);` : `F = (F & ${NOT_STATUS}) | O.flags;`);
    else w.settle();
    w.pending = null;
    // F holds this instruction's flags now: a fault at its store must not settle older ones.
    w.faultPoint();
  }
  if (!writes) return { cost: i.k0 === Opd.MEM ? CostClass.Store : i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain };
  if (locked) { w.emit(`commit(mem, c.id, c.rip, ${ea}, ${size}, ${rL}, ${rH});`); return { cost: CostClass.Locked, store: { ea, size } }; }
  if (i.k0 === Opd.MEM) { storeTo(w, ea, size, rL, rH); return { cost: CostClass.Store, store: { ea, size } }; }
  w.writeReg(i.k0, i.r0, size, rL, rH);
  return { cost: i.k1 === Opd.MEM ? CostClass.Load : CostClass.Plain };
}

function incDec(w: BlockWriter, i: Insn, ea: string): Emitted {
  const size = i.size;
  const locked = i.lock && i.k0 === Opd.MEM;
  if (locked) w.emit('drainAll(mem, c);');
  const [aL, aH] = destination(w, i, size, ea);
  const inc = i.op === Op.INC;
  const rL = w.temp(), rH = w.temp();
  // INC/DEC keep CF: whatever was pending must leave its CF in F first.
  w.emit(materializeCarry(w.pending));
  w.pending = null;
  if (size === 8) {
    const s = w.let(`${aL} ${inc ? '+' : '-'} 1`);
    w.emit(inc ? `${rL} = ${s} >>> 0; ${rH} = (${aH} + (${s} > 0xffffffff ? 1 : 0)) >>> 0;` : `${rL} = ${s} >>> 0; ${rH} = (${aH} - (${s} < 0 ? 1 : 0)) >>> 0;`);
  } else if (size === 4) w.emit(`${rL} = (${aL} ${inc ? '+' : '-'} 1) >>> 0; ${rH} = 0;`);
  else w.emit(`${rL} = (${aL} ${inc ? '+' : '-'} 1) & ${size === 2 ? 0xffff : 0xff}; ${rH} = 0;`);
  w.pending = { kind: inc ? PendingKind.Inc : PendingKind.Dec, size, aL, aH, bL: '1', bH: '0', rL, rH };
  if (size < 4 || i.k0 === Opd.MEM) { w.settle(); w.faultPoint(); }
  if (locked) { w.emit(`commit(mem, c.id, c.rip, ${ea}, ${size}, ${rL}, ${rH});`); return { cost: CostClass.Locked, store: { ea, size } }; }
  if (i.k0 === Opd.MEM) { storeTo(w, ea, size, rL, rH); return { cost: CostClass.Store, store: { ea, size } }; }
  w.writeReg(i.k0, i.r0, size, rL, rH);
  return { cost: CostClass.Plain };
}

function cmpxchg(w: BlockWriter, i: Insn, ea: string): Emitted {
  const size = i.size;
  const locked = i.lock;
  if (locked) w.emit('drainAll(mem, c);');
  const [aL, aH] = loadInto(w, ea, size);
  const [accL, accH] = w.readReg(Opd.REG, 0, size);
  w.pending = null;
  w.emit(`aluSub(O, ${size}, ${accL}, ${accH}, ${aL}, ${aH}, 0); F = (F & ${NOT_STATUS}) | O.flags;`);
  w.faultPoint();
  const [bL, bH] = w.readReg(i.k1, i.r1, size);
  const put = (lo: string, hi: string): string =>
    locked ? `commit(mem, c.id, c.rip, ${ea}, ${size}, ${lo}, ${hi});` : `if (c.returns.size > 0) c.returns.delete(${ea}); store(mem, c, tso, ${ea}, ${size}, ${lo}, ${hi});`;
  w.emit(`if ((O.flags & ${Flag.ZF}) !== 0) { ${put(bL, bH)} } else { ${put(aL, aH)}`);
  w.writeReg(Opd.REG, 0, size, aL, aH);
  w.emit('}');
  return { cost: locked ? CostClass.Locked : CostClass.Plain, store: { ea, size } };
}
