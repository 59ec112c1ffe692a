/**
 * Flag bookkeeping for the sequence generator: which status flags an instruction reads, writes
 * and leaves undefined, from iced-x86's per-instruction rflags info (plus the one SDM rule iced
 * does not model), in x86 RFLAGS bits.
 */
import { RflagsBits } from 'iced-x86';
import { Mem, type AsmReg, type Operand } from '../../src/x86/asm.ts';
import { createInstruction, select } from '../../src/x86/asm-match.ts';
import { Flag } from '../../src/x86/registers.ts';

/** One instruction of a sequence, as handed to `Asm.ins`. */
export interface SeqInsn { name: string; ops: Operand[]; lock?: boolean }

function fromIced(bits: number): number {
  let f = 0;
  if (bits & RflagsBits.OF) f |= Flag.OF;
  if (bits & RflagsBits.SF) f |= Flag.SF;
  if (bits & RflagsBits.ZF) f |= Flag.ZF;
  if (bits & RflagsBits.AF) f |= Flag.AF;
  if (bits & RflagsBits.CF) f |= Flag.CF;
  if (bits & RflagsBits.PF) f |= Flag.PF;
  return f;
}

export interface FlagEffect { read: number; modified: number; undefined: number }

/** Per-generator memo of flag effects: they depend on the form and, for shifts, the count. */
export class FlagInfo {
  private memo = new Map<string, FlagEffect>();
  of(insn: SeqInsn): FlagEffect {
    const shift = /^(shl|shr|sar|rol|ror|rcl|rcr)$/.test(insn.name);
    const key = insn.name + insn.ops.map((o) => (typeof o === 'number' || typeof o === 'bigint' ? (shift ? `#${o}` : '#') : o instanceof Mem ? `m${o.size}` : String(o))).join(',');
    const sel = select(insn.name, insn.ops); // throws AsmError for unencodable mixes (ah with REX)
    let e = this.memo.get(key);
    if (e) return e;
    const i = createInstruction(insn.name, sel.code, sel.kinds, sel.ops, () => 0x1000n, true);
    try {
      e = { read: fromIced(i.rflagsRead), modified: fromIced(i.rflagsModified), undefined: fromIced(i.rflagsUndefined) };
    } finally {
      i.free();
    }
    // SDM SAL/SAR/SHL/SHR: CF is undefined when the count is >= the operand width, which can
    // happen for 8- and 16-bit operands (the count is masked to 5 bits); iced does not model it.
    if (/^(shl|shr|sar)$/.test(insn.name)) {
      const size = opSize(insn.ops[0]!);
      const n = insn.ops[1]!;
      const count = typeof n === 'number' ? n & 0x1f : -1;
      if (size < 4 && (count < 0 || count >= size * 8)) e = { ...e, undefined: e.undefined | Flag.CF | Flag.OF };
    }
    // A count in CL may mask to 0, and then no flag changes: the instruction can leave undefined
    // flags undefined, so it defines nothing new (SDM: "If the count is 0, the flags are not affected").
    if (shift && insn.ops.length === 2 && typeof insn.ops[1] !== 'number' && typeof insn.ops[1] !== 'bigint') {
      e = { ...e, modified: 0 };
    }
    this.memo.set(key, e);
    return e;
  }
}

function opSize(o: Operand): number {
  return o instanceof Mem ? o.size : (o as AsmReg).size;
}
