/**
 * Compile a basic block of guest code into one JavaScript function (issue 12, item 2). A block is
 * a straight run of compilable instructions (emit.ts) inside one page, closed by its first JMP or
 * Jcc (or cut short before an instruction the block cannot hold). A block whose branch returns to
 * its own start loops inside the function, registers kept in locals across iterations.
 *
 * The function runs 1..max instructions and returns how many. After every instruction it asks
 * `cont(c, cost, last)` when given (the run loop's per-step protocol: the chooser's observe and
 * continueWith) and stops when told to; a store into the block's own bytes ends it too (the next
 * fetch must see the new bytes through the interpreter's cross-modifying-code rules).
 */
import { Op, Opd, type Insn } from '../../x86/insn.ts';
import * as alu from '../../x86/alu.ts';
import { isCanonical } from '../memory.ts';
import { MachineFault } from '../errors.ts';
import { load, store, commit, drainAll } from '../access.ts';
import { PendingKind, flagHelpers } from './flags.ts';
import { compilable, condition, emitInsn } from './emit.ts';
import { BlockWriter } from './writer.ts';
import type { Memory } from '../memory.ts';
import type { Vcpu } from '../vcpu.ts';
import { CostClass } from '../chooser.ts';

/** The run loop's per-instruction hook: observe the step; `last` = the budget is spent; false = stop. */
export type StepHook = (c: Vcpu, cost: CostClass, last: boolean) => boolean;

export type BlockFunction = (c: Vcpu, max: number, cont: StepHook | undefined, mem: Memory, tso: boolean) => number;

export interface CompiledBlock {
  readonly start: number;
  /** The block's bytes [start, end) as they were compiled (validated against memory before use). */
  readonly end: number;
  readonly bytes: Uint8Array;
  readonly insns: readonly Insn[];
  readonly run: BlockFunction;
}

/** Longest block, in instructions (its exits are written out per instruction). */
export const MAX_BLOCK_INSNS = 32;

/** Can `i` close a block? */
export function isBlockEnd(i: Insn): boolean {
  return i.op === Op.JMP || i.op === Op.JCC;
}

/** Can a block hold `i` at all (in its body, or as its closing branch)? */
export function blockCanHold(i: Insn): boolean {
  return isBlockEnd(i) || compilable(i);
}

/** The exact 64-bit address of a memory operand whose fast sum left the canonical range (execute.ts's wrapAddress). */
function wrapEa(c: Vcpu, rip: number, disp: number, hasBase: boolean, bl: number, bh: number, hasIndex: boolean, xl: number, xh: number, scale: number, seg: number): number {
  const reg = (lo: number, hi: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  let a = BigInt(disp);
  if (hasBase) a += reg(bl, bh);
  if (hasIndex) a += reg(xl, xh) * BigInt(scale);
  a += BigInt(seg);
  const n = Number(BigInt.asIntN(64, a));
  if (!isCanonical(n)) {
    c.rip = rip;
    throw new MachineFault('non-canonical', c.id, rip, `#GP: non-canonical address 0x${BigInt.asUintN(64, a).toString(16)}`);
  }
  return n;
}

/** After an instruction: count it, run the hook, honour the budget. */
function afterStep(w: BlockWriter, next: number, cost: CostClass, onward: string): void {
  w.emit('n++;');
  w.faultPoint();
  w.emit(`if (cont !== undefined) { c.retired = r0 + n; c.rip = ${next}; if (!cont(c, ${cost}, n >= max) || n >= max) ${w.exit(next)} } else if (n >= max) ${w.exit(next)}`);
  w.emit(onward);
}

/**
 * Generate and instantiate the function for `insns` (consecutive, first at `start`, every one
 * `blockCanHold`, only the last may be a branch).
 */
export function compileBlock(insns: readonly Insn[], bytes: Uint8Array): CompiledBlock {
  const start = insns[0]!.address;
  const last = insns[insns.length - 1]!;
  const end = last.next;
  const w = new BlockWriter(start, end);
  const loops = isBlockEnd(last) && last.target === start;
  // On a jump back to the start the pending flags must reach F, unless the first instruction
  // rewrites every status flag before anything can look (a register-only ADD/SUB/logic op).
  let firstOverwrites = false;
  for (let k = 0; k < insns.length; k++) {
    const i = insns[k]!;
    if (isBlockEnd(i)) {
      if (i.op === Op.JMP) {
        w.emit('n++;');
        w.faultPoint();
        branchTo(w, i, i.target, loops);
      } else {
        const cond = condition(w, i.cc);
        w.emit(`if (${cond}) {`);
        w.emit('n++;');
        const saved = w.pending;
        w.faultPoint();
        branchTo(w, i, i.target, loops);
        w.pending = saved;
        w.emit('}');
        w.emit('n++;');
        w.faultPoint();
        w.emit(`if (cont !== undefined) { c.retired = r0 + n; c.rip = ${i.next}; cont(c, ${CostClass.Branch}, n >= max); }`);
        w.emit(w.exit(i.next));
      }
      break;
    }
    const e = emitInsn(w, i);
    if (k === 0) firstOverwrites = w.pending !== null && w.pending.kind <= PendingKind.Logic && i.k0 !== Opd.MEM && i.k1 !== Opd.MEM;
    const store = e.store;
    const onward = store === undefined ? '' : `if (${store.ea} < ${end} && ${store.ea} + ${store.size} > ${start}) ${w.exit(i.next)}`;
    if (k === insns.length - 1) {
      w.emit('n++;');
      w.faultPoint();
      w.emit(`if (cont !== undefined) { c.retired = r0 + n; c.rip = ${i.next}; cont(c, ${e.cost}, n >= max); }`);
      w.emit(w.exit(i.next));
    } else afterStep(w, i.next, e.cost, onward);
  }
  const source = w.source(loops ? `for (;;) {\n${w.lines.join('\n')}\n}` : w.lines.join('\n'));
  const h = flagHelpers();
  const factory = new Function(
    'load', 'store', 'commit', 'drainAll', 'fAdd', 'fSub', 'szp', 'cond', 'O', 'aluAdd', 'aluSub', 'wrapEa',
    `return function block_${start.toString(16).replace('-', 'm')}(c, max, cont, mem, tso) {\n${source}\n};`,
  ) as (...deps: unknown[]) => BlockFunction;
  const run = factory(load, store, commit, drainAll, h.fAdd, h.fSub, h.szp, h.cond, alu.newAluOut(), alu.add, alu.sub, wrapEa);
  return { start, end, bytes, insns, run };

  function branchTo(wr: BlockWriter, i: Insn, target: number, loop: boolean): void {
    if (loop && i.target === target) {
      // The jump back: the budget and the hook decide whether to go round again.
      wr.emit(`if (cont !== undefined) { c.retired = r0 + n; c.rip = ${target}; if (!cont(c, ${CostClass.Branch}, n >= max) || n >= max) ${wr.exit(target)} } else if (n >= max) ${wr.exit(target)}`);
      // At the loop head F must be whole, unless instruction 0 rewrites every status flag
      // before anything (a fault, a hook, an exit) can look at them.
      if (!firstOverwrites) wr.settle();
      wr.emit('continue;');
    } else {
      wr.emit(`if (cont !== undefined) { c.retired = r0 + n; c.rip = ${target}; cont(c, ${CostClass.Branch}, n >= max); }`);
      wr.emit(wr.exit(target));
    }
  }
}
