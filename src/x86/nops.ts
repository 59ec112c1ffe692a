/**
 * Linux's x86-64 NOP table (arch/x86/include/asm/nops.h, `x86_nops`): the byte sequences the
 * kernel writes to pad a patch site. Seed 001 shows two of them: the native unlock is
 * `c6 07 00` + the 4-byte NOP, the paravirt unlock is a 5-byte CALL + the 2-byte NOP.
 */

/**
 * BYTES_NOP1..BYTES_NOP11, index = length: the P6 NOPs up to 8 bytes; 9..11 prefix the 8-byte
 * one with CS (and 0x66) as Linux 6.5+ does (its ASM_NOP_MAX is 11; 6.1's is 8).
 */
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
  [0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/** The longest single NOP Linux 6.1 uses (ASM_NOP_MAX); the guest kernel and add_nops() pad with these. */
export const ASM_NOP_MAX = 8;
/** The longest single NOP of Linux 6.5+ (ASM_NOP_MAX there). */
export const ASM_NOP_MAX_6_5 = 11;

/** The single Linux NOP instruction of `len` bytes (1..max: 8 as in 6.1, 11 as in 6.5+). */
export function linuxNop(len: number, max = ASM_NOP_MAX): Uint8Array {
  if (!Number.isInteger(len) || len < 1 || len > max || len >= X86_NOPS.length) {
    throw new RangeError(`no single Linux NOP has ${len} bytes (1..${max})`);
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
