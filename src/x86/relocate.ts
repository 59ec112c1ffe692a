/**
 * Relative branches moved to a new address. When Linux copies a replacement instruction from
 * `.altinstr_replacement` to its site, or generates a CALL/JMP to a function (`__text_gen_insn`,
 * arch/x86/include/asm/text-patching.h), the rel32/rel8 displacement must be recomputed so the
 * branch still reaches the same target: disp = target - (address + length).
 */

export const CALL_INSN_OPCODE = 0xe8;
export const JMP32_INSN_OPCODE = 0xe9;
export const JMP8_INSN_OPCODE = 0xeb;
export const RET_INSN_OPCODE = 0xc3;
export const INT3_INSN_OPCODE = 0xcc;

/** Whether `value` fits a signed 32-bit displacement. */
export function fitsRel32(value: number): boolean {
  return value >= -0x80000000 && value <= 0x7fffffff;
}

/** Whether `value` fits a signed 8-bit displacement. */
export function fitsRel8(value: number): boolean {
  return value >= -0x80 && value <= 0x7f;
}

/** The target of a rel32 branch whose displacement ends the `length`-byte instruction at `address`. */
export function rel32Target(bytes: Uint8Array, address: number, length: number): number {
  const at = length - 4;
  const disp = (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) | 0;
  return address + length + disp;
}

/** Write a little-endian s32 at `at`. */
export function putS32(bytes: Uint8Array, at: number, value: number): void {
  const v = value | 0;
  bytes[at] = v & 0xff;
  bytes[at + 1] = (v >>> 8) & 0xff;
  bytes[at + 2] = (v >>> 16) & 0xff;
  bytes[at + 3] = (v >>> 24) & 0xff;
}

/** Read a little-endian s32 at `at`. */
export function getS32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) | 0;
}

/**
 * `opcode rel32` at `address` reaching `target` (Linux `__text_gen_insn` for CALL/JMP32: 5 bytes).
 * Throws RangeError when the target is out of rel32 reach.
 */
export function encodeRel32(opcode: number, address: number, target: number): Uint8Array {
  const disp = target - (address + 5);
  if (!fitsRel32(disp)) throw new RangeError(`target ${target.toString(16)} out of rel32 reach from ${address.toString(16)}`);
  const out = new Uint8Array(5);
  out[0] = opcode;
  putS32(out, 1, disp);
  return out;
}

/**
 * Re-target the rel32 field at `dispAt` of an instruction copied from `from` to `to`, so it keeps
 * reaching the same place (the `*(s32 *)(insn_buff + 1) += replacement - instr` fix-up of
 * apply_alternatives). Mutates and returns `bytes`.
 */
export function relocateRel32(bytes: Uint8Array, dispAt: number, from: number, to: number): Uint8Array {
  putS32(bytes, dispAt, getS32(bytes, dispAt) + (from - to));
  return bytes;
}
