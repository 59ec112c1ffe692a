/**
 * Arithmetic and flag math, exact for 8-, 16-, 32- and 64-bit operands (SDM Vol. 1 3.4.3,
 * Vol. 2 per-instruction "Flags Affected"). Values travel as unsigned 32-bit halves (`lo`, `hi`;
 * `hi` is 0 below 64 bits); results land in a caller-owned `AluOut` so the interpreter's hot
 * path allocates nothing. Hot path: keep these small and branch-light.
 */
import { Flag } from './registers.ts';

export interface AluOut {
  lo: number;
  hi: number;
  /** Status flags produced (a subset of STATUS_FLAGS; the caller merges them into RFLAGS). */
  flags: number;
}

export function newAluOut(): AluOut {
  return { lo: 0, hi: 0, flags: 0 };
}

const PARITY: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    let b = 0;
    for (let v = i; v; v >>= 1) b ^= v & 1;
    t[i] = b === 0 ? Flag.PF : 0;
  }
  return t;
})();

/** All-ones mask of an operand size below 64 bits. */
export function sizeMask(size: number): number {
  return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
}

function signBit(size: number): number {
  return size === 1 ? 0x80 : size === 2 ? 0x8000 : 0x80000000;
}

/** SF, ZF and PF of a result. */
export function szp(size: number, lo: number, hi: number): number {
  let f = PARITY[lo & 0xff]!;
  if (size === 8) {
    if ((lo | hi) === 0) f |= Flag.ZF;
    if (hi & 0x80000000) f |= Flag.SF;
  } else {
    if (lo === 0) f |= Flag.ZF;
    if (lo & signBit(size)) f |= Flag.SF;
  }
  return f;
}

/** ADD / ADC (cin = carry in). */
export function add(o: AluOut, size: number, aLo: number, aHi: number, bLo: number, bHi: number, cin: number): void {
  if (size === 8) {
    const l = aLo + bLo + cin;
    const lo = l >>> 0;
    const h = aHi + bHi + (l > 0xffffffff ? 1 : 0);
    const hi = h >>> 0;
    let f = szp(8, lo, hi) | ((aLo ^ bLo ^ lo) & Flag.AF);
    if (h > 0xffffffff) f |= Flag.CF;
    if ((aHi ^ hi) & (bHi ^ hi) & 0x80000000) f |= Flag.OF;
    o.lo = lo; o.hi = hi; o.flags = f;
    return;
  }
  const m = sizeMask(size);
  const r = aLo + bLo + cin;
  const lo = (r & m) >>> 0;
  let f = szp(size, lo, 0) | ((aLo ^ bLo ^ lo) & Flag.AF);
  if (r > m) f |= Flag.CF;
  if ((aLo ^ lo) & (bLo ^ lo) & signBit(size)) f |= Flag.OF;
  o.lo = lo; o.hi = 0; o.flags = f;
}

/** SUB / SBB / CMP (bin = borrow in). */
export function sub(o: AluOut, size: number, aLo: number, aHi: number, bLo: number, bHi: number, bin: number): void {
  if (size === 8) {
    const l = aLo - bLo - bin;
    const lo = l >>> 0;
    const h = aHi - bHi - (l < 0 ? 1 : 0);
    const hi = h >>> 0;
    let f = szp(8, lo, hi) | ((aLo ^ bLo ^ lo) & Flag.AF);
    if (h < 0) f |= Flag.CF;
    if ((aHi ^ bHi) & (aHi ^ hi) & 0x80000000) f |= Flag.OF;
    o.lo = lo; o.hi = hi; o.flags = f;
    return;
  }
  const m = sizeMask(size);
  const r = aLo - bLo - bin;
  const lo = (r & m) >>> 0;
  let f = szp(size, lo, 0) | ((aLo ^ bLo ^ lo) & Flag.AF);
  if (r < 0) f |= Flag.CF;
  if ((aLo ^ bLo) & (aLo ^ lo) & signBit(size)) f |= Flag.OF;
  o.lo = lo; o.hi = 0; o.flags = f;
}

/** AND / OR / XOR / TEST result flags: CF = OF = 0, AF left 0 (architecturally undefined). */
export function logicFlags(size: number, lo: number, hi: number): number {
  return szp(size, lo, hi);
}

/** Bit `k` (0..63) of a 64-bit value. */
function bit64(lo: number, hi: number, k: number): number {
  return k < 32 ? (lo >>> k) & 1 : (hi >>> (k - 32)) & 1;
}

function msb(size: number, lo: number, hi: number): number {
  return size === 8 ? hi >>> 31 : (lo & signBit(size)) ? 1 : 0;
}

/**
 * SHL/SHR/SAR by a non-zero masked count (the caller skips count 0, which changes nothing).
 * OF is the count-1 definition (undefined by the SDM for larger counts); AF is left 0.
 */
export function shift(o: AluOut, kind: 'shl' | 'shr' | 'sar', size: number, lo: number, hi: number, n: number): void {
  const bits = size * 8;
  let rl = 0, rh = 0, cf = 0, of = 0;
  if (size === 8) {
    if (kind === 'shl') {
      if (n < 32) { rh = ((hi << n) | (lo >>> (32 - n))) >>> 0; rl = (lo << n) >>> 0; }
      else { rh = (lo << (n - 32)) >>> 0; rl = 0; }
      cf = bit64(lo, hi, 64 - n);
      of = (rh >>> 31) ^ cf;
    } else if (kind === 'shr') {
      if (n < 32) { rl = ((lo >>> n) | (hi << (32 - n))) >>> 0; rh = hi >>> n; }
      else { rl = hi >>> (n - 32); rh = 0; }
      cf = bit64(lo, hi, n - 1);
      of = hi >>> 31;
    } else {
      if (n < 32) { rl = ((lo >>> n) | (hi << (32 - n))) >>> 0; rh = (hi >> n) >>> 0; }
      else { rl = (hi >> (n - 32)) >>> 0; rh = (hi >> 31) >>> 0; }
      cf = bit64(lo, hi, n - 1);
      of = 0;
    }
  } else {
    const m = sizeMask(size);
    const v = lo & m;
    if (kind === 'shl') {
      // n may exceed the width for 8/16-bit operands (count is masked to 5 bits).
      rl = n >= 32 ? 0 : ((v << n) & m) >>> 0;
      cf = n > bits ? 0 : n === bits ? v & 1 : (v >>> (bits - n)) & 1;
      of = msb(size, rl, 0) ^ cf;
    } else if (kind === 'shr') {
      rl = n >= 32 ? 0 : (v >>> n) >>> 0;
      cf = n > bits ? 0 : (v >>> (n - 1)) & 1;
      of = msb(size, v, 0);
    } else {
      const sv = size === 4 ? v | 0 : (v << (32 - bits)) >> (32 - bits);
      const k = n >= 32 ? 31 : n;
      rl = ((sv >> k) & m) >>> 0;
      cf = n > bits ? (sv >>> 31) & 1 : (sv >> (n - 1 >= 32 ? 31 : n - 1)) & 1;
      of = 0;
    }
  }
  let f = szp(size, rl, rh);
  if (cf) f |= Flag.CF;
  if (of) f |= Flag.OF;
  o.lo = rl; o.hi = rh; o.flags = f;
}

/**
 * ROL/ROR/RCL/RCR by a non-zero masked count; only CF and OF change (`o.flags` holds just those
 * two, and the caller merges them over the old RFLAGS). Rotates are rare, so BigInt is fine here.
 */
export function rotate(o: AluOut, kind: 'rol' | 'ror' | 'rcl' | 'rcr', size: number, lo: number, hi: number, count: number, cfIn: number): boolean {
  const bits = BigInt(size * 8);
  const mask = (1n << bits) - 1n;
  let v = (BigInt(hi >>> 0) << 32n | BigInt(lo >>> 0)) & mask;
  let cf = cfIn;
  let of = 0;
  const top = (x: bigint) => Number((x >> (bits - 1n)) & 1n);
  if (kind === 'rol' || kind === 'ror') {
    const n = BigInt(count) % bits;
    if (n !== 0n) v = kind === 'rol' ? ((v << n) | (v >> (bits - n))) & mask : ((v >> n) | (v << (bits - n))) & mask;
    if (kind === 'rol') { cf = Number(v & 1n); of = top(v) ^ cf; }
    else { cf = top(v); of = top(v) ^ Number((v >> (bits - 2n)) & 1n); }
  } else {
    // tempCOUNT = masked count MOD (width + 1) for 8/16-bit operands: a full circle leaves the value
    // and CF, but the CPU still writes OF = MSB(dest) XOR CF (measured against the real CPU).
    const n = size < 4 ? count % (size * 8 + 1) : count;
    if (kind === 'rcl') {
      for (let i = 0; i < n; i++) { const out = top(v); v = ((v << 1n) | BigInt(cf)) & mask; cf = out; }
      of = top(v) ^ cf;
    } else if (n === 0) {
      // A full circle: the CPU reports OF as the XOR of the two top bits of the (unchanged) result.
      of = top(v) ^ Number((v >> (bits - 2n)) & 1n);
    } else {
      of = top(v) ^ cf;
      for (let i = 0; i < n; i++) { const out = Number(v & 1n); v = (v >> 1n) | (BigInt(cf) << (bits - 1n)); cf = out; }
    }
  }
  o.lo = Number(v & 0xffffffffn); o.hi = Number(v >> 32n);
  o.flags = (cf ? Flag.CF : 0) | (of ? Flag.OF : 0);
  return true;
}

/** Evaluate condition code `cc` (x86 order O, NO, B, AE, E, NE, BE, A, S, NS, P, NP, L, GE, LE, G). */
export function condition(cc: number, f: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = (f & Flag.OF) !== 0; break;
    case 1: r = (f & Flag.CF) !== 0; break;
    case 2: r = (f & Flag.ZF) !== 0; break;
    case 3: r = (f & (Flag.CF | Flag.ZF)) !== 0; break;
    case 4: r = (f & Flag.SF) !== 0; break;
    case 5: r = (f & Flag.PF) !== 0; break;
    case 6: r = ((f & Flag.SF) !== 0) !== ((f & Flag.OF) !== 0); break;
    default: r = (f & Flag.ZF) !== 0 || ((f & Flag.SF) !== 0) !== ((f & Flag.OF) !== 0); break;
  }
  return (cc & 1) === 0 ? r : !r;
}

/** Two unsigned halves → BigInt (for multiply/divide, which are rare). */
export function toBig(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Sign-extend an unsigned value of `size` bytes held in halves to a signed BigInt. */
export function toBigSigned(size: number, lo: number, hi: number): bigint {
  return BigInt.asIntN(size * 8, toBig(lo, hi));
}
