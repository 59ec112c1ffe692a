/**
 * The atomic-switch oracle (DESIGN.md §6): no vCPU runs a new lock op while another vCPU still runs
 * an old op it depends on. The five pv_lock_ops are inter-dependent (seed 000: "the ops must
 * change together"); switching them one site at a time, or switching while a slowpath of the old
 * flavour is still running, mixes flavours on one lock. Two mixes break the lock protocol, and
 * those are what this oracle reports, on the same lock, at the moment the new op starts:
 *
 *  - a PV slowpath starts while another vCPU runs the native slowpath: a native MCS predecessor
 *    hands the queue over with a plain store (arch_mcs_spin_unlock_contended) and never
 *    pv_kick_node()s, so a PV successor that halted in pv_wait_node() may sleep for ever;
 *  - a native unlock (`movb $0,(%rdi)`) runs while another vCPU runs the PV slowpath: the PV head
 *    may have set _Q_SLOW_VAL, hashed the lock and halted in pv_wait_head_or_lock(); a plain byte
 *    store releases the lock without __pv_queued_spin_unlock_slowpath()'s unhash and kick;
 *  - pv_kick() is the native one (paravirt_nop: kvm_kick_cpu never runs) for a vCPU that waits in
 *    the PV slowpath: it halted in pv_wait() and nobody wakes it.
 *
 * The other mixes are harmless and not reported: a PV unlock (a cmpxchg of the locked byte, with
 * the kick only for _Q_SLOW_VAL) of a lock whose waiters spin natively; a native waiter queued
 * behind a PV one (pv_kick_node() checks the successor's state, which a native node leaves
 * "running"). A slowpath is "running" from its entry to its return, halts included; it sees both
 * the CALL at a site and the INT3 handlers that emulate one. A native unlock is seen where it runs:
 * executed at an unlock site (a machine probe) or emulated by the v2 INT3 handler (`nativeUnlock`).
 */
import type { Machine } from '../machine/machine.ts';
import type { Hazard, OracleHazard } from '../machine/events.ts';
import { hexAddress } from '../x86/format.ts';
import type { Insn } from '../x86/insn.ts';
import { Reg } from '../x86/registers.ts';
import type { SlowpathObserver } from './qspinlock-slowpath.ts';
import { PvOp, type Flavor, type PatchSite } from './pv-ops.ts';
import { inNmi } from './preempt-count.ts';

interface Running {
  cpu: number;
  lock: number;
  flavor: Flavor;
  /** Machine step when it started. */
  since: number;
}

/** `movb $0,(%rdi)`: native_queued_spin_unlock as Linux patches it inline. */
export function isNativeUnlock(bytes: ArrayLike<number>): boolean {
  return bytes[0] === 0xc6 && bytes[1] === 0x07 && bytes[2] === 0x00;
}

/** The oracle's name in an OracleHazard. */
export const NON_ATOMIC_SWITCH = 'non-atomic-switch';

/** What the oracle records: the op that started on `lock`, and the one in flight it depends on. */
export interface NonAtomicSwitchData {
  lock: number;
  op: string;
  other: { cpu: number; op: string; since: number };
  /** Why the two cannot overlap. */
  why: string;
}

/** vCPU `cpu` started an op at `address` whose flavour breaks an op another vCPU still runs on the same lock. */
export type NonAtomicSwitch = OracleHazard<typeof NON_ATOMIC_SWITCH, NonAtomicSwitchData>;

export function isNonAtomicSwitch(h: Hazard | undefined): h is NonAtomicSwitch {
  return h !== undefined && h.kind === 'oracle' && h.oracle === NON_ATOMIC_SWITCH;
}

function nonAtomicSwitch(cpu: number, address: number, data: NonAtomicSwitchData): NonAtomicSwitch {
  const message = `vCPU ${cpu} started ${data.op} at ${hexAddress(address)} on lock ${hexAddress(data.lock)} ` +
    `while vCPU ${data.other.cpu} still runs ${data.other.op} on it (since step ${data.other.since}): ${data.why}`;
  return { kind: 'oracle', oracle: NON_ATOMIC_SWITCH, cpu, address, message, data };
}

/** A violation kept in 'record' mode: the hazard, its step, and whether each side ran in NMI context. */
export interface AtomicSwitchFinding {
  step: number;
  hazard: NonAtomicSwitch;
  inNmi: { cpu: boolean; other: boolean };
}

export class AtomicSwitchOracle implements SlowpathObserver {
  /**
   * 'stop' (the default): a violation is a machine hazard and stops the run. 'record': it is kept
   * in `findings` and the run goes on, so the lock and wake-up checks can say whether the mix did
   * harm (used to measure v1's NMI window, which the RFC admits).
   */
  mode: 'stop' | 'record' = 'stop';
  readonly findings: AtomicSwitchFinding[] = [];
  /** Running slowpaths, per vCPU innermost last (an NMI's slowpath nests over a task's). */
  private readonly running: Running[][];
  /** Per vCPU: kvm_kick_cpu() ran since its pv_kick() began. */
  private readonly kicked: boolean[];

  /** The oracle with the same state watching a fork of the machine (its probes registered there). */
  fork(machine: Machine): AtomicSwitchOracle {
    const o = new AtomicSwitchOracle(machine, this.sites, this.kvmKickCpu, this.ownProbes);
    o.mode = this.mode;
    o.findings.push(...this.findings);
    this.running.forEach((list, cpu) => o.running[cpu]!.push(...list.map((r) => ({ ...r }))));
    this.kicked.forEach((k, cpu) => { o.kicked[cpu] = k; });
    return o;
  }

  /**
   * `ownProbes` false: the caller's probes drive the oracle (`nativeUnlock`, `kvmKickCpuEntered`):
   * the real-kernel guest (src/linux/switch-oracle.ts) already probes those addresses itself.
   */
  constructor(private readonly machine: Machine, private readonly sites: readonly PatchSite[], private readonly kvmKickCpu: number, private readonly ownProbes = true) {
    this.running = machine.vcpus.map(() => []);
    this.kicked = machine.vcpus.map(() => false);
    if (!ownProbes) return;
    machine.probe(kvmKickCpu, (c) => {
      this.kicked[c.id] = true;
      return undefined;
    });
    for (const s of sites) {
      if (s.type !== PvOp.QueuedSpinUnlock) continue;
      machine.probe(s.address, (c, insn: Insn) => (isNativeUnlock(insn.bytes) ? this.nativeUnlock(c.id, c.getAddr(Reg.RDI), s.address) : undefined));
    }
  }

  /** kvm_kick_cpu() was entered on `cpu` (its own probe, or the caller's). */
  kvmKickCpuEntered(cpu: number): void {
    this.kicked[cpu] = true;
  }

  slowpathEnter(cpu: number, lock: number, flavor: Flavor, address: number): Hazard | undefined {
    const h = flavor === 'pv'
      ? this.conflict(cpu, lock, 'native', address, 'the PV slowpath', 'the native slowpath',
          'a native MCS predecessor hands the queue over without pv_kick_node(), so a PV waiter that halted in pv_wait_node() is never woken')
      : undefined;
    this.running[cpu]!.push({ cpu, lock, flavor, since: this.machine.step });
    return h;
  }

  slowpathExit(cpu: number): void {
    this.running[cpu]!.pop();
  }

  /** A native unlock of `lock` by `cpu` at `address` (executed, or emulated by an INT3 handler). */
  nativeUnlock(cpu: number, lock: number, address: number): Hazard | undefined {
    return this.conflict(cpu, lock, 'pv', address, 'the native unlock movb $0,(%rdi)', 'the PV slowpath',
      'the PV head may have set _Q_SLOW_VAL and halted; a plain byte store releases the lock without the unhash and kick of __pv_queued_spin_unlock_slowpath()');
  }

  kickBegin(cpu: number): void {
    this.kicked[cpu] = false;
  }

  kickEnd(cpu: number, target: number, address: number): Hazard | undefined {
    if (this.kicked[cpu]) return undefined;
    const waiting = (this.running[target] ?? []).filter((r) => r.flavor === 'pv').pop();
    if (waiting === undefined || target === cpu) return undefined;
    return this.report(cpu, nonAtomicSwitch(cpu, address, {
      lock: waiting.lock, op: `the native pv_kick (a NOP) of vCPU ${target}`,
      other: { cpu: target, op: 'the PV slowpath', since: waiting.since },
      why: 'a PV waiter may have halted in pv_wait() and only KVM_HC_KICK_CPU wakes it',
    }), target);
  }

  private report(cpu: number, hazard: AtomicSwitchFinding['hazard'], other: number): Hazard | undefined {
    if (this.mode === 'stop') return hazard;
    const v = this.machine.vcpus;
    this.findings.push({ step: this.machine.step, hazard, inNmi: { cpu: inNmi(this.machine.memory, v[cpu]!), other: inNmi(this.machine.memory, v[other]!) } });
    return undefined;
  }

  /** Is another vCPU running a slowpath of flavour `other` on `lock`? */
  private conflict(cpu: number, lock: number, other: Flavor, address: number, op: string, otherOp: string, why: string): Hazard | undefined {
    for (const list of this.running) {
      for (const r of list) {
        if (r.cpu === cpu || r.flavor !== other || r.lock !== lock) continue;
        return this.report(cpu, nonAtomicSwitch(cpu, address, { lock, op, other: { cpu: r.cpu, op: otherOp, since: r.since }, why }), r.cpu);
      }
    }
    return undefined;
  }
}
