/**
 * Sparse guest-physical memory in 4 KiB pages with permissions, copy-on-write forks, and, for
 * executable pages, a per-byte record of who wrote each byte last, when (the global text write
 * sequence number), and what it held before: the facts the cross-modifying-code rule needs
 * (DESIGN.md §2; Intel SDM 8.1.3).
 */
import { MachineConfigError } from './errors.ts';
import type { DecodeEntry } from './decode-cache.ts';
import type { Insn } from '../x86/insn.ts';
import { hexAddress } from '../x86/format.ts';
import type { FootprintRecorder } from './footprint.ts';
import type { CompiledBlock } from './jit/compile.ts';
import { PageArena } from './page-arena.ts';

export const PAGE_SIZE = 4096;

export const enum Perm {
  R = 1,
  W = 2,
  X = 4,
}

/** Writer id for bytes the loader placed before any vCPU ran. */
export const WRITER_LOADER = -1;
/** Writer id for bytes the hypervisor rewrote behind the guest's back (seed 003). */
export const WRITER_HOST = -2;

/** State shared by a machine and all its forks (content versions for the decode cache). */
export interface Lineage {
  generation: number;
  /**
   * Instructions decoded at each address in any fork, so that forks rewriting the same site the
   * same way decode the new bytes once between them (decode-cache.ts; instructions are immutable).
   */
  readonly variants: Map<number, Insn[]>;
  /** Compiled blocks by start address, shared by the forks like `variants` (src/machine/jit/tier.ts). */
  readonly blocks: Map<number, CompiledBlock[]>;
  /** Where the pages that forks create or copy get their buffers (page-arena.ts). */
  readonly arena: PageArena;
}

export class Page {
  /** Monotonic, lineage-unique content version: changes on every write, so decode-cache entries can be validated in one compare. */
  gen: number;
  /** Highest text write sequence number of any byte here (0 = never written since load). */
  lastWriteSeq = 0;
  /** Per-byte last writer (vCPU id, WRITER_LOADER or WRITER_HOST); executable pages only. */
  writer: Int16Array | null = null;
  /** Per-byte text write sequence number of the last write. */
  seq: Float64Array | null = null;
  /** Per-byte value before the last write (for the INT3 first-byte exception). */
  prev: Uint8Array | null = null;
  /** Decoded instructions starting at each offset; a COW copy shares its original's until it changes one (entries validate themselves). */
  decoded: (DecodeEntry | undefined)[] | null = null;
  /** False while `decoded` is still the original's table (decode-cache.ts copies it on first change). */
  decodedOwned = true;
  /**
   * False while `writer`, `seq` and `prev` are still the original's (a copy made for a loader
   * write or a permission change reads them as they were): copied at the first tracked write.
   */
  trackingOwned = true;

  constructor(
    readonly base: number,
    public perms: number,
    public data: Uint8Array,
    public owner: object,
    gen: number,
    private readonly arena: PageArena,
  ) {
    this.gen = gen;
    if (perms & Perm.X) this.enableTextTracking();
  }

  /** Make `writer`, `seq` and `prev` this page's own before a tracked write changes them. */
  ownTracking(): void {
    if (this.trackingOwned) return;
    const a = this.arena;
    const writer = a.int16(PAGE_SIZE), seq = a.float64(PAGE_SIZE), prev = a.bytes(PAGE_SIZE);
    writer.set(this.writer!);
    seq.set(this.seq!);
    prev.set(this.prev!);
    this.writer = writer;
    this.seq = seq;
    this.prev = prev;
    this.trackingOwned = true;
  }

  enableTextTracking(): void {
    if (this.writer) return;
    const a = this.arena;
    this.writer = a.int16(PAGE_SIZE).fill(WRITER_LOADER);
    this.seq = a.float64(PAGE_SIZE);
    this.prev = a.bytes(PAGE_SIZE);
    // Packed, not holey-sparse: the fetch fast path indexes it every instruction.
    this.decoded = new Array<DecodeEntry | undefined>(PAGE_SIZE).fill(undefined);
  }

  clone(owner: object): Page {
    const data = this.arena.bytes(PAGE_SIZE);
    data.set(this.data);
    const p = new Page(this.base, this.perms & ~Perm.X, data, owner, this.gen, this.arena);
    p.perms = this.perms;
    p.lastWriteSeq = this.lastWriteSeq;
    if (this.writer) {
      p.writer = this.writer;
      p.seq = this.seq;
      p.prev = this.prev;
      p.trackingOwned = false;
      p.decoded = this.decoded;
      p.decodedOwned = false;
    }
    return p;
  }
}

export function pageNumber(addr: number): number {
  return Math.floor(addr / PAGE_SIZE);
}

/** x86-64 canonical address check (48-bit virtual addresses, sign-extended). */
export function isCanonical(addr: number): boolean {
  return addr >= -0x800000000000 && addr < 0x800000000000;
}

function parsePerms(perms: string | number): number {
  if (typeof perms === 'number') return perms;
  let p = 0;
  for (const ch of perms) {
    if (ch === 'r') p |= Perm.R;
    else if (ch === 'w') p |= Perm.W;
    else if (ch === 'x') p |= Perm.X;
    else if (ch !== '-') throw new MachineConfigError(`bad permission string '${perms}' (use letters r, w, x)`);
  }
  return p | Perm.R;
}

/** Entries in the page lookup cache (direct-mapped by page number). */
const TLB_SIZE = 64;

/** A mapped range of pages, materialised one page at a time when first touched. */
interface Region {
  readonly first: number;
  readonly last: number;
  readonly perms: number;
  /** Initial contents from `contentsAt` on (mapContents), copied into a page when it is first touched; zeros elsewhere. */
  readonly contents?: Uint8Array;
  readonly contentsAt?: number;
}

/**
 * Host bytes a page costs once touched: its data, plus for an executable page the per-byte
 * writer, write sequence, previous value and decoded-instruction slot (the CMC bookkeeping).
 */
function residentCost(perms: number): number {
  return perms & Perm.X ? PAGE_SIZE * (1 + 2 + 8 + 1 + 8) : PAGE_SIZE;
}

/** Default bound on touched memory (host bytes): a scenario may map far more, but not touch it. */
export const DEFAULT_RESIDENT_LIMIT = 256 * 1024 * 1024;

export class Memory {
  private pages: Map<number, Page>;
  /** A direct-mapped cache of page lookups; cleared whenever the page table changes. Hot path. */
  private readonly tlbNo = new Float64Array(TLB_SIZE).fill(NaN);
  private readonly tlbPage: (Page | undefined)[] = new Array<Page | undefined>(TLB_SIZE).fill(undefined);
  /** Copy-on-write ownership token: a page whose owner is not this token is shared and copied before writing. */
  private token: object = {};
  /** Global text write sequence number: increments once per committed write to an executable page. */
  textSeq = 0;
  /** Set by an explorer to record what each action touches (src/machine/footprint.ts); forks start without. */
  footprint: FootprintRecorder | undefined = undefined;
  /** Mapped ranges, newest last (a later map of the same page wins); pages are created when first touched. */
  private regions: Region[] = [];
  /** Host bytes of the pages touched so far (residentCost each), bounded by residentLimit. */
  private residentBytes = 0;

  constructor(
    readonly lineage: Lineage = { generation: 0, variants: new Map(), blocks: new Map(), arena: new PageArena() },
    pages?: Map<number, Page>,
    /** Host bytes this memory may touch before refusing with MachineConfigError (a 1 GiB region is fine untouched). */
    readonly residentLimit = DEFAULT_RESIDENT_LIMIT,
  ) {
    this.pages = pages ?? new Map();
  }

  /** Map [addr, addr+size) rounded out to whole pages, zero-filled; pages cost memory only once touched. */
  map(addr: number, size: number, perms: string | number): void {
    if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(size) || size <= 0) {
      throw new MachineConfigError(`cannot map ${size} bytes at ${addr}: address and size must be integers, size > 0`);
    }
    if (!isCanonical(addr) || !isCanonical(addr + size - 1)) {
      throw new MachineConfigError(`cannot map at ${hexAddress(addr)}: not a canonical x86-64 address`);
    }
    const p = parsePerms(perms);
    const first = pageNumber(addr), last = pageNumber(addr + size - 1);
    // Pages already touched change permissions now; the rest are created with the region's.
    for (const [n, existing] of this.pages) {
      if (n < first || n > last) continue;
      const own = this.owned(n, existing);
      const before = residentCost(own.writer ? Perm.X : 0);
      own.perms = p;
      if (p & Perm.X) own.enableTextTracking();
      this.residentBytes += residentCost(own.writer ? Perm.X : 0) - before;
    }
    this.regions = [...this.regions, { first, last, perms: p }];
    this.flushTlb();
  }

  /**
   * Map `bytes` at `addr` (rounded out to whole pages, zeros around them) as loader-written
   * contents that are copied into each page only when it is first touched: a 14 MiB kernel text
   * costs host memory for the pages a run reaches, not for all of it. The caller must not change
   * `bytes` afterwards.
   */
  mapContents(addr: number, bytes: Uint8Array, perms: string | number): void {
    this.map(addr, Math.max(1, bytes.length), perms);
    const r = this.regions[this.regions.length - 1]!;
    // A page touched before this call keeps its bytes (map changed only its permissions); write
    // the contents there now, as a loader would.
    for (const n of this.pages.keys()) {
      if (n < r.first || n > r.last) continue;
      const lo = Math.max(addr, n * PAGE_SIZE), hi = Math.min(addr + bytes.length, (n + 1) * PAGE_SIZE);
      if (lo < hi) this.writeBytes(lo, bytes.subarray(lo - addr, hi - addr));
    }
    this.regions = [...this.regions.slice(0, -1), { ...r, contents: bytes, contentsAt: addr }];
  }

  /** The region that maps page `n` (the newest one, as a later map wins), if any. */
  private regionOf(n: number): Region | undefined {
    for (let i = this.regions.length - 1; i >= 0; i--) {
      const r = this.regions[i]!;
      if (n >= r.first && n <= r.last) return r;
    }
    return undefined;
  }

  isMapped(addr: number): boolean {
    const n = pageNumber(addr);
    return this.pages.has(n) || this.regionOf(n) !== undefined;
  }

  /** Create mapped page `n` on first touch, within the resident limit; undefined when unmapped. */
  private materialize(n: number): Page | undefined {
    const r = this.regionOf(n);
    if (r === undefined) return undefined;
    const cost = residentCost(r.perms);
    if (this.residentBytes + cost > this.residentLimit) {
      throw new MachineConfigError(
        `touching ${hexAddress(n * PAGE_SIZE)} would take more than the resident memory limit of ${this.residentLimit / (1024 * 1024)} MiB ` +
          `(${this.pages.size} pages touched); a region may be large, but only this much of it can be used`,
      );
    }
    this.residentBytes += cost;
    const data = this.lineage.arena.bytes(PAGE_SIZE);
    if (r.contents !== undefined) {
      const at = r.contentsAt!, base = n * PAGE_SIZE;
      const lo = Math.max(at, base), hi = Math.min(at + r.contents.length, base + PAGE_SIZE);
      if (lo < hi) data.set(r.contents.subarray(lo - at, hi - at), lo - base);
    }
    const p = new Page(n * PAGE_SIZE, r.perms, data, this.token, ++this.lineage.generation, this.lineage.arena);
    this.pages.set(n, p);
    return p;
  }

  /** The page holding `addr`, for reading (may be shared with forks). Hot path. */
  page(addr: number): Page | undefined {
    const n = Math.floor(addr / PAGE_SIZE);
    const slot = n & (TLB_SIZE - 1);
    if (this.tlbNo[slot] === n) return this.tlbPage[slot];
    const p = this.pages.get(n) ?? this.materialize(n);
    this.tlbNo[slot] = n;
    this.tlbPage[slot] = p;
    return p;
  }

  private flushTlb(): void {
    this.tlbNo.fill(NaN);
    this.tlbPage.fill(undefined);
  }

  /** The page holding `addr`, private to this memory (copied first if shared). */
  writablePage(addr: number): Page | undefined {
    const p = this.page(addr);
    if (p === undefined || p.owner === this.token) return p;
    return this.owned(pageNumber(addr), p);
  }

  private owned(n: number, p: Page): Page {
    if (p.owner === this.token) return p;
    const c = p.clone(this.token);
    this.pages.set(n, c);
    this.flushTlb();
    return c;
  }

  /** A copy-on-write fork: O(pages) to copy the page table, no page data copied. */
  fork(): Memory {
    const child = new Memory(this.lineage, new Map(this.pages), this.residentLimit);
    child.textSeq = this.textSeq;
    child.regions = this.regions;
    child.residentBytes = this.residentBytes;
    // Both sides now share every page: neither owns them any more. The TLB stays: it maps page
    // numbers to the same pages, and a write still finds them shared (writablePage tests the owner).
    this.token = {};
    return child;
  }

  /** Committed bytes, for tests, dumps and the loader; unmapped bytes read as an error. */
  readBytes(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const p = this.page(addr + i);
      if (!p) throw new MachineConfigError(`read of unmapped address ${hexAddress(addr + i)}`);
      out[i] = p.data[addr + i - p.base]!;
    }
    return out;
  }

  /**
   * Loader write: bytes placed as if before any vCPU ran (no text write sequence number, so
   * they are synchronized for every vCPU). Ignores write permission.
   */
  writeBytes(addr: number, bytes: ArrayLike<number>): void {
    if (this.footprint !== undefined && bytes.length > 0) this.footprint.write(addr, bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      const p = this.writablePage(addr + i);
      if (!p) throw new MachineConfigError(`write to unmapped address ${hexAddress(addr + i)}`);
      const o = addr + i - p.base;
      p.data[o] = bytes[i]!;
      p.gen = ++this.lineage.generation;
    }
  }

  /** A little-endian 64-bit value (an address or a counter) as the loader writes it. */
  writeU64(addr: number, value: number | bigint): void {
    const u = BigInt.asUintN(64, BigInt(value));
    this.writeBytes(addr, Array.from({ length: 8 }, (_, i) => Number((u >> BigInt(8 * i)) & 0xffn)));
  }

  /** A committed little-endian 64-bit value, as a canonical signed number (exact below 2^53). */
  readU64(addr: number): number {
    return Number(BigInt.asIntN(64, this.readBytes(addr, 8).reduce((acc, b, i) => acc | (BigInt(b) << BigInt(8 * i)), 0n)));
  }

  /**
   * A tracked write that ignores write permission: text_poke's alias mapping, or the host
   * rewriting guest code. Every byte gets a new text write sequence number when the page is
   * executable, so the cross-modifying-code rule sees it.
   */
  poke(addr: number, bytes: ArrayLike<number>, writer: number): void {
    if (this.footprint !== undefined && bytes.length > 0) this.footprint.write(addr, bytes.length);
    for (let i = 0; i < bytes.length; i++) this.commitByte(addr + i, bytes[i]!, writer, true);
  }

  /**
   * Commit one byte of a store. Returns false when the page is unmapped or (unless
   * `privileged`) not writable. Hot path for stores into executable pages.
   */
  commitByte(addr: number, value: number, writer: number, privileged: boolean): boolean {
    const p = this.writablePage(addr);
    if (!p || (!privileged && !(p.perms & Perm.W))) return false;
    const o = addr - p.base;
    if (p.writer) {
      if (!p.trackingOwned) p.ownTracking();
      const seq = ++this.textSeq;
      p.prev![o] = p.data[o]!;
      p.writer[o] = writer;
      p.seq![o] = seq;
      p.lastWriteSeq = seq;
    }
    p.data[o] = value & 0xff;
    p.gen = ++this.lineage.generation;
    return true;
  }

  /** Number of pages touched so far (for memory accounting). */
  get pageCount(): number {
    return this.pages.size;
  }
}
