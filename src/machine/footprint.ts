/**
 * Per-action footprints (DESIGN.md §3): what one action — a vCPU step, a store-buffer drain, an
 * injection — read and wrote of the state other agents share, so that a partial-order reduction
 * can tell which actions commute. Off by default: Memory.footprint is undefined and every hook in
 * the access layer is one field test.
 *
 * Locations are 8-byte aligned granules (`addr / 8`, floored): every access the machine makes is at
 * most 8 bytes, so it touches one or two granules, and a granule is a plain number to compare. Two
 * different bytes in one granule look like one location: that only adds dependences (more
 * interleavings explored), never hides one. Machine state that is not memory but that another
 * agent changes gets a pseudo-location above the canonical address space (see `Pseudo`).
 *
 * What each access means under x86-TSO (SDM 8.2.3):
 * - a load served entirely from the vCPU's own store buffer touches nothing shared; the bytes that
 *   come from memory are reads;
 * - a store into the store buffer is local (nothing another vCPU can see); it only counts as
 *   "buffered" so that the drain that commits it is ordered after it;
 * - a drain (and any direct commit: locked RMW, SC mode, text_poke) is the global write; it also
 *   writes the vCPU's own store-buffer location, as does every drain-all (locked instructions,
 *   MFENCE, serializing instructions), because those disable the vCPU's next drain;
 * - an instruction fetch reads the text bytes it decodes (cross-modifying code makes fetch a read);
 *   a serializing event reads the text write counter (`serializedSeq = textSeq`), which every text
 *   write increments;
 * - an IPI, NMI, IRQ or kick writes the target's interrupt location; every step of a vCPU reads
 *   its own (whether the step delivers an interrupt depends on it).
 */
import type { Memory } from './memory.ts';
import type { Vcpu } from './vcpu.ts';

export const GRANULE_BYTES = 8;

/** Pseudo-locations start above every canonical address's granule (2^47 / 8 = 2^44). */
const PSEUDO_BASE = 2 ** 48;

/** Shared machine state that is not memory, each a location of its own. */
export const enum Pseudo {
  /** The global text write sequence number (Memory.textSeq). */
  TextSeq = 0,
  /** State kept by instruction probes (oracles of the layers above): every probe hit touches it. */
  Oracle = 1,
  /** Host state behind a hypercall. */
  Host = 2,
  /** The run's NMI and IRQ injection budgets. */
  NmiBudget = 3,
  IrqBudget = 4,
  /** + vCPU id: its pending fixed-vector interrupts (IRQs, IPIs). */
  Irq = 16,
  /** + vCPU id: its NMI latch. */
  Nmi = 16 + 256,
  /** + vCPU id: its halt state as a kick changes it (KVM_HC_KICK_CPU, pv_unhalted). */
  Kick = 16 + 512,
  /** + vCPU id: its store buffer as a whole (drains and drain-alls). */
  StoreBuffer = 16 + 768,
}

/** The kinds of interrupt state another agent can change. */
export type InterruptKind = Pseudo.Irq | Pseudo.Nmi | Pseudo.Kick;

export function pseudo(p: Pseudo, cpu = 0): number {
  return PSEUDO_BASE + p + cpu;
}

export function isPseudo(location: number): boolean {
  return location >= PSEUDO_BASE && location < TEXT_BYTE_BASE - 2 ** 47;
}

/** A plain data granule (not a pseudo-location, a text byte or a forwarding key). */
export function isDataGranule(location: number): boolean {
  return location < PSEUDO_BASE;
}

/**
 * A load that the store buffer forwards reads the buffered store, not memory: it depends on
 * whether that store has drained yet (after the drain, another vCPU's write can come between).
 * Forwarded bytes read the granule's forwarding key; every write of the granule writes it.
 */
const FORWARD_BASE = 2 ** 51;

/**
 * Instruction fetches and text writes are also recorded byte by byte (a key per byte, in a range
 * of its own): the bytes an instruction decodes from are exact, and code next to a patched site
 * (the JMP after a NOP being rewritten) does not conflict with the patch. Text writes carry both
 * their granules and their bytes, so a data read of text still meets them.
 */
const TEXT_BYTE_BASE = 2 ** 50;

/** The text byte address a location names, or -1 when it is not a text byte (DPOR's state hash). */
export function textByteAddress(location: number): number {
  return location >= TEXT_BYTE_BASE && location < FORWARD_BASE ? location - TEXT_BYTE_BASE : -1;
}

function addTextBytes(list: number[], addr: number, len: number): void {
  for (let i = 0; i < len; i++) addUnique(list, TEXT_BYTE_BASE + addr + i);
}

/** The granule holding `addr`. */
export function granule(addr: number): number {
  return Math.floor(addr / GRANULE_BYTES);
}

/** What one action touched. Arrays are small (a few entries) and hold no duplicates. */
export interface Footprint {
  /** Data reads from memory (not served by the vCPU's own store buffer), and pseudo-location reads. */
  readonly reads: readonly number[];
  readonly writes: readonly number[];
  /** Text read by instruction fetch or by the return-into-rewritten bookkeeping. */
  readonly fetches: readonly number[];
}

export const EMPTY_FOOTPRINT: Footprint = { reads: [], writes: [], fetches: [] };

function addUnique(list: number[], g: number): void {
  if (!list.includes(g)) list.push(g);
}

function addRange(list: number[], addr: number, size: number): void {
  const last = granule(addr + size - 1);
  for (let g = granule(addr); g <= last; g++) addUnique(list, g);
}

function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Records the footprint of the action in progress (take() hands it over and starts the next),
 * counts each vCPU's buffered and drained stores (so a drain can be ordered after the store it
 * commits), and keeps an incremental hash of every granule written since recording began.
 */
export class FootprintRecorder {
  private reads: number[] = [];
  private writes: number[] = [];
  private fetches: number[] = [];
  /** Per vCPU: stores put into its store buffer, and stores committed from it, since recording began. */
  readonly buffered: Int32Array;
  readonly drained: Int32Array;
  /** XOR over written granules of h(granule, value at snapshot) ^ h(granule, value now), two lanes. */
  private hashA = 0;
  private hashB = 0;
  /** Granules written since the last memoryHash(): their old value is already XORed out. */
  private dirty: number[] = [];
  private readonly dirtySet = new Set<number>();

  constructor(
    private readonly mem: Memory,
    vcpus: number,
  ) {
    this.buffered = new Int32Array(vcpus);
    this.drained = new Int32Array(vcpus);
  }

  /** The footprint of the action since the last take(), and a fresh one for the next. */
  take(): Footprint {
    const f: Footprint = { reads: this.reads, writes: this.writes, fetches: this.fetches };
    this.reads = [];
    this.writes = [];
    this.fetches = [];
    return f;
  }

  /** A load of [addr, addr+size) by `c`: only the bytes its store buffer does not forward are reads. */
  load(c: Vcpu, addr: number, size: number): void {
    const sb = c.storeBuffer;
    if (sb.length === 0) {
      addRange(this.reads, addr, size);
      return;
    }
    for (let i = 0; i < size; i++) {
      const a = addr + i;
      let forwarded = false;
      for (let k = sb.length - 1; k >= 0 && !forwarded; k--) {
        const s = sb[k]!;
        forwarded = a >= s.addr && a < s.addr + s.size;
      }
      addUnique(this.reads, forwarded ? FORWARD_BASE + granule(a) : granule(a));
    }
  }

  /** A store that went into `cpu`'s store buffer (local until drained). */
  buffer(cpu: number): void {
    this.buffered[cpu]!++;
  }

  /** Called before [addr, addr+size) is committed to memory: the global write. */
  write(addr: number, size: number): void {
    const last = granule(addr + size - 1);
    for (let g = granule(addr); g <= last; g++) {
      addUnique(this.writes, g);
      addUnique(this.writes, FORWARD_BASE + g);
      if (!this.dirtySet.has(g)) {
        this.dirtySet.add(g);
        this.dirty.push(g);
        this.fold(g);
      }
    }
    const p = this.mem.page(addr);
    if (p !== undefined && p.writer !== null) {
      addUnique(this.writes, pseudo(Pseudo.TextSeq));
      addTextBytes(this.writes, addr, size);
    }
  }

  /** `count` stores drained from `cpu`'s buffer (one drain, or a drain-all, possibly of none). */
  drain(cpu: number, count: number): void {
    this.drained[cpu]! += count;
    addUnique(this.writes, pseudo(Pseudo.StoreBuffer, cpu));
  }

  /** An instruction fetch of [addr, addr+len). */
  fetch(addr: number, len: number): void {
    addTextBytes(this.fetches, addr, len);
  }

  /** Text whose write history a later check reads (around a pushed return address). */
  textHistory(addr: number, len: number): void {
    addRange(this.fetches, addr, len);
  }

  /** A serializing event: `serializedSeq = textSeq`. */
  serialize(): void {
    addUnique(this.reads, pseudo(Pseudo.TextSeq));
  }

  /**
   * A step of `c` reads the interrupt state that decides whether it delivers one: its NMI latch
   * unless NMIs are blocked, its pending IRQs when it could take one (IF set, no STI shadow, or
   * halted), and always whether a kick arrived (HLT reads pv_unhalted).
   */
  step(c: Vcpu): void {
    const cpu = c.id;
    if (!c.nmiBlocked) addUnique(this.reads, pseudo(Pseudo.Nmi, cpu));
    if (c.halted || (c.interruptsEnabled && !c.interruptShadow)) addUnique(this.reads, pseudo(Pseudo.Irq, cpu));
    addUnique(this.reads, pseudo(Pseudo.Kick, cpu));
  }

  /** Another agent changed `cpu`'s interrupt state (an IPI, an NMI, an IRQ, a kick). */
  interrupt(cpu: number, kind: InterruptKind): void {
    addUnique(this.writes, pseudo(kind, cpu));
  }

  /** An NMI or IRQ injected into `cpu` from the run's budget. */
  injected(cpu: number, budget: Pseudo.NmiBudget | Pseudo.IrqBudget): void {
    this.interrupt(cpu, budget === Pseudo.NmiBudget ? Pseudo.Nmi : Pseudo.Irq);
    addUnique(this.writes, pseudo(budget));
  }

  pseudoRead(p: Pseudo, cpu = 0): void {
    addUnique(this.reads, pseudo(p, cpu));
  }

  pseudoWrite(p: Pseudo, cpu = 0): void {
    addUnique(this.writes, pseudo(p, cpu));
  }

  /** A 53-bit hash of memory as far as it was written since recording began (equal contents, equal hash). */
  memoryHash(): number {
    for (const g of this.dirty) this.fold(g);
    this.dirty = [];
    this.dirtySet.clear();
    return (this.hashA >>> 0) * 2097152 + (this.hashB >>> 11);
  }

  /** XOR granule `g`'s current value into (or out of) the memory hash. */
  private fold(g: number): void {
    const addr = g * GRANULE_BYTES;
    const p = this.mem.page(addr);
    let lo = 0, hi = 0;
    if (p !== undefined) {
      const o = addr - p.base, d = p.data;
      lo = d[o]! | (d[o + 1]! << 8) | (d[o + 2]! << 16) | (d[o + 3]! << 24);
      hi = d[o + 4]! | (d[o + 5]! << 8) | (d[o + 6]! << 16) | (d[o + 7]! << 24);
    }
    const gl = g >>> 0, gh = Math.floor(g / 4294967296) | 0;
    this.hashA ^= mix32(mix32(mix32(gl ^ 0x9e3779b9) ^ gh) ^ lo) ^ mix32(hi + 0x632be5ab);
    this.hashB ^= mix32(mix32(mix32(gl + 0x7f4a7c15) ^ (gh * 31)) ^ hi) ^ mix32(lo ^ 0x5bd1e995);
  }
}
