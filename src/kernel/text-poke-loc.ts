/**
 * struct text_poke_loc and the batch descriptor bp_desc (Linux 6.x arch/x86/kernel/alternative.c):
 * where they live in guest data, and text_poke_loc_init(), which decides once, before the batch is
 * published, how the INT3 handler will emulate each new instruction.
 */
import { DATA_BASE, TEXT_BASE } from './layout.ts';
import { decodeInsn } from '../x86/decode.ts';
import { formatOne } from '../x86/format.ts';
import { linuxNop } from '../x86/nops.ts';
import { TextPokeError } from './text-poke-errors.ts';

/** Data for text_poke_bp: bp_desc {vec, nr_entries, refs}, the sync acknowledgements, tp_vec. */
export const TEXT_POKE_DATA = DATA_BASE + 0x8000;
export const BP_DESC = { vec: TEXT_POKE_DATA, nrEntries: TEXT_POKE_DATA + 8, refs: TEXT_POKE_DATA + 12 } as const;
/** Counter the sync IPI handlers increment (on_each_cpu(..., wait=1)'s completion). */
export const SYNC_ACKS = TEXT_POKE_DATA + 0x40;
/**
 * tp_vec[]: TP_VEC_MAX entries of TP_LOC.size bytes, in its own 8 KiB (clear of v2's data at
 * +0x9000 and v1's at +0xc000). Linux 6.x: PAGE_SIZE / sizeof(struct text_poke_loc) = 4096 / 16.
 */
export const TP_VEC = DATA_BASE + 0xa000;
export const TP_VEC_MAX = 256;

/** Our struct text_poke_loc: rel_addr s32, disp s32, len u8, opcode u8, old u8, text[8] at +16. */
export const TP_LOC = { size: 32, relAddr: 0, disp: 4, len: 8, opcode: 9, old: 10, text: 16 } as const;
export const POKE_MAX_OPCODE_SIZE = 8;

/** Opcodes poke_int3_handler emulates (arch/x86/include/asm/text-patching.h). */
export enum Opcode {
  INT3 = 0xcc,
  RET = 0xc3,
  CALL = 0xe8,
  JMP32 = 0xe9,
  JMP8 = 0xeb,
}

/** One site of a batch: the new bytes for [address, address + bytes.length). */
export interface TextPatch {
  address: number;
  bytes: ArrayLike<number>;
}

/** A text_poke_loc as the patcher prepares it (TypeScript side of tp_vec). */
export interface TextPokeLoc {
  address: number;
  len: number;
  /** The opcode the INT3 handler switches on; not an Opcode when the instruction cannot be emulated. */
  opcode: number;
  disp: number;
  text: Uint8Array;
  /** The new instruction, for messages. */
  insn: string;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * text_poke_loc_init(): decode the new instruction and record how to emulate it. CALL and JMP keep
 * their displacement; NOP2/NOP5 become JMP8/JMP32 +0 (Linux emulates a NOP as a jump over it).
 * Anything else (the native unlock's `movb $0,(%rdi)`) Linux BUG()s on here; we keep its opcode so
 * the batch still runs and the INT3 handler meets it on another vCPU, which is what the test shows.
 */
export function textPokeLocInit(p: TextPatch): TextPokeLoc {
  const text = Uint8Array.from(p.bytes);
  const len = text.length;
  if (len < 1 || len > POKE_MAX_OPCODE_SIZE) throw new TextPokeError(`a text_poke_bp site is 1..${POKE_MAX_OPCODE_SIZE} bytes, not ${len}`);
  const insn = decodeInsn(text, p.address);
  const name = formatOne(text, p.address);
  const loc = { address: p.address, len, opcode: text[0]!, disp: 0, text, insn: name };
  switch (loc.opcode) {
    case Opcode.RET:
    case Opcode.JMP32:
    case Opcode.JMP8:
      // No fall-through into the rest of the site, so it may be padded with INT3.
      if (text.subarray(insn.len).some((b) => b !== Opcode.INT3)) throw new TextPokeError(`${name} at the start of a ${len}-byte site must be padded with int3`);
      break;
    case Opcode.INT3:
    case Opcode.CALL:
      if (insn.len !== len) throw new TextPokeError(`text_poke_bp writes one instruction per site: ${name} is ${insn.len} bytes, the site ${len}`);
      break;
    default:
      if (len === 2 && sameBytes(text, linuxNop(2))) return { ...loc, opcode: Opcode.JMP8 };
      if (len === 5 && sameBytes(text, linuxNop(5))) return { ...loc, opcode: Opcode.JMP32 };
      return loc; // not emulatable: poke_int3_handler BUGs when it meets it
  }
  if (loc.opcode !== Opcode.INT3 && loc.opcode !== Opcode.RET) {
    loc.disp = loc.opcode === Opcode.JMP8 ? (text[1]! << 24) >> 24 : (text[1]! | (text[2]! << 8) | (text[3]! << 16) | (text[4]! << 24));
  }
  return loc;
}

/** rel_addr: the site relative to the start of kernel text (Linux: relative to _stext). */
export function relAddr(address: number): number {
  return address - TEXT_BASE;
}
