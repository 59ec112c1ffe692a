/**
 * Switching the real kernel's pv_lock_ops (issue 10, item 4), first as the stop-the-world model:
 * every vCPU is stopped where it runs no lock code, the bytes are written, every vCPU goes on.
 * - The plan: for each `.parainstructions` site of a `lock.*` pv_ops slot, the bytes the boot
 *   patching of the target flavour writes there (two reproduced boots, compared), only where they
 *   differ: ops that do not change are left alone (`vcpu_is_preempted` stays KVM's: steal time is
 *   on either way, so a KVM hint switch changes four ops, not five). The lock slots of pv_ops get
 *   the target boot's pointers.
 * - Preparation: the PV slowpath hashes a halting waiter's lock in pv_lock_hash, which only a PV
 *   boot allocates (__pv_init_lock_hash is __init). A native → PV switch must allocate it first;
 *   without that the first waiter that halts faults in pv_hash (the NULL table).
 * The protocols that do this under load are v1-switch.ts and v2-switch.ts.
 */
import { pvOpsSlotName } from '../elf/pv-ops-slots.ts';
import { drainAll } from '../machine/access.ts';
import type { LinuxBoot } from './kernel.ts';
import { lockFlavorOf, type LinuxGuest, type LinuxLockFlavor } from './guest.ts';
import { pvInitLockHash } from './memory-map.ts';
import { LinuxGuestError } from './errors.ts';
import { hexAddress, hexBytes } from '../x86/format.ts';

export interface LockOpSitePatch {
  readonly address: number;
  readonly slot: string;
  readonly from: Uint8Array;
  readonly to: Uint8Array;
}

export interface LockOpSwitchPlan {
  readonly from: LinuxLockFlavor;
  readonly to: LinuxLockFlavor;
  readonly target: LinuxBoot;
  readonly sites: readonly LockOpSitePatch[];
  /** pv_ops slots that change: the slot's address and the target's pointer. */
  readonly slots: readonly { readonly slot: string; readonly address: number; readonly value: number }[];
}

function slotValue(boot: LinuxBoot, i: number): number | undefined {
  const base = boot.setup.pvOps.address;
  if (base === undefined) return undefined;
  const v = boot.setup.env.pvOpAt(base + 8 * i);
  if (v !== undefined) return v;
  const b = boot.kernel.image.read(base + 8 * i, 8);
  return b === undefined ? undefined : Number(new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0, true));
}

/** What a switch from the flavour `from` booted to the flavour `to` boots writes. */
export function lockOpSwitchPlan(from: LinuxBoot, to: LinuxBoot): LockOpSwitchPlan {
  if (from.kernel !== to.kernel) throw new LinuxGuestError('a lock-op switch plan compares two boots of one kernel');
  const k = from.kernel;
  const sites: LockOpSitePatch[] = [];
  const changedSlots = new Set<number>();
  for (const p of k.tables.parainstructions) {
    const slot = pvOpsSlotName(p.type);
    if (!slot.startsWith('lock.')) continue;
    const a = from.result.text.read(p.address, p.len)!;
    const b = to.result.text.read(p.address, p.len)!;
    if (a.every((x, i) => x === b[i])) continue;
    sites.push({ address: p.address, slot, from: a.slice(), to: b.slice() });
    changedSlots.add(p.type);
  }
  const base = from.setup.pvOps.address ?? 0;
  const slots = [...changedSlots].sort((x, y) => x - y).map((i) => ({ slot: pvOpsSlotName(i), address: base + 8 * i, value: slotValue(to, i)! }));
  return { from: lockFlavorOf(from), to: lockFlavorOf(to), target: to, sites, slots };
}

export interface StopMachineSwitchOptions {
  /** Allocate what the target flavour needs (the PV hash on native → PV), as a runtime switch must. Default true. */
  readonly prepare?: boolean;
}

/**
 * Apply `plan` to `guest` with every vCPU stopped (between runs) and no vCPU inside lock code
 * (LinuxGuest.quiescent): store buffers drain, the bytes are written as stop_machine's patcher
 * would after syncing every CPU, so no vCPU fetches unsynchronized bytes.
 */
export function stopMachineSwitch(guest: LinuxGuest, plan: LockOpSwitchPlan, o: StopMachineSwitchOptions = {}): void {
  if (guest.flavor !== plan.from) throw new LinuxGuestError(`the guest runs ${guest.flavor} locks; this plan switches from ${plan.from}`);
  if (!guest.quiescent()) throw new LinuxGuestError('a vCPU is inside lock code: stop the run where none is (LinuxGuest.quiescent)');
  const m = guest.machine;
  for (const c of m.vcpus) drainAll(m.memory, c);
  if (plan.to === 'pv' && guest.pvHash === undefined && (o.prepare ?? true)) guest.pvHash = pvInitLockHash(m.memory, plan.target, m.vcpus.length);
  for (const s of plan.sites) m.memory.writeBytes(s.address, s.to);
  for (const s of plan.slots) m.memory.writeU64(s.address, s.value);
  guest.flavor = plan.to;
}

/**
 * After `plan` (the last of a switch's plans) ran: the first of its sites or pv_ops slots whose
 * bytes are not what a fresh boot of the target flavour has there, in words; undefined when the
 * text is byte-identical. Store buffers are drained first (the slots are written by stores).
 */
export function textDiffersFromBoot(guest: LinuxGuest, plan: LockOpSwitchPlan): string | undefined {
  const m = guest.machine;
  for (const c of m.vcpus) drainAll(m.memory, c);
  for (const site of plan.sites) {
    const now = m.memory.readBytes(site.address, site.to.length);
    if (!now.every((b, i) => b === site.to[i])) return `${site.slot} site ${hexAddress(site.address)} holds ${hexBytes(now)}, a ${plan.to} boot ${hexBytes(site.to)}`;
  }
  for (const slot of plan.slots) {
    const now = m.memory.readU64(slot.address);
    if (now !== slot.value) return `pv_ops ${slot.slot} is ${hexAddress(now)}, a ${plan.to} boot's ${hexAddress(slot.value)}`;
  }
  return undefined;
}
