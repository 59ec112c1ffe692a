/**
 * KVM's paravirtual ABI as a guest sees it (Linux include/uapi/asm/kvm_para.h,
 * Documentation/virt/kvm/x86/cpuid.rst and hypercalls.rst).
 */

/** CPUID leaf with the hypervisor signature "KVMKVMKVM\0\0\0" in ebx, ecx, edx. */
export const KVM_CPUID_SIGNATURE = 0x40000000;
/** CPUID leaf with features in eax and hints in edx. */
export const KVM_CPUID_FEATURES = 0x40000001;

/** Feature bits in KVM_CPUID_FEATURES.eax. */
export const enum KvmFeature {
  STEAL_TIME = 5,
  PV_EOI = 6,
  PV_UNHALT = 7,
  PV_TLB_FLUSH = 9,
  PV_SEND_IPI = 11,
}

/** Hint bits in KVM_CPUID_FEATURES.edx. */
export const enum KvmHint {
  /** The vCPUs are never preempted for an unlimited time: native spinlocks are best. */
  REALTIME = 0,
}

/** Hypercall numbers (in RAX). */
export const enum KvmHypercall {
  KICK_CPU = 5,
}

export const KVM_ENOSYS = 1000;

/** struct kvm_steal_time: `preempted` is the byte at offset 16 (KVM_VCPU_PREEMPTED = 1). */
export const STEAL_TIME_PREEMPTED_OFFSET = 16;
export const STEAL_TIME_SIZE = 64;
export const KVM_VCPU_PREEMPTED = 1;

/** "KVMKVMKVM\0\0\0" as the three little-endian dwords of ebx, ecx, edx. */
export const KVM_SIGNATURE: readonly [number, number, number] = [0x4b4d564b, 0x564b4d56, 0x0000004d];

/** The hypercall instruction of each vendor: Intel VMX `vmcall` (0f 01 c1), AMD SVM `vmmcall` (0f 01 d9). */
export const HYPERCALL_BYTES: Record<'intel' | 'amd', readonly number[]> = {
  intel: [0x0f, 0x01, 0xc1],
  amd: [0x0f, 0x01, 0xd9],
};
