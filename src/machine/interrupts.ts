/**
 * Interrupt and exception delivery and IRETQ (SDM Vol. 3 ch. 6): a 64-bit interrupt frame
 * (SS, RSP, RFLAGS, CS, RIP) on a 16-byte aligned stack, IF and TF cleared by an interrupt gate,
 * NMIs blocked from delivery until the next IRET of any kind (SDM 6.7.1) — the rule that lets a
 * breakpoint inside an NMI handler re-open NMIs (seeds 000 and 002).
 */
import { Flag } from '../x86/registers.ts';
import { Reg } from '../x86/registers.ts';
import { load, store, drainAll } from './access.ts';
import { decodeAt, instructionBytesAt, rewrittenSince } from './decode-cache.ts';
import type { Memory } from './memory.ts';
import { MachineFault } from './errors.ts';
import { KERNEL_CS, KERNEL_SS, Vector, type ExecContext } from './context.ts';
import type { Vcpu } from './vcpu.ts';

export function push64(ctx: ExecContext, c: Vcpu, value: number): void {
  const rsp = c.getAddr(Reg.RSP) - 8;
  c.setAddr(Reg.RSP, rsp);
  store(ctx.memory, c, ctx.tso, rsp, 8, value >>> 0, Math.floor(value / 4294967296) >>> 0);
}

export function pop64(ctx: ExecContext, c: Vcpu): number {
  const rsp = c.getAddr(Reg.RSP);
  const t = c.opB;
  load(ctx.memory, c, rsp, 8, t);
  c.setAddr(Reg.RSP, rsp + 8);
  return (t.hi | 0) * 4294967296 + t.lo;
}

/** Remember a pushed return address (call or interrupt frame) for the return-into-rewritten check. */
export function recordReturn(ctx: ExecContext, c: Vcpu, slot: number, returnAddress: number): void {
  // The later check compares the text bytes around R with their writes since now: a text read.
  if (ctx.memory.footprint !== undefined) ctx.memory.footprint.fetch(returnAddress - 15, 31);
  c.returns.set(slot, {
    returnAddress,
    pushedAt: ctx.memory.textSeq,
    bytes: instructionBytesAt(ctx.memory, returnAddress),
  });
}

function byteRewritten(mem: Memory, addr: number, since: number): boolean {
  const p = mem.page(addr);
  return p !== undefined && p.seq !== null && p.seq[addr - p.base]! > since;
}

/**
 * Does a return to `target` land inside an instruction of code rewritten since `since`? Walk back
 * over the contiguous rewritten bytes to where the new code starts, decode forward, and see whether
 * `target` is an instruction boundary (seed 001: the PV unlock CALL returns to offset 5, which the
 * native bytes `c6 07 00 0f 1f 40 00` put in the middle of a NOP). A return to the first byte of a
 * rewritten site is a boundary and safe: the returning IRET/RET lands on a whole new instruction.
 */
export function landsMidInstruction(mem: Memory, target: number, since: number): boolean {
  let start = target;
  while (target - start < 15 && byteRewritten(mem, start - 1, since)) start--;
  let a = start;
  while (a < target) {
    const insn = decodeAt(mem, a);
    if (!insn) return true;
    a += insn.len;
  }
  return a !== target;
}

/**
 * Check a return through stack slot `slot` to `target` (RET or IRETQ). Returns true when the
 * run must stop for a hazard.
 */
export function checkReturn(ctx: ExecContext, c: Vcpu, slot: number, target: number): boolean {
  const rec = c.returns.get(slot);
  if (rec === undefined) return false;
  c.returns.delete(slot);
  if (rec.returnAddress !== target || rec.bytes.length === 0) return false;
  if (ctx.memory.footprint !== undefined) ctx.memory.footprint.fetch(target - 15, 31);
  if (!rewrittenSince(ctx.memory, target, rec.bytes.length, rec.pushedAt)) return false;
  if (!landsMidInstruction(ctx.memory, target, rec.pushedAt)) return false;
  return ctx.hazard({
    kind: 'return-into-rewritten',
    cpu: c.id,
    returnAddress: target,
    pushedAt: rec.pushedAt,
    before: Array.from(rec.bytes),
    after: Array.from(ctx.memory.readBytes(target, rec.bytes.length)),
  });
}

/** Deliver `vector` with `returnRip` in the frame. Throws when the IDT has no handler. */
export function deliver(ctx: ExecContext, c: Vcpu, vector: number, returnRip: number): void {
  const handler = ctx.idt.get(vector);
  if (handler === undefined) {
    throw new MachineFault('unhandled-exception', c.id, c.rip, `vector ${vector} raised with no handler in the IDT`);
  }
  const oldRsp = c.getAddr(Reg.RSP);
  c.setAddr(Reg.RSP, Math.floor(oldRsp / 16) * 16);
  push64(ctx, c, KERNEL_SS);
  push64(ctx, c, oldRsp);
  push64(ctx, c, c.flags);
  push64(ctx, c, KERNEL_CS);
  push64(ctx, c, returnRip);
  recordReturn(ctx, c, c.getAddr(Reg.RSP), returnRip);
  c.flags &= ~(Flag.IF | Flag.TF);
  c.rip = handler;
  c.halted = false;
  c.interruptShadow = false;
  if (vector === Vector.NMI) c.nmiBlocked = true;
}

/** IRETQ: pop the frame, unblock NMIs, serialize. Returns true when the run must stop for a hazard. */
export function iret(ctx: ExecContext, c: Vcpu): boolean {
  drainAll(ctx.memory, c);
  const slot = c.getAddr(Reg.RSP);
  const rip = pop64(ctx, c);
  pop64(ctx, c); // CS
  const flags = pop64(ctx, c);
  const rsp = pop64(ctx, c);
  pop64(ctx, c); // SS
  c.flags = (flags & 0x3f7fd5) | 0x2;
  c.setAddr(Reg.RSP, rsp);
  c.rip = rip;
  c.nmiBlocked = false;
  ctx.memory.footprint?.serialize();
  c.serializedSeq = ctx.memory.textSeq;
  ctx.emit({ type: 'iret', step: ctx.step, cpu: c.id, rip });
  return checkReturn(ctx, c, slot, rip);
}

/**
 * At an instruction boundary: deliver a pending NMI (unless blocked) or the highest pending
 * interrupt (if IF is set and no STI shadow). Returns true when something was delivered.
 */
export function deliverPending(ctx: ExecContext, c: Vcpu): boolean {
  if (c.nmiPending && !c.nmiBlocked) {
    c.nmiPending = false;
    if (c.halted) ctx.emit({ type: 'wake', step: ctx.step, cpu: c.id, reason: 'nmi' });
    ctx.emit({ type: 'nmi', step: ctx.step, cpu: c.id, rip: c.rip });
    deliver(ctx, c, Vector.NMI, c.rip);
    return true;
  }
  if (c.pendingIrqs.length > 0 && (c.flags & Flag.IF) !== 0 && !c.interruptShadow) {
    const vector = c.pendingIrqs.shift()!;
    if (c.halted) ctx.emit({ type: 'wake', step: ctx.step, cpu: c.id, reason: 'interrupt' });
    ctx.emit({ type: 'interrupt', step: ctx.step, cpu: c.id, vector, rip: c.rip });
    deliver(ctx, c, vector, c.rip);
    return true;
  }
  return false;
}

/** Whether a halted vCPU has something that would wake it. */
export function canWake(c: Vcpu): boolean {
  return (c.nmiPending && !c.nmiBlocked) || (c.pendingIrqs.length > 0 && (c.flags & Flag.IF) !== 0);
}

/** Queue a fixed-vector interrupt (IRQ or IPI), highest vector first (LAPIC priority). */
export function raiseIrq(c: Vcpu, vector: number): void {
  if (c.pendingIrqs.includes(vector)) return; // the IRR holds one bit per vector
  let i = 0;
  while (i < c.pendingIrqs.length && c.pendingIrqs[i]! > vector) i++;
  c.pendingIrqs.splice(i, 0, vector);
}

/** Latch an NMI. */
export function raiseNmi(c: Vcpu): void {
  c.nmiPending = true;
}
