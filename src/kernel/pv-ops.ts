/**
 * The five pv_lock_ops (seed 001), their call sites, and the bytes Linux's paravirt patching writes
 * at a site for each flavour (arch/x86/kernel/paravirt.c paravirt_patch, paravirt_patch_call,
 * native_patch; arch/x86/kernel/alternative.c apply_paravirt).
 */
import { nopPadding } from '../x86/nops.ts';

import { hexAddress } from '../x86/format.ts';

export enum PvOp {
  QueuedSpinLockSlowpath = 0,
  QueuedSpinUnlock = 1,
  Wait = 2,
  Kick = 3,
  VcpuIsPreempted = 4,
}

export const PV_OPS: readonly PvOp[] = [PvOp.QueuedSpinLockSlowpath, PvOp.QueuedSpinUnlock, PvOp.Wait, PvOp.Kick, PvOp.VcpuIsPreempted];

export const PV_OP_NAMES: Record<PvOp, string> = {
  [PvOp.QueuedSpinLockSlowpath]: 'queued_spin_lock_slowpath',
  [PvOp.QueuedSpinUnlock]: 'queued_spin_unlock',
  [PvOp.Wait]: 'wait',
  [PvOp.Kick]: 'kick',
  [PvOp.VcpuIsPreempted]: 'vcpu_is_preempted',
};

/**
 * Every lock-op site is the 6-byte `call *pv_ops+off(%rip)` (ff 15 rel32), as in Linux 6.1: the
 * `.parainstructions` len is that of PARAVIRT_CALL (arch/x86/include/asm/paravirt_types.h,
 * _paravirt_alt), and the inlined native unlock and vcpu_is_preempted are ALTERNATIVEs of the same
 * 6 bytes (PVOP_ALT_VCALLEE1 / PVOP_ALT_CALLEE1 in asm/paravirt.h), so `c6 07 00` and `48 31 c0`
 * get a 3-byte NOP (`0f 1f 00`) and a direct CALL a 1-byte one (`90`). The 7-byte callee-save
 * sites of seed 001 (`e8 rel32` + `66 90`) are older kernels' (PVOP_CALLEE with clobbers).
 */
export const SITE_LENGTH: Record<PvOp, number> = {
  [PvOp.QueuedSpinLockSlowpath]: 6,
  [PvOp.QueuedSpinUnlock]: 6,
  [PvOp.Wait]: 6,
  [PvOp.Kick]: 6,
  [PvOp.VcpuIsPreempted]: 6,
};

/**
 * The ops a lock-flavour switch changes: the four kvm_spinlock_init() sets when it enables PV
 * spinlocks (arch/x86/kernel/kvm.c, Linux 6.1). vcpu_is_preempted is not among them: kvm_guest_init()
 * sets it to __kvm_vcpu_is_preempted whenever the host offers KVM_FEATURE_STEAL_TIME, whatever
 * kvm_spinlock_init decides (REALTIME hint, nopvspin, one vCPU), so it is fixed at boot.
 */
export const LOCK_FLAVOR_OPS: readonly PvOp[] = [PvOp.QueuedSpinLockSlowpath, PvOp.QueuedSpinUnlock, PvOp.Wait, PvOp.Kick];

/** One entry of .parainstructions: struct paravirt_patch_site {instr, type, len}. */
export interface PatchSite {
  address: number;
  type: PvOp;
  len: number;
}

export type Flavor = 'native' | 'pv';

/** Where each op's implementations live in the guest image, and what boot fixed. */
export interface OpTargets {
  native: Record<PvOp, number>;
  pv: Record<PvOp, number>;
  /**
   * vcpu_is_preempted's implementation, chosen once by kvm_guest_init(): `pv`
   * (__kvm_vcpu_is_preempted) when the host offers steal time, `native` otherwise. No switch of
   * the lock flavour changes it (LOCK_FLAVOR_OPS).
   */
  vcpuIsPreempted: Flavor;
}

/** The flavour op `op` runs while the lock ops are `flavor` (the one op outside them: boot's). */
export function opFlavor(op: PvOp, flavor: Flavor, targets: OpTargets): Flavor {
  return LOCK_FLAVOR_OPS.includes(op) ? flavor : targets.vcpuIsPreempted;
}

function rel32(from: number, to: number): number[] {
  const d = (to - from) | 0;
  return [d & 0xff, (d >>> 8) & 0xff, (d >>> 16) & 0xff, (d >>> 24) & 0xff];
}

function pad(bytes: number[], len: number): Uint8Array {
  if (bytes.length > len) throw new RangeError(`replacement of ${bytes.length} bytes does not fit a ${len}-byte site`);
  const out = new Uint8Array(len);
  out.set(bytes);
  out.set(nopPadding(len - bytes.length), bytes.length);
  return out;
}

/** A direct call to `target` from the site, NOP-padded (paravirt_patch_call). */
export function directCall(site: PatchSite, target: number): Uint8Array {
  return pad([0xe8, ...rel32(site.address + 5, target)], site.len);
}

/**
 * The bytes boot patching leaves at `site` for `flavor` (vcpu_is_preempted: for its boot-time
 * flavour). Native unlock and vcpu_is_preempted are inlined (Linux 6.1: apply_paravirt writes a
 * direct call, then apply_alternatives replaces it with the ALT_NOT(X86_FEATURE_PVUNLOCK /
 * VCPUPREEMPT) code, `movb $0,(%rdi)` or `xor %rax,%rax`, NOP-padded); native wait and kick are
 * paravirt_nop, so the site becomes NOPs; everything else becomes a direct call.
 */
export function patchBytes(site: PatchSite, flavor: Flavor, targets: OpTargets): Uint8Array {
  if (opFlavor(site.type, flavor, targets) === 'native') {
    switch (site.type) {
      case PvOp.QueuedSpinUnlock: return pad([0xc6, 0x07, 0x00], site.len);
      case PvOp.VcpuIsPreempted: return pad([0x48, 0x31, 0xc0], site.len);
      case PvOp.Wait:
      case PvOp.Kick: return nopPadding(site.len);
      default: return directCall(site, targets.native[site.type]);
    }
  }
  return directCall(site, targets.pv[site.type]);
}

/** The sites whose bytes differ between the two lock flavours: what a switch must rewrite. */
export function changingSites(sites: readonly PatchSite[], from: Flavor, to: Flavor, targets: OpTargets): PatchSite[] {
  return sites.filter((s) => {
    const a = patchBytes(s, from, targets), b = patchBytes(s, to, targets);
    return a.some((x, i) => x !== b[i]);
  });
}

/** The unpatched site: `call *pv_ops+8*type(%rip)` (ff 15 rel32), NOP-padded. */
export function indirectCall(site: PatchSite, pvOpsBase: number): Uint8Array {
  return pad([0xff, 0x15, ...rel32(site.address + 6, pvOpsBase + 8 * site.type)], site.len);
}

/**
 * The first site whose bytes in `text` are not `flavor`'s (what a patcher expects before it
 * switches away from `flavor`), as a one-line description; undefined when every site matches.
 * Linux's jump_label code BUG()s on such a site; the switches here refuse and report it.
 */
export function unexpectedSite(text: { readBytes(address: number, len: number): Uint8Array }, sites: readonly PatchSite[], flavor: Flavor, targets: OpTargets): string | undefined {
  for (const s of sites) {
    const want = patchBytes(s, flavor, targets);
    const have = text.readBytes(s.address, s.len);
    if (have.some((b, i) => b !== want[i])) {
      const hex = (xs: Uint8Array) => Array.from(xs, (b) => b.toString(16).padStart(2, '0')).join(' ');
      return `${PV_OP_NAMES[s.type]} site at ${hexAddress(s.address)} holds [${hex(have)}], not the ${flavor} bytes [${hex(want)}]`;
    }
  }
  return undefined;
}
