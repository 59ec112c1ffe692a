/**
 * Instruction fetch: the decode cache and the cross-modifying-code rule (DESIGN.md §2,
 * Intel SDM 8.1.3, AMD APM 7.6.1; seeds 001 and 003).
 *
 * When vCPU c fetches [A, A+L): bytes c wrote itself are fine (self-modifying code is snooped);
 * a byte another agent wrote after c's last serializing event is unsynchronized. With none, run.
 * If the only unsynchronized byte is A and the change is to or from 0xCC, both the old and the new
 * instruction are legal outcomes (a choice). Anything else is hazard `cmc-unsynchronized`.
 *
 * A vCPU's fetch sees its own buffered stores (SDM Vol. 3A 8.1.3, self-modifying code: a store,
 * then a jump to it, and the new code runs on the same CPU; the store buffer is snooped), so
 * those bytes come from the buffer; other vCPUs see them only once they drain, under the rule
 * above. A vCPU with an empty store buffer takes the same path as before.
 */
import { decodeInsn } from '../x86/decode.ts';
import { specialize } from './fast-paths.ts';
import type { Insn } from '../x86/insn.ts';
import { Perm, PAGE_SIZE, type Memory, type Page } from './memory.ts';
import type { ByteOrigin, Hazard } from './events.ts';
import type { BufferedStore } from './vcpu.ts';
import { MachineFault } from './errors.ts';

export interface DecodeEntry {
  /** The page's content version when this entry was last known to match memory. */
  gen: number;
  insn: Insn;
  /** The instruction runs into the next page: always validated the slow way. */
  crossPage: boolean;
  /**
   * The page that made this entry and alone may move its `gen` on. A copy-on-write copy shares
   * its original's entries; revalidating one in place would make every other fork's copy (and the
   * original) miss and revalidate it back, each one evicting the others' (issue 12).
   */
  readonly owner: Page;
}

const MAX_INSN = 15;

/** Up to 15 committed bytes from `addr`, stopping at the first unmapped or non-executable byte. */
function fetchWindow(mem: Memory, addr: number): Uint8Array {
  const out = new Uint8Array(MAX_INSN);
  let n = 0;
  while (n < MAX_INSN) {
    const p = mem.page(addr + n);
    if (!p || !(p.perms & Perm.X)) break;
    const o = addr + n - p.base;
    const take = Math.min(MAX_INSN - n, PAGE_SIZE - o);
    out.set(p.data.subarray(o, o + take), n);
    n += take;
  }
  return out.subarray(0, n);
}

/**
 * Does committed executable memory at `addr` still hold `bytes`? Reads the pages in place (the
 * revalidation after a text write runs on every fetch a rewrite touched: no window copy).
 */
function memoryHolds(mem: Memory, addr: number, bytes: Uint8Array): boolean {
  let p: Page | undefined;
  for (let i = 0; i < bytes.length; i++) {
    const a = addr + i;
    if (p === undefined || a - p.base >= PAGE_SIZE) {
      p = mem.page(a);
      if (p === undefined || !(p.perms & Perm.X)) return false;
    }
    if (p.data[a - p.base] !== bytes[i]) return false;
  }
  return true;
}

/** This page's own entry table, copied from the one it shares with its original on first change. */
function ownTable(p: Page): (DecodeEntry | undefined)[] {
  if (!p.decodedOwned) {
    p.decoded = p.decoded!.slice();
    p.decodedOwned = true;
  }
  return p.decoded!;
}

/** The cached (or freshly decoded) instruction at `addr`, with no hazard check. */
export function decodeAt(mem: Memory, addr: number): Insn | undefined {
  const p = mem.page(addr);
  if (!p || !(p.perms & Perm.X)) return undefined;
  const o = addr - p.base;
  const e = p.decoded![o];
  if (e && e.gen === p.gen && !e.crossPage) return e.insn;
  if (e && memoryHolds(mem, addr, e.insn.bytes)) {
    if (e.crossPage) return e.insn;
    if (e.owner === p) e.gen = p.gen;
    else ownTable(p)[o] = { gen: p.gen, insn: e.insn, crossPage: false, owner: p };
    return e.insn;
  }
  const insn = knownVariant(mem, addr) ?? decodeNew(mem, addr);
  if (insn === undefined) return undefined;
  ownTable(p)[o] = { gen: p.gen, insn, crossPage: o + insn.len > PAGE_SIZE, owner: p };
  return insn;
}

/** Instructions kept per address for the lineage (a site's old, INT3 and new forms, and a few more). */
const MAX_VARIANTS = 8;

/** An instruction some fork of this lineage decoded at `addr` whose bytes memory holds now. */
function knownVariant(mem: Memory, addr: number): Insn | undefined {
  const known = mem.lineage.variants.get(addr);
  if (known === undefined) return undefined;
  for (let i = 0; i < known.length; i++) if (memoryHolds(mem, addr, known[i]!.bytes)) return known[i];
  return undefined;
}

function decodeNew(mem: Memory, addr: number): Insn | undefined {
  const window = fetchWindow(mem, addr);
  if (window.length === 0) return undefined;
  return decodeWindow(mem, window, addr);
}

/** Does `window` begin with `bytes`? */
function startsWith(window: Uint8Array, bytes: Uint8Array): boolean {
  if (bytes.length > window.length) return false;
  for (let i = 0; i < bytes.length; i++) if (window[i] !== bytes[i]) return false;
  return true;
}

/**
 * The instruction `window` (bytes from `addr` on, not necessarily memory's: a window with this
 * vCPU's buffered stores forwarded, or with the old first byte of an INT3 write) begins with: one
 * the lineage decoded before at `addr` when its bytes lead the window (an instruction is a
 * function of its bytes and address), else a fresh decode, kept for the lineage. A text_poke_bp
 * run decodes the same old and forwarded forms in every fork (issue 12).
 */
function decodeWindow(mem: Memory, window: Uint8Array, addr: number): Insn {
  const variants = mem.lineage.variants;
  const known = variants.get(addr);
  if (known !== undefined) for (let i = 0; i < known.length; i++) if (startsWith(window, known[i]!.bytes)) return known[i]!;
  const insn = decodeInsn(window, addr);
  insn.fast = specialize(insn);
  if (known === undefined) variants.set(addr, [insn]);
  else if (known.length < MAX_VARIANTS) known.push(insn);
  return insn;
}

function origin(mem: Memory, addr: number, offset: number): ByteOrigin & { prev: number } {
  const p = mem.page(addr + offset)!;
  const o = addr + offset - p.base;
  return { offset, value: p.data[o]!, writer: p.writer![o]!, seq: p.seq![o]!, prev: p.prev![o]! };
}

const NONE: readonly (ByteOrigin & { prev: number })[] = [];

/**
 * Byte offsets in [from, to) that `cpu` has not synchronized with; offsets `own` marks come from
 * the vCPU's own store buffer and are always fine. Allocates only when some byte is.
 */
function unsynchronized(mem: Memory, addr: number, from: number, to: number, cpu: number, serializedAt: number, own?: Uint8Array): readonly (ByteOrigin & { prev: number })[] {
  let out: (ByteOrigin & { prev: number })[] | undefined;
  for (let i = from; i < to; i++) {
    if (own !== undefined && own[i] === 1) continue;
    const p = mem.page(addr + i)!;
    const o = addr + i - p.base;
    if (p.seq![o]! > serializedAt && p.writer![o] !== cpu) (out ??= []).push(origin(mem, addr, i));
  }
  return out ?? NONE;
}

/**
 * The CMC rule's common answer after a text write, without allocating: no byte of
 * [o, o+len) of page `p` was written by another agent after `serializedAt`.
 */
function synchronizedIn(p: Page, o: number, len: number, cpu: number, serializedAt: number): boolean {
  const seq = p.seq!, writer = p.writer!;
  for (let i = o; i < o + len; i++) if (seq[i]! > serializedAt && writer[i] !== cpu) return false;
  return true;
}

/** Does a buffered store cover any byte of [addr, addr+len)? */
function overlaps(sb: readonly BufferedStore[], addr: number, len: number): boolean {
  for (let k = 0; k < sb.length; k++) {
    const s = sb[k]!;
    if (s.addr < addr + len && addr < s.addr + s.size) return true;
  }
  return false;
}

export interface FetchContext {
  readonly memory: Memory;
  /** Set when fetch returns null: the hazard that forbids the fetch. */
  fetchHazard: Hazard | null;
  /** Old (0) or new (1) at a legal INT3 first-byte fetch. */
  chooseOldNew(cpu: number, address: number): number;
}

/**
 * Fetch the instruction at `rip` for vCPU `cpu`, whose store buffer is `sb`: the decoded
 * instruction to execute, or null with `ctx.fetchHazard` set to the hazard that forbids it.
 * Throws MachineFault when nothing executable is there. Hot path: the first lines are the common
 * case; an empty store buffer costs one length test.
 */
export function fetch(ctx: FetchContext, cpu: number, serializedAt: number, rip: number, sb: readonly BufferedStore[]): Insn | null {
  const mem = ctx.memory;
  const p = mem.page(rip);
  if (p !== undefined && (p.perms & Perm.X) !== 0) {
    const o = rip - p.base;
    const e = p.decoded![o];
    if (e !== undefined && e.gen === p.gen && !e.crossPage && (sb.length === 0 || !overlaps(sb, rip, e.insn.len))) {
      // A vCPU that has not serialized since a write to this page checks the instruction's own
      // bytes (what fetchSlow's rule would find with nothing forwarded), allocation-free.
      if (p.lastWriteSeq <= serializedAt || synchronizedIn(p, o, e.insn.len, cpu, serializedAt)) return e.insn;
    }
  }
  return fetchSlow(ctx, p, cpu, serializedAt, rip, sb);
}

/**
 * The fetch window with this vCPU's buffered stores forwarded (newest wins), and which offsets
 * they cover; undefined when none covers the window.
 */
function forwarded(mem: Memory, rip: number, sb: readonly BufferedStore[]): { window: Uint8Array; own: Uint8Array } | undefined {
  if (sb.length === 0 || !overlaps(sb, rip, MAX_INSN)) return undefined;
  const window = fetchWindow(mem, rip).slice();
  const own = new Uint8Array(window.length);
  for (const s of sb) {
    for (let j = 0; j < s.size; j++) {
      const i = s.addr + j - rip;
      if (i < 0 || i >= window.length) continue;
      window[i] = j < 4 ? (s.lo >>> (8 * j)) & 0xff : (s.hi >>> (8 * (j - 4))) & 0xff;
      own[i] = 1;
    }
  }
  return { window, own };
}

function fetchSlow(ctx: FetchContext, p: Page | undefined, cpu: number, serializedAt: number, rip: number, sb: readonly BufferedStore[]): Insn | null {
  const mem = ctx.memory;
  if (!p) throw new MachineFault('page-fault', cpu, rip, 'instruction fetch from unmapped memory');
  if (!(p.perms & Perm.X)) throw new MachineFault('protection', cpu, rip, 'instruction fetch from a non-executable page');
  const fw = forwarded(mem, rip, sb);
  let insn: Insn;
  if (fw === undefined) insn = decodeAt(mem, rip)!;
  else {
    // Not in the page's cache (it holds what memory holds: these bytes are this vCPU's alone),
    // but the lineage may know the instruction they make.
    insn = decodeWindow(mem, fw.window, rip);
  }
  const own = fw?.own;
  const bad = unsynchronized(mem, rip, 0, insn.len, cpu, serializedAt, own);
  if (bad.length === 0) return insn;
  const first = bad[0]!;
  if (bad.length === 1 && first.offset === 0 && (first.value === 0xcc || first.prev === 0xcc)) {
    // SDM 8.1.3 allows exactly this: a single-byte INT3 write to the first byte. The CPU may run
    // the old or the new instruction, so both must be safe; the old one must be synchronized too.
    const window = (fw?.window ?? fetchWindow(mem, rip)).slice();
    window[0] = first.prev;
    const old = decodeWindow(mem, window, rip);
    const oldBad = unsynchronized(mem, rip, 1, old.len, cpu, serializedAt, own);
    if (oldBad.length === 0) return ctx.chooseOldNew(cpu, rip) === 0 ? old : insn;
  }
  ctx.fetchHazard = {
    kind: 'cmc-unsynchronized',
    cpu,
    address: rip,
    bytes: Array.from(insn.bytes),
    unsynchronized: bad.map(({ offset, value, writer, seq }) => ({ offset, value, writer, seq })),
    serializedAt,
  };
  return null;
}

/** Bytes of the instruction at `addr` now (for return records); empty when nothing decodes there. */
export function instructionBytesAt(mem: Memory, addr: number): Uint8Array {
  return decodeAt(mem, addr)?.bytes ?? new Uint8Array(0);
}

/** True when any byte of [addr, addr+len) was written after text write sequence number `since`. */
export function rewrittenSince(mem: Memory, addr: number, len: number, since: number): boolean {
  for (let i = 0; i < len; i++) {
    const p = mem.page(addr + i);
    if (!p || !p.seq) continue;
    if (p.lastWriteSeq <= since) continue;
    if (p.seq[addr + i - p.base]! > since) return true;
  }
  return false;
}
