/**
 * The compiled tier of one machine: its block cache and the checks that decide, each time a vCPU
 * arrives at an address, whether a compiled block may run there instead of the interpreter.
 *
 * Invalidation is exact, by the per-byte tracking the decode cache uses: an entry remembers the
 * page version (`Page.gen`) it was checked at; after any write to the page the block's bytes are
 * compared with memory and the block runs only while they are unchanged. Compiled functions are
 * shared by every fork of a lineage (they depend on the bytes alone); which of them a machine may
 * use (no probe or kernel service inside) is decided per machine.
 *
 * A block runs only when the interpreter would have run every one of its instructions without a
 * decision of its own: no interrupt or NMI to deliver, not halted, no STI shadow, no probe or
 * service address inside, no store of this vCPU buffered over its bytes (the fetch would forward
 * it), and no byte that another agent wrote since this vCPU last serialized (SDM 8.1.3: the
 * interpreter's fetch would report a hazard or make the old/new choice; it still does, since the
 * block is refused and the interpreter steps).
 */
import { decodeAt } from '../decode-cache.ts';
import { Perm, PAGE_SIZE, type Memory, type Page } from '../memory.ts';
import type { Vcpu, BufferedStore } from '../vcpu.ts';
import type { Insn } from '../../x86/insn.ts';
import { MAX_BLOCK_INSNS, blockCanHold, compileBlock, isBlockEnd, type CompiledBlock, type StepHook } from './compile.ts';

/** What the tier needs from its machine. */
export interface TierHost {
  readonly memory: Memory;
  readonly tso: boolean;
  /** How many vCPUs (ids 0..vcpus-1). */
  readonly vcpuCount: number;
  /** A probe or a kernel service at `addr`: the per-step loop must see the vCPU arrive there. */
  intercepts(addr: number): boolean;
}

/** Compiled blocks kept per address for a lineage (a site's old and new code, and a few more). */
const MAX_VARIANTS = 4;

/** A machine's view of the block at an address: the block (null: none can start here) and the page version it was checked at. */
interface Entry {
  block: CompiledBlock | null;
  gen: number;
}

/**
 * Interpreter steps a vCPU takes before trying compiled code again after its chooser cut a block
 * short after one instruction (the timed strategy interleaving vCPUs closely): entering a
 * block costs more than interpreting one instruction. Only speed depends on it, never results.
 */
const BACKOFF_STEPS = 4;

/** Slots of the direct-mapped cache in front of the entry map (hot path: one compare per block entry). */
const SLOTS = 256;

export class CompiledTier {
  private readonly entries = new Map<number, Entry>();
  // The slot cache and the back-off counters are made at the first run: every fork of a boot
  // makes a tier, and a 2 KiB typed array costs microseconds to allocate, more than a short
  // exploration's execution spends in compiled code (issue 12).
  private slotRip: Float64Array | undefined;
  private slotEntry: (Entry | undefined)[] = [];
  /** Instructions run in compiled code so far, but for blocks that faulted (for benchmarks: how much the tier covers). */
  total = 0;
  /** Per vCPU, interpreter steps left before the next try (BACKOFF_STEPS). */
  private backoff: Int32Array | undefined;

  constructor(private readonly host: TierHost) {}

  /** Forget every entry (probes or services changed). */
  flush(): void {
    if (this.slotRip === undefined) return;
    this.entries.clear();
    this.slotRip.fill(NaN);
    this.slotEntry.fill(undefined);
  }

  /**
   * Run vCPU `c` from its RIP for 1..max instructions in compiled code; 0 = nothing ran (the
   * interpreter must step). `cont` is asked after every instruction (see compile.ts). When a
   * block throws (a fault), the vCPU's `retired` counts the instructions it completed.
   */
  run(c: Vcpu, max: number, cont: StepHook | undefined): number {
    const id = c.id;
    if (this.slotRip === undefined) {
      this.slotRip = new Float64Array(SLOTS).fill(NaN);
      this.slotEntry = new Array<Entry | undefined>(SLOTS).fill(undefined);
      this.backoff = new Int32Array(this.host.vcpuCount);
    }
    const backoff = this.backoff!, slotRip = this.slotRip;
    if (backoff[id]! > 0) { backoff[id]!--; return 0; }
    if (c.nmiPending || c.pendingIrqs.length > 0 || c.halted || c.interruptShadow) return 0;
    const mem = this.host.memory;
    // Footprints record every access of every step (src/machine/footprint.ts): interpreter only.
    if (mem.footprint !== undefined) return 0;
    const rip = c.rip;
    const p = mem.page(rip);
    if (p === undefined || (p.perms & Perm.X) === 0) return 0;
    const slot = (rip & (SLOTS - 1)) >>> 0;
    let e = slotRip[slot] === rip ? this.slotEntry[slot] : this.entries.get(rip);
    if (e === undefined) {
      e = { block: this.lookup(mem, rip), gen: p.gen };
      this.entries.set(rip, e);
    } else if (e.gen !== p.gen) {
      if (e.block === null || !holds(p, e.block)) e.block = this.lookup(mem, rip);
      e.gen = p.gen;
    }
    slotRip[slot] = rip;
    this.slotEntry[slot] = e;
    const b = e.block;
    if (b === null) return 0;
    if (p.lastWriteSeq > c.serializedSeq && !synchronized(p, b, c.id, c.serializedSeq)) return 0;
    const sb = c.storeBuffer;
    if (sb.length > 0 && overlaps(sb, b.start, b.end)) return 0;
    const n = b.run(c, max, cont, mem, this.host.tso);
    this.total += n;
    if (n === 1 && n < max && n < b.insns.length) backoff[id] = BACKOFF_STEPS;
    return n;
  }

  /** A lineage block for `rip` that memory holds and this machine may use, else a new one. */
  private lookup(mem: Memory, rip: number): CompiledBlock | null {
    const known = mem.lineage.blocks.get(rip);
    if (known !== undefined) {
      const p = mem.page(rip)!;
      for (const b of known) if (holds(p, b) && !b.insns.some((i) => this.host.intercepts(i.address))) return b;
    }
    const insns = this.collect(mem, rip);
    if (insns.length === 0) return null;
    const end = insns[insns.length - 1]!.next;
    const b = compileBlock(insns, mem.readBytes(rip, end - rip));
    if (known === undefined) mem.lineage.blocks.set(rip, [b]);
    else if (known.length < MAX_VARIANTS) known.push(b);
    return b;
  }

  /** The instructions of the block at `rip`: within its page, up to a branch or a cut. */
  private collect(mem: Memory, rip: number): Insn[] {
    const out: Insn[] = [];
    const p = mem.page(rip)!;
    let a = rip;
    while (out.length < MAX_BLOCK_INSNS) {
      if (this.host.intercepts(a)) break;
      const i = decodeAt(mem, a);
      if (i === undefined || a - p.base + i.len > PAGE_SIZE || !blockCanHold(i)) break;
      out.push(i);
      if (isBlockEnd(i)) break;
      a = i.next;
    }
    return out;
  }
}

/** Does page `p` (which holds the whole block) still hold the block's bytes? */
function holds(p: Page, b: CompiledBlock): boolean {
  const d = p.data, o = b.start - p.base, bytes = b.bytes;
  for (let k = 0; k < bytes.length; k++) if (d[o + k] !== bytes[k]) return false;
  return true;
}

/** No byte of the block was written by another agent after `serializedAt` (decode-cache.ts's rule, per byte). */
function synchronized(p: Page, b: CompiledBlock, cpu: number, serializedAt: number): boolean {
  const seq = p.seq!, writer = p.writer!;
  for (let o = b.start - p.base; o < b.end - p.base; o++) if (seq[o]! > serializedAt && writer[o] !== cpu) return false;
  return true;
}

function overlaps(sb: readonly BufferedStore[], lo: number, hi: number): boolean {
  for (let k = 0; k < sb.length; k++) {
    const s = sb[k]!;
    if (s.addr < hi && lo < s.addr + s.size) return true;
  }
  return false;
}
