/**
 * The hypervisor as the guest's CPUID and hypercalls see it: the KVM signature and features, the
 * REALTIME hint (which the host may revoke or grant while the guest runs, telling the guest by an
 * interrupt), KVM_HC_KICK_CPU, steal time's `preempted` byte, and KVM's fix-up of the wrong
 * vendor's hypercall instruction (emulator_fix_hypercall, seed 003): the host rewrites the guest's
 * three bytes in place, with no synchronization of the other vCPUs, and the machine's
 * cross-modifying-code rule judges what that means for them.
 */
import type { Machine } from '../machine/machine.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import type { HostHooks, HypercallOutcome } from '../machine/context.ts';
import type { Insn } from '../x86/insn.ts';
import { Reg } from '../x86/registers.ts';
import { WRITER_HOST } from '../machine/memory.ts';
import {
  KVM_CPUID_FEATURES, KVM_CPUID_SIGNATURE, KVM_ENOSYS, KVM_SIGNATURE, KVM_VCPU_PREEMPTED, KvmFeature, KvmHint,
  KvmHypercall, HYPERCALL_BYTES, STEAL_TIME_PREEMPTED_OFFSET,
} from './kvm-abi.ts';

export type Vendor = 'intel' | 'amd';

export interface KvmOptions {
  vendor?: Vendor;
  /** Advertise KVM_FEATURE_PV_UNHALT (needed for PV spinlocks; default true). */
  pvUnhalt?: boolean;
  /** Advertise KVM_HINTS_REALTIME (default false). */
  realtime?: boolean;
  /** Vector of the interrupt that tells the guest its hints changed (default 0xec). */
  hintVector?: number;
}

export interface HostStats {
  kicks: number;
  hypercalls: number;
  fixups: number;
  hintChanges: number;
}

export class KvmHost implements HostHooks {
  readonly vendor: Vendor;
  readonly pvUnhalt: boolean;
  realtime: boolean;
  readonly hintVector: number;
  readonly stats: HostStats = { kicks: 0, hypercalls: 0, fixups: 0, hintChanges: 0 };
  /** Guest address of each vCPU's struct kvm_steal_time (set by the guest kernel at boot). */
  stealTime: number[] = [];

  constructor(
    private readonly machine: Machine,
    opts: KvmOptions = {},
  ) {
    this.vendor = opts.vendor ?? 'intel';
    this.pvUnhalt = opts.pvUnhalt ?? true;
    this.realtime = opts.realtime ?? false;
    this.hintVector = opts.hintVector ?? 0xec;
    machine.hooks = this;
  }

  /** The same host for a fork of the guest's machine: its hints, steal-time areas and counters copied. */
  fork(machine: Machine): KvmHost {
    const h = new KvmHost(machine, { vendor: this.vendor, pvUnhalt: this.pvUnhalt, realtime: this.realtime, hintVector: this.hintVector });
    Object.assign(h.stats, this.stats);
    h.stealTime = [...this.stealTime];
    return h;
  }

  cpuid(_c: Vcpu, leaf: number): readonly [number, number, number, number] | undefined {
    if (leaf === KVM_CPUID_SIGNATURE) return [KVM_CPUID_FEATURES, ...KVM_SIGNATURE];
    if (leaf === KVM_CPUID_FEATURES) {
      const features = (1 << KvmFeature.STEAL_TIME) | (this.pvUnhalt ? 1 << KvmFeature.PV_UNHALT : 0);
      const hints = this.realtime ? 1 << KvmHint.REALTIME : 0;
      return [features, 0, 0, hints];
    }
    return undefined;
  }

  hypercall(c: Vcpu, kind: 'vmcall' | 'vmmcall', insn: Insn): HypercallOutcome {
    const native = this.vendor === 'intel' ? 'vmcall' : 'vmmcall';
    if (kind !== native) {
      // KVM intercepts the #UD and rewrites the instruction (emulator_fix_hypercall), then
      // re-enters the guest at the same address. The VM exit and entry serialize this vCPU only.
      this.machine.memory.poke(insn.address, HYPERCALL_BYTES[this.vendor], WRITER_HOST);
      c.serializedSeq = this.machine.memory.textSeq;
      this.stats.fixups++;
      return 'retry';
    }
    this.stats.hypercalls++;
    const nr = c.lo[Reg.RAX]! >>> 0;
    if (nr === KvmHypercall.KICK_CPU && this.pvUnhalt) {
      const target = c.lo[Reg.RCX]! >>> 0;
      if (target < this.machine.vcpus.length) {
        this.stats.kicks++;
        this.machine.kick(target);
        c.setReg64(Reg.RAX, 0n);
        return 'done';
      }
    }
    c.setReg64(Reg.RAX, BigInt(-KVM_ENOSYS));
    return 'done';
  }

  /** Write vCPU `cpu`'s steal-time `preempted` byte, as KVM does on vcpu_put/vcpu_load. */
  setPreempted(cpu: number, preempted: boolean): void {
    const at = this.stealTime[cpu];
    if (at === undefined) return;
    this.machine.memory.writeBytes(at + STEAL_TIME_PREEMPTED_OFFSET, [preempted ? KVM_VCPU_PREEMPTED : 0]);
  }

  /** Grant or revoke KVM_HINTS_REALTIME while the guest runs, and tell every vCPU. */
  setRealtimeHint(on: boolean): void {
    if (this.realtime === on) return;
    this.realtime = on;
    this.stats.hintChanges++;
    for (const c of this.machine.vcpus) this.machine.raiseIrq(c.id, this.hintVector);
  }
}
