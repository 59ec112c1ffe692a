/**
 * Lock spans for a trace (DESIGN.md §7): on every vCPU, a `spin_lock` span from the entry of
 * `_raw_spin_lock` to its return (the slowpath service nests inside it), then a `held` span until
 * the unlock site has run. Machine probes observe the code without writing to it, so the run is
 * the same with or without them; a run that writes no trace installs none.
 *
 * The tracer keeps per-vCPU stacks (locks nest under interrupts and NMIs, LIFO like the handlers),
 * so install it on the machine that runs, not on a boot snapshot that is forked many times.
 */
import { Op } from '../x86/insn.ts';
import { Reg } from '../x86/registers.ts';
import { hexAddress } from '../x86/format.ts';
import { PvOp } from './pv-ops.ts';
import type { Guest } from './guest.ts';

/** The span categories this layer puts on a vCPU's track. */
export const LockSpan = { Acquire: 'spin-lock', Held: 'lock-held' } as const;
export type LockSpanCategory = (typeof LockSpan)[keyof typeof LockSpan];

/** Install the probes on `g`'s machine: entry and returns of _raw_spin_lock, the end of every live unlock site. */
export function traceLocks(g: Guest): void {
  const m = g.machine;
  const acquiring: number[][] = m.vcpus.map(() => []);
  const held: number[][] = m.vcpus.map(() => []);
  const span = (cpu: number, edge: 'begin' | 'end', category: LockSpanCategory, lock: number) =>
    m.emit({ type: 'span', step: m.step, cpu, edge, category, name: category === LockSpan.Held ? `held ${hexAddress(lock)}` : `spin_lock ${hexAddress(lock)}`, args: { lock: hexAddress(lock) } });

  const entry = g.symbol('_raw_spin_lock');
  m.probe(entry, (c) => {
    const lock = c.getAddr(Reg.RDI);
    acquiring[c.id]!.push(lock);
    span(c.id, 'begin', LockSpan.Acquire, lock);
    return undefined;
  });
  for (const ret of returnsOf(g, entry, g.symbol('_raw_spin_unlock'))) {
    m.probe(ret, (c) => {
      const lock = acquiring[c.id]!.pop();
      if (lock === undefined) return undefined;
      span(c.id, 'end', LockSpan.Acquire, lock);
      held[c.id]!.push(lock);
      span(c.id, 'begin', LockSpan.Held, lock);
      return undefined;
    });
  }
  // The instruction after each unlock site: the lock is free once the site (native store or PV
  // unlock CALL) has run. The cold sites that nothing calls lie back to back and are left out.
  const cold = g.image.symbols.get('cold_lock_sites') ?? Infinity;
  for (const s of g.image.sites) {
    if (s.type !== PvOp.QueuedSpinUnlock || s.address >= cold) continue;
    m.probe(s.address + s.len, (c) => {
      const lock = held[c.id]!.pop();
      if (lock !== undefined) span(c.id, 'end', LockSpan.Held, lock);
      return undefined;
    });
  }
}

/** Addresses of the RETs in [from, to), walking the code front to back and stepping over patch sites. */
function returnsOf(g: Guest, from: number, to: number): number[] {
  const out: number[] = [];
  let a = from;
  while (a < to) {
    const site = g.image.sites.find((s) => s.address === a);
    if (site) { a += site.len; continue; }
    const insn = g.machine.instructionAt(a);
    if (!insn) break;
    if (insn.op === Op.RET) out.push(a);
    a = insn.next;
  }
  return out;
}
