/** Test helpers: bytes written out as hex, and little-endian immediates. */
export function hex(s: string): number[] {
  const t = s.replace(/\s+/g, '');
  if (t.length % 2 !== 0 || /[^0-9a-f]/i.test(t)) throw new Error(`bad hex '${s}'`);
  const out: number[] = [];
  for (let i = 0; i < t.length; i += 2) out.push(parseInt(t.slice(i, i + 2), 16));
  return out;
}

/** Little-endian bytes of a 32-bit value. */
export function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** rel32 of a branch whose next instruction is at `next`, to `target`. */
export function rel32(next: number, target: number): number[] {
  return le32((target - next) | 0);
}
