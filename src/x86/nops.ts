/**
 * Linux's x86-64 NOP table (arch/x86/include/asm/nops.h, `x86_nops`): the byte sequences the
 * kernel writes to pad a patch site. Seed 001 shows two of them: the native unlock is
 * `c6 07 00` + the 4-byte NOP, the paravirt unlock is a 5-byte CALL + the 2-byte NOP.
 */

/** BYTES_NOP1..BYTES_NOP8 (P6 NOPs), index = length. */
const X86_NOPS: readonly (readonly number[])[] = [
  [],
  [0x90],
  [0x66, 0x90],
  [0x0f, 0x1f, 0x00],
  [0x0f, 0x1f, 0x40, 0x00],
  [0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
  [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/** The longest single NOP Linux uses (ASM_NOP_MAX). */
export const ASM_NOP_MAX = 8;

/** The single Linux NOP instruction of `len` bytes (1..8). */
export function linuxNop(len: number): Uint8Array {
  if (!Number.isInteger(len) || len < 1 || len > ASM_NOP_MAX) {
    throw new RangeError(`no single Linux NOP has ${len} bytes (1..${ASM_NOP_MAX})`);
  }
  return Uint8Array.from(X86_NOPS[len]!);
}

/**
 * Fill `len` bytes with NOPs the way Linux's `add_nops()` does: as many ASM_NOP_MAX NOPs as fit,
 * then one NOP for the remainder.
 */
export function nopPadding(len: number): Uint8Array {
  if (!Number.isInteger(len) || len < 0) throw new RangeError(`bad NOP padding length ${len}`);
  const out = new Uint8Array(len);
  let at = 0;
  while (at < len) {
    const n = Math.min(ASM_NOP_MAX, len - at);
    out.set(X86_NOPS[n]!, at);
    at += n;
  }
  return out;
}
