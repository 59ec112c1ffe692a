/**
 * A switch's preparation: what the target flavour's ops need before any of them can run. Linux
 * sets the PV ops up only at boot (kvm_spinlock_init() in arch/x86/kernel/kvm.c calls
 * __pv_init_lock_hash(), an __init function, just before it points pv_ops.lock at the PV code), so
 * a native boot has no PV lock hash, and a runtime native -> PV switch must allocate it before the
 * first PV slowpath can run: otherwise that slowpath faults in pv_hash() on a NULL table
 * (src/kernel/pv-hash.ts). Every protocol (text_poke_bp, v1, v2) runs its `prepare` hook on the
 * patcher before it writes anything; a protocol module may override it (src/patching/protocol-api.ts).
 */
import type { ServiceContext } from '../machine/service.ts';
import type { Flavor } from '../kernel/pv-ops.ts';
import { pvInitLockHash, type PvHashTable } from '../kernel/pv-hash.ts';

/** What a prepare hook sees: the patcher's context, the flavours, the guest's PV lock hash. */
export interface SwitchPrepare {
  readonly ctx: ServiceContext;
  readonly from: Flavor;
  readonly to: Flavor;
  readonly hash: PvHashTable;
}

export type PrepareHook = (p: SwitchPrepare) => Generator<number, void, void>;

/** The stock preparation: a switch to PV allocates the PV lock hash if the boot did not. */
export const PREPARE: PrepareHook = function* ({ ctx, to, hash }) {
  if (to === 'pv') yield* pvInitLockHash(ctx, hash);
};

/** A negative control: prepare nothing (a native -> PV switch then faults in pv_hash). */
export const PREPARE_NOTHING: PrepareHook = function* () {};
