/**
 * Data memory access under x86-TSO (DESIGN.md §2): a vCPU's stores go to its FIFO store buffer;
 * its own loads see its buffered stores first; other vCPUs see a store only when it drains.
 * Locked instructions, XCHG with memory, MFENCE and serializing instructions drain the buffer.
 * Hot path: the empty-buffer load and the non-text store are the common cases.
 */
import { Perm, PAGE_SIZE, type Memory } from './memory.ts';
import { MachineFault } from './errors.ts';
import type { Vcpu } from './vcpu.ts';
import { hexAddress } from '../x86/format.ts';

/** Two unsigned 32-bit halves, the carrier for loaded values. */
export interface Halves {
  lo: number;
  hi: number;
}

/** Store buffer capacity (Skylake has 56 entries); a full buffer drains its oldest store first. */
export const STORE_BUFFER_CAPACITY = 56;

function loadCommitted(mem: Memory, c: Vcpu, addr: number, size: number, out: Halves): void {
  const p = mem.page(addr);
  if (p !== undefined) {
    const o = addr - p.base;
    if (o + size <= PAGE_SIZE) {
      const d = p.data;
      if (size === 1) { out.lo = d[o]!; out.hi = 0; return; }
      if (size === 2) { out.lo = d[o]! | (d[o + 1]! << 8); out.hi = 0; return; }
      const lo = (d[o]! | (d[o + 1]! << 8) | (d[o + 2]! << 16) | (d[o + 3]! << 24)) >>> 0;
      out.lo = lo;
      out.hi = size === 8 ? (d[o + 4]! | (d[o + 5]! << 8) | (d[o + 6]! << 16) | (d[o + 7]! << 24)) >>> 0 : 0;
      return;
    }
  }
  // Crossing a page boundary, or unmapped: byte by byte.
  let lo = 0, hi = 0;
  for (let i = 0; i < size; i++) {
    const q = mem.page(addr + i);
    if (!q) throw new MachineFault('page-fault', c.id, c.rip, `read of unmapped address ${hexAddress(addr + i)}`);
    const b = q.data[addr + i - q.base]!;
    if (i < 4) lo |= b << (8 * i); else hi |= b << (8 * (i - 4));
  }
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
}

/** Load `size` bytes as this vCPU sees them (its own buffered stores forwarded). */
export function load(mem: Memory, c: Vcpu, addr: number, size: number, out: Halves): void {
  if (mem.footprint !== undefined) mem.footprint.load(c, addr, size);
  loadCommitted(mem, c, addr, size, out);
  const sb = c.storeBuffer;
  if (sb.length === 0) return;
  // Most loads overlap no buffered store (a loop's loads and stores at other addresses): one
  // range test per store before the byte-by-byte forwarding below.
  let hit = false;
  for (let k = 0; k < sb.length; k++) {
    const s = sb[k]!;
    if (s.addr < addr + size && addr < s.addr + s.size) { hit = true; break; }
  }
  if (!hit) return;
  // Forwarding: the newest buffered store covering each byte wins.
  let lo = out.lo, hi = out.hi;
  for (let i = 0; i < size; i++) {
    const a = addr + i;
    for (let k = sb.length - 1; k >= 0; k--) {
      const s = sb[k]!;
      const off = a - s.addr;
      if (off >= 0 && off < s.size) {
        const b = off < 4 ? (s.lo >>> (8 * off)) & 0xff : (s.hi >>> (8 * (off - 4))) & 0xff;
        if (i < 4) lo = (lo & ~(0xff << (8 * i))) | (b << (8 * i));
        else hi = (hi & ~(0xff << (8 * (i - 4)))) | (b << (8 * (i - 4)));
        break;
      }
    }
  }
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
}

/** Write a store to memory now (drain, or a locked/unbuffered store). */
export function commit(mem: Memory, cpu: number, rip: number, addr: number, size: number, lo: number, hi: number): void {
  if (mem.footprint !== undefined) mem.footprint.write(addr, size);
  const p = mem.writablePage(addr);
  if (p !== undefined && !p.writer && (p.perms & Perm.W) !== 0) {
    const o = addr - p.base;
    if (o + size <= PAGE_SIZE) {
      const d = p.data;
      d[o] = lo;
      if (size >= 2) d[o + 1] = lo >>> 8;
      if (size >= 4) { d[o + 2] = lo >>> 16; d[o + 3] = lo >>> 24; }
      if (size === 8) { d[o + 4] = hi; d[o + 5] = hi >>> 8; d[o + 6] = hi >>> 16; d[o + 7] = hi >>> 24; }
      return;
    }
  }
  for (let i = 0; i < size; i++) {
    const b = i < 4 ? (lo >>> (8 * i)) & 0xff : (hi >>> (8 * (i - 4))) & 0xff;
    if (!mem.commitByte(addr + i, b, cpu, false)) {
      const q = mem.page(addr + i);
      const why = q ? 'write to a read-only page' : 'write to unmapped memory';
      throw new MachineFault(q ? 'protection' : 'page-fault', cpu, rip, `${why} at ${hexAddress(addr + i)}`);
    }
  }
}

/** Check that a store can land (so faults are raised at the store, not at a later drain). */
function checkWritable(mem: Memory, c: Vcpu, addr: number, size: number): void {
  const p = mem.page(addr);
  if (p !== undefined && (p.perms & Perm.W) !== 0 && addr - p.base + size <= PAGE_SIZE) return;
  for (let i = 0; i < size; i++) {
    const q = mem.page(addr + i);
    if (!q) throw new MachineFault('page-fault', c.id, c.rip, `write to unmapped memory at ${hexAddress(addr + i)}`);
    if (!(q.perms & Perm.W)) throw new MachineFault('protection', c.id, c.rip, `write to a read-only page at ${hexAddress(addr + i)}`);
  }
}

/** A store: buffered under TSO, committed at once otherwise (sequential consistency). */
export function store(mem: Memory, c: Vcpu, tso: boolean, addr: number, size: number, lo: number, hi: number): void {
  if (!tso) {
    commit(mem, c.id, c.rip, addr, size, lo, hi);
    return;
  }
  checkWritable(mem, c, addr, size);
  const sb = c.storeBuffer;
  if (sb.length >= STORE_BUFFER_CAPACITY) drainOne(mem, c);
  if (mem.footprint !== undefined) mem.footprint.buffer(c.id);
  sb.push({ addr, size, lo, hi, time: c.time });
}

/** Commit the oldest buffered store. */
export function drainOne(mem: Memory, c: Vcpu): void {
  if (mem.footprint !== undefined) mem.footprint.drain(c.id, c.storeBuffer.length > 0 ? 1 : 0);
  const s = c.storeBuffer.shift();
  if (s) commit(mem, c.id, c.rip, s.addr, s.size, s.lo, s.hi);
}

/** Commit every buffered store, oldest first (locked ops, MFENCE, serializing instructions). */
export function drainAll(mem: Memory, c: Vcpu): void {
  const sb = c.storeBuffer;
  // Recorded even when empty: a drain-all disables the vCPU's next drain, whichever comes first.
  if (mem.footprint !== undefined) mem.footprint.drain(c.id, sb.length);
  if (sb.length === 0) return;
  for (const s of sb) commit(mem, c.id, c.rip, s.addr, s.size, s.lo, s.hi);
  sb.length = 0;
}

/**
 * A serializing event on `c` (CPUID, SERIALIZE, IRET, serializing WRMSR, sync_core()): drain the
 * store buffer, then synchronize with every text write so far (SDM 8.1.3).
 */
export function serialize(mem: Memory, c: Vcpu): void {
  drainAll(mem, c);
  if (mem.footprint !== undefined) mem.footprint.serialize();
  c.serializedSeq = mem.textSeq;
}
