/**
 * The probes a lock-op switch's oracles need on the real kernel (DESIGN.md §6), installed with the
 * guest's lock probes (lock-probes.ts) because a machine has one probe per address and these share
 * addresses with them (a slowpath function's entry, a slowpath site's return that is the lock
 * function's `jmp __x86_return_thunk`). They forward to whatever observer a switch installs (none
 * outside a switch: then they cost a lookup and do nothing):
 * - the entries of native_queued_spin_lock_slowpath and __pv_queued_spin_lock_slowpath (rdi = the
 *   lock), and the points where a slowpath call returns: after the direct CALL (site + 5) and after
 *   the whole site (site + len, where an INT3 handler's emulated call returns);
 * - every `.parainstructions` lock.queued_spin_unlock site (a native `movb $0,(%rdi)` runs there);
 * - the lock.kick site (pv_kick in __pv_queued_spin_unlock_slowpath: rdi = the CPU kicked), the
 *   point after it, and the entry of kvm_kick_cpu (the real kick).
 */
import type { Insn } from '../x86/insn.ts';
import type { Probe } from '../machine/machine.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import type { Hazard } from '../machine/events.ts';
import type { Flavor } from '../kernel/pv-ops.ts';
import { pvOpsSlotName } from '../elf/pv-ops-slots.ts';
import type { LinuxKernel } from './kernel.ts';
import { symbolOf } from './kernel.ts';

/** What a switch's oracle is told of the real code (every method at one probed instruction). */
export interface LockSwitchObserver {
  slowpathEnter(c: Vcpu, flavor: Flavor, address: number): Hazard | undefined;
  slowpathReturn(c: Vcpu): void;
  unlockSite(c: Vcpu, insn: Insn, address: number): Hazard | undefined;
  kickSite(c: Vcpu): void;
  kickReturn(c: Vcpu, address: number): Hazard | undefined;
  kvmKickCpu(c: Vcpu): void;
}

export interface SwitchProbeSites {
  readonly nativeSlowpath: number;
  readonly pvSlowpath: number;
  readonly kvmKickCpu: number;
  readonly slowpathReturns: readonly number[];
  readonly unlockSites: readonly number[];
  readonly kickSites: readonly number[];
  readonly kickReturns: readonly number[];
}

export function switchProbeSites(k: LinuxKernel): SwitchProbeSites {
  const of = (slot: string) => k.tables.parainstructions.filter((p) => pvOpsSlotName(p.type) === slot);
  const slow = of('lock.queued_spin_lock_slowpath');
  const kicks = of('lock.kick');
  return {
    nativeSlowpath: symbolOf(k, 'native_queued_spin_lock_slowpath'),
    pvSlowpath: symbolOf(k, '__pv_queued_spin_lock_slowpath'),
    kvmKickCpu: symbolOf(k, 'kvm_kick_cpu'),
    // A 5-byte direct CALL padded to the site's 6 bytes returns to its NOP; an emulated one past it.
    slowpathReturns: [...new Set(slow.flatMap((p) => (p.len > 5 ? [p.address + 5, p.address + p.len] : [p.address + p.len])))],
    unlockSites: of('lock.queued_spin_unlock').map((p) => p.address),
    kickSites: kicks.map((p) => p.address),
    kickReturns: [...new Set(kicks.flatMap((p) => (p.len > 5 ? [p.address + 5, p.address + p.len] : [p.address + p.len])))],
  };
}

/** The probes, forwarding to `observer()` (read at each hit: a switch installs it after boot). */
export function switchProbes(s: SwitchProbeSites, observer: () => LockSwitchObserver | undefined): [number, Probe][] {
  const out: [number, Probe][] = [
    [s.nativeSlowpath, (c, insn) => observer()?.slowpathEnter(c, 'native', insn.address)],
    [s.pvSlowpath, (c, insn) => observer()?.slowpathEnter(c, 'pv', insn.address)],
    [s.kvmKickCpu, (c) => { observer()?.kvmKickCpu(c); return undefined; }],
  ];
  for (const a of s.slowpathReturns) out.push([a, (c) => { observer()?.slowpathReturn(c); return undefined; }]);
  for (const a of s.unlockSites) out.push([a, (c, insn) => observer()?.unlockSite(c, insn, a)]);
  for (const a of s.kickSites) out.push([a, (c) => { observer()?.kickSite(c); return undefined; }]);
  for (const a of s.kickReturns) out.push([a, (c) => observer()?.kickReturn(c, a)]);
  return out;
}

/** Probes at one address run in order; the first hazard is the one reported. */
export function mergeProbes(entries: readonly (readonly [number, Probe])[]): [number, Probe][] {
  const by = new Map<number, Probe[]>();
  for (const [a, p] of entries) {
    const list = by.get(a);
    if (list === undefined) by.set(a, [p]);
    else list.push(p);
  }
  return [...by].map(([a, list]) => [a, list.length === 1 ? list[0]! : (c: Vcpu, insn: Insn) => {
    let h: Hazard | undefined;
    for (const p of list) {
      const r = p(c, insn);
      h ??= r;
    }
    return h;
  }]);
}
