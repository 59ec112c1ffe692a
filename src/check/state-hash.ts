/**
 * A hash of a running machine's state at a scheduling point, for finding cycles within one
 * execution (DPOR's livelock check) and for DPOR's state cache (src/check/dpor-cache.ts): every
 * vCPU's architectural state (control registers included), its store buffer, its interrupt state
 * and return records (with the bytes the return-into-rewritten check compares), the text write
 * counter, memory as far as the execution wrote it (the footprint recorder's incremental hash),
 * and the cross-modifying-code record of every text byte the execution wrote (its last writer,
 * write sequence number and previous value decide whether a later fetch is legal, DESIGN.md §2).
 * Two lanes of 32 bits folded into a 53-bit number: a false match needs a collision among the
 * states one search visits.
 *
 * Clocks and counters that only grow (retired instructions, time) are left out: a vCPU spinning
 * in a loop must hash the same on every turn. A vCPU inside a TypeScript kernel service has state
 * the hash cannot see (the generator's locals), so such a state hashes to undefined and never
 * matches.
 */
import type { Machine } from '../machine/machine.ts';
import type { FootprintRecorder } from '../machine/footprint.ts';

/** Two 32-bit hash lanes folded into one 53-bit number (exact in a JS number). */
export class Lanes {
  a = 0x811c9dc5;
  b = 0x01000193;

  add(x: number): void {
    const lo = x >>> 0, hi = Math.floor(x / 4294967296) | 0;
    this.a = Math.imul(this.a ^ lo, 0x01000193) ^ Math.imul(hi, 0x5bd1e995);
    this.b = Math.imul(this.b + lo, 0x85ebca6b) ^ (this.b >>> 15) ^ Math.imul(hi ^ 0x27d4eb2f, 0xc2b2ae35);
  }

  value(): number {
    let a = this.a ^ (this.a >>> 16), b = this.b ^ (this.b >>> 13);
    a = Math.imul(a, 0x85ebca6b) >>> 0;
    b = Math.imul(b, 0xc2b2ae35) >>> 0;
    return a * 2097152 + (b >>> 11);
  }
}

/**
 * The state hash, or undefined when part of the state is invisible to it (a running service).
 * `textWritten`: the text byte addresses this execution wrote (bytes nobody wrote keep the
 * snapshot's record in every execution, and a written byte's sequence number is new).
 */
export function machineStateHash(m: Machine, recorder: FootprintRecorder, extra: ArrayLike<number>, textWritten: Iterable<number> = []): number | undefined {
  const h = new Lanes();
  for (const c of m.vcpus) {
    if (c.serviceFrames.length > 0) return undefined;
    for (let r = 0; r < 16; r++) {
      h.add(c.lo[r]!);
      h.add(c.hi[r]!);
    }
    h.add(c.rip);
    h.add(c.flags);
    h.add(c.gsBase);
    h.add(c.fsBase);
    for (let r = 0; r < 16; r++) {
      h.add(c.crLo[r]!);
      h.add(c.crHi[r]!);
    }
    h.add((c.halted ? 1 : 0) | (c.nmiBlocked ? 2 : 0) | (c.nmiPending ? 4 : 0) | (c.interruptShadow ? 8 : 0) | (c.pvUnhalted ? 16 : 0) | (c.preempted ? 32 : 0));
    h.add(c.serializedSeq);
    h.add(c.pendingIrqs.length);
    for (const v of c.pendingIrqs) h.add(v);
    h.add(c.storeBuffer.length);
    for (const s of c.storeBuffer) {
      h.add(s.addr);
      h.add(s.size);
      h.add(s.lo);
      h.add(s.hi);
    }
    h.add(c.returns.size);
    for (const [slot, r] of c.returns) {
      h.add(slot);
      h.add(r.returnAddress);
      h.add(r.pushedAt);
      h.add(r.bytes.length);
      for (const b of r.bytes) h.add(b);
    }
  }
  h.add(m.memory.textSeq);
  h.add(recorder.memoryHash());
  // Order-free over the written bytes: the execution's order of first writes must not matter.
  let textA = 0, textB = 0;
  for (const a of textWritten) {
    const p = m.memory.page(a);
    if (p === undefined || p.writer === null || p.seq === null || p.prev === null) continue;
    const o = a - p.base;
    const t = new Lanes();
    t.add(a);
    t.add(p.writer[o]!);
    t.add(p.seq[o]!);
    t.add(p.prev[o]!);
    const v = t.value();
    textA = (textA + (v % 4294967296)) >>> 0;
    textB = (textB ^ Math.floor(v / 4294967296)) >>> 0;
  }
  h.add(textA);
  h.add(textB);
  for (let i = 0; i < extra.length; i++) h.add(extra[i]!);
  return h.value();
}
