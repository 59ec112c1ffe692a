/**
 * Lazy flags for compiled blocks: an arithmetic instruction leaves its operands and result in
 * locals instead of computing RFLAGS; a later Jcc/SETcc/CMOVcc reads the condition straight from
 * them (ZF = result is zero, B = unsigned a < b after a SUB, ...), and the status flags are
 * computed (materialized into the block's local `F`) only where something needs them whole: a
 * block exit, an instruction that reads RFLAGS in full, a fault. The flag math itself stays in
 * src/x86/alu.ts, so a materialized value is bit for bit what the interpreter computes.
 */
import * as alu from '../../x86/alu.ts';
import { Flag, STATUS_FLAGS } from '../../x86/registers.ts';

/** Which instruction family left its flags pending. */
export const enum PendingKind {
  Add = 0,
  Sub,
  /** AND, OR, XOR, TEST: SF/ZF/PF of the result, CF = OF = AF = 0. */
  Logic,
  /** INC/DEC: every status flag but CF (which F already holds). */
  Inc,
  Dec,
}

/** Codegen-time record of pending flags: the names of the locals holding the operands and result. */
export interface Pending {
  readonly kind: PendingKind;
  /** 4 or 8 (narrower sizes are computed eagerly). */
  readonly size: number;
  readonly aL: string; readonly aH: string;
  readonly bL: string; readonly bH: string;
  readonly rL: string; readonly rH: string;
}

const NOT_STATUS = ~STATUS_FLAGS;

/** Statement that folds `p` into the local `F` (the helpers are the block's closure variables). */
export function materialize(p: Pending): string {
  const s = p.size;
  switch (p.kind) {
    case PendingKind.Add: return `F = (F & ${NOT_STATUS}) | fAdd(${s}, ${p.aL}, ${p.aH}, ${p.bL}, ${p.bH});`;
    case PendingKind.Sub: return `F = (F & ${NOT_STATUS}) | fSub(${s}, ${p.aL}, ${p.aH}, ${p.bL}, ${p.bH});`;
    case PendingKind.Logic: return `F = (F & ${NOT_STATUS}) | szp(${s}, ${p.rL}, ${p.rH});`;
    case PendingKind.Inc: return `F = (F & ${NOT_STATUS}) | (fAdd(${s}, ${p.aL}, ${p.aH}, 1, 0) & ${~Flag.CF}) | (F & ${Flag.CF});`;
    case PendingKind.Dec: return `F = (F & ${NOT_STATUS}) | (fSub(${s}, ${p.aL}, ${p.aH}, 1, 0) & ${~Flag.CF}) | (F & ${Flag.CF});`;
  }
}

/**
 * Statement that brings only CF of `p` into `F` (before an INC/DEC, which keeps CF and rewrites
 * every other status flag); empty when `F` already holds it.
 */
export function materializeCarry(p: Pending | null): string {
  if (p === null || p.kind === PendingKind.Inc || p.kind === PendingKind.Dec) return '';
  if (p.kind === PendingKind.Logic) return `F &= ${~Flag.CF};`;
  const f = p.kind === PendingKind.Add ? 'fAdd' : 'fSub';
  return `F = (F & ${~Flag.CF}) | (${f}(${p.size}, ${p.aL}, ${p.aH}, ${p.bL}, ${p.bH}) & ${Flag.CF});`;
}

/**
 * Condition code `cc` (x86 order) as a JS boolean expression over `p`'s locals, or undefined
 * when only the materialized flags can answer it.
 */
export function conditionOf(p: Pending, cc: number): string | undefined {
  const w = p.size === 8;
  const zero = w ? `((${p.rL} | ${p.rH}) === 0)` : `(${p.rL} === 0)`;
  const sign = w ? `((${p.rH} | 0) < 0)` : `((${p.rL} | 0) < 0)`;
  let e: string | undefined;
  const base = cc >> 1;
  if (base === 2) e = zero;
  else if (base === 4) e = sign;
  else if (p.kind === PendingKind.Sub) {
    // CMP/SUB a, b: B = a < b unsigned, BE = a <= b unsigned, L = a < b signed, LE = a <= b signed.
    const [aL, aH, bL, bH] = [p.aL, p.aH, p.bL, p.bH];
    if (base === 1) e = w ? `(${aH} < ${bH} || (${aH} === ${bH} && ${aL} < ${bL}))` : `(${aL} < ${bL})`;
    else if (base === 3) e = w ? `(${aH} < ${bH} || (${aH} === ${bH} && ${aL} <= ${bL}))` : `(${aL} <= ${bL})`;
    else if (base === 6) e = w ? `((${aH} | 0) < (${bH} | 0) || (${aH} === ${bH} && ${aL} < ${bL}))` : `((${aL} | 0) < (${bL} | 0))`;
    else if (base === 7) e = w ? `((${aH} | 0) < (${bH} | 0) || (${aH} === ${bH} && ${aL} <= ${bL}))` : `((${aL} | 0) <= (${bL} | 0))`;
  } else if (p.kind === PendingKind.Logic) {
    // CF = OF = 0: O and B never hold, BE = ZF, L = SF, LE = ZF or SF.
    if (base === 0 || base === 1) e = 'false';
    else if (base === 3) e = zero;
    else if (base === 6) e = sign;
    else if (base === 7) e = `(${zero} || ${sign})`;
  }
  if (e === undefined) return undefined;
  return (cc & 1) === 0 ? e : `!${e}`;
}

/**
 * The helpers a block's code calls, made once per compiled block (each with its own scratch
 * AluOut, so nothing is shared between blocks or machines).
 */
export function flagHelpers(): { fAdd: (s: number, aL: number, aH: number, bL: number, bH: number) => number; fSub: (s: number, aL: number, aH: number, bL: number, bH: number) => number; szp: typeof alu.szp; cond: typeof alu.condition } {
  const o = alu.newAluOut();
  return {
    fAdd: (s, aL, aH, bL, bH) => { alu.add(o, s, aL, aH, bL, bH, 0); return o.flags; },
    fSub: (s, aL, aH, bL, bH) => { alu.sub(o, s, aL, aH, bL, bH, 0); return o.flags; },
    szp: alu.szp,
    cond: alu.condition,
  };
}
