/**
 * Boot-time paravirt decisions and patching: kvm_spinlock_init() (arch/x86/kernel/kvm.c) picks
 * the lock flavour, and apply_paravirt() (arch/x86/kernel/alternative.c) rewrites every
 * `.parainstructions` site before the other CPUs start, so no cross-modifying-code rule applies.
 */
import type { Memory } from '../machine/memory.ts';
import { KVM_CPUID_FEATURES, KVM_CPUID_SIGNATURE, KVM_SIGNATURE, KvmFeature, KvmHint } from '../host/kvm-abi.ts';
import { PV_OPS, PvOp, opFlavor, patchBytes, type Flavor, type OpTargets, type PatchSite } from './pv-ops.ts';

/** What the guest reads from CPUID (leaf → eax, ebx, ecx, edx), or nothing on bare metal. */
export type CpuidReader = (leaf: number) => readonly [number, number, number, number] | undefined;

export interface SpinlockDecision {
  flavor: Flavor;
  /** The line Linux prints (pr_info in kvm_spinlock_init). */
  reason: string;
}

/** kvm_spinlock_init(), with Linux's reasons in Linux's order. */
export function kvmSpinlockInit(cpuid: CpuidReader, vcpus: number, nopvspin: boolean): SpinlockDecision {
  if (!onKvm(cpuid)) return { flavor: 'native', reason: 'not running on KVM: native spinlocks' };
  const [features, , , hints] = cpuid(KVM_CPUID_FEATURES) ?? [0, 0, 0, 0];
  if ((features & (1 << KvmFeature.PV_UNHALT)) === 0) return { flavor: 'native', reason: 'PV spinlocks disabled, no host support' };
  if ((hints & (1 << KvmHint.REALTIME)) !== 0) return { flavor: 'native', reason: 'PV spinlocks disabled with KVM_HINTS_REALTIME hints' };
  if (vcpus === 1) return { flavor: 'native', reason: 'PV spinlocks disabled, single CPU' };
  if (nopvspin) return { flavor: 'native', reason: 'PV spinlocks disabled, forced by "nopvspin" parameter' };
  return { flavor: 'pv', reason: 'PV spinlocks enabled' };
}

/** Whether CPUID says this is KVM (leaf 0x40000000's "KVMKVMKVM"). */
function onKvm(cpuid: CpuidReader): boolean {
  const sig = cpuid(KVM_CPUID_SIGNATURE);
  return sig !== undefined && sig[1] === KVM_SIGNATURE[0] && sig[2] === KVM_SIGNATURE[1] && sig[3] === KVM_SIGNATURE[2];
}

/**
 * kvm_guest_init()'s choice of vcpu_is_preempted (arch/x86/kernel/kvm.c, Linux 6.1):
 * __kvm_vcpu_is_preempted when the host offers KVM_FEATURE_STEAL_TIME, independent of the lock
 * flavour kvm_spinlock_init() picks; the native `xor %rax,%rax` otherwise.
 */
export function kvmVcpuIsPreempted(cpuid: CpuidReader): Flavor {
  if (!onKvm(cpuid)) return 'native';
  const [features] = cpuid(KVM_CPUID_FEATURES) ?? [0, 0, 0, 0];
  return (features & (1 << KvmFeature.STEAL_TIME)) !== 0 ? 'pv' : 'native';
}

/** The value of each pv_ops slot for a flavour (what the unpatched indirect calls would reach). */
export function pvOpsTable(flavor: Flavor, targets: OpTargets): Map<PvOp, number> {
  const t = new Map<PvOp, number>();
  for (const op of PV_OPS) t.set(op, opFlavor(op, flavor, targets) === 'pv' ? targets.pv[op] : targets.native[op]);
  return t;
}

/** apply_paravirt(): write every site's bytes for `flavor`, as the boot CPU does alone. */
export function applyParavirt(mem: Memory, sites: readonly PatchSite[], flavor: Flavor, targets: OpTargets): void {
  for (const s of sites) mem.writeBytes(s.address, patchBytes(s, flavor, targets));
}
