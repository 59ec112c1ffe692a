/**
 * A hash of a running machine's state at a scheduling point, for finding cycles within one
 * execution (DPOR's livelock check): every vCPU's architectural state, its store buffer, its
 * interrupt state and return records, the text write counter, and memory as far as the execution
 * wrote it (the footprint recorder's incremental hash). Two lanes of 32 bits folded into a 53-bit
 * number: a false match needs a collision among the states of one execution.
 *
 * Clocks and counters that only grow (retired instructions, time) are left out: a vCPU spinning
 * in a loop must hash the same on every turn. A vCPU inside a TypeScript kernel service has state
 * the hash cannot see (the generator's locals), so such a state hashes to undefined and never
 * matches.
 */
import type { Machine } from '../machine/machine.ts';
import type { FootprintRecorder } from '../machine/footprint.ts';

class Lanes {
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

/** The state hash, or undefined when part of the state is invisible to it (a running service). */
export function machineStateHash(m: Machine, recorder: FootprintRecorder, extra: readonly number[]): number | undefined {
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
    }
  }
  h.add(m.memory.textSeq);
  h.add(recorder.memoryHash());
  for (const x of extra) h.add(x);
  return h.value();
}
