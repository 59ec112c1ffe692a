/**
 * The platforms boot patching is reproduced for, and what each does to pv_ops before
 * apply_paravirt reads it:
 * - `bare-metal`: pv_ops as the image initialises it (native functions, _paravirt_nop).
 * - `kvm`: a KVM guest with QEMU's default PV features (arch/x86/kernel/kvm.c): io_delay →
 *   kvm_io_delay (NOP_IO_DELAY); vcpu_is_preempted → __kvm_vcpu_is_preempted (STEAL_TIME);
 *   flush_tlb_multi/tlb_remove_table (PV_TLB_FLUSH, no REALTIME); PV spinlocks
 *   (kvm_spinlock_init: PV_UNHALT, >1 CPU, no REALTIME, no `nopvspin`), and virt_spin_lock_key
 *   as kvm_spinlock_init leaves it: kept on only when the host lacks PV_UNHALT (the test-and-set
 *   virt_spin_lock path), disabled at its `out:` label otherwise (REALTIME, nopvspin, PV locks).
 * - `kvm-realtime`: KVM_HINTS_REALTIME: no PV spinlocks, no PV TLB flush (seed 000's case).
 * - `xen-pv`: X86_FEATURE_XENPV; Xen replaces pv_ops.cpu, .irq and .mmu wholesale and the lock
 *   ops (xen-pv-ops.ts; needs symbols).
 * Then paravirt_set_cap() (paravirt-spinlocks.c) turns non-native unlock / vcpu_is_preempted into
 * X86_FEATURE_PVUNLOCK / VCPUPREEMPT, which the ALT_NOT alternatives at those sites read.
 */
import type { BootEnv, PvOpTarget } from './boot-env.ts';
import { bootCpu, parseCommandLine, type BootCpu } from './boot-cpu.ts';
import { featureByName } from './cpufeatures.ts';
import { parseCpuSpec } from './cpu-models.ts';
import { InspectError } from './errors.ts';
import type { KernelImage } from './image.ts';
import { readPvOps, type PvOpsTable } from './pv-ops-table.ts';
import { pvOpsSlot, PV_OPS_SLOTS } from './pv-ops-slots.ts';
import { nativeInline510 } from './native-patch-5.10.ts';
import { uniprocessorBoot } from './apply-smp-locks.ts';
import { bootDecisions, type BootDecisions, type KernelConfig } from './boot-keys.ts';
import { XEN_PV_LOCK_OPS, XEN_PV_OPS, XEN_REPLACED_GROUPS } from './xen-pv-ops.ts';
import type { ParaSite } from './tables.ts';

export { PLATFORMS, type Platform } from './platform-names.ts';
import { PLATFORMS, type Platform } from './platform-names.ts';

/** A pv_ops slot a platform points at a named function, at _paravirt_nop (`nop`) or at NULL (`bug`). */
type SlotAssignment = readonly [slot: string, symbol: string];

function kvmAssignments(realtime: boolean, nopvspin: boolean, hasMwait: boolean, pvUnhalt: boolean): SlotAssignment[] {
  const out: SlotAssignment[] = [
    ['cpu.io_delay', 'kvm_io_delay'],
    ['lock.vcpu_is_preempted', '__raw_callee_save___kvm_vcpu_is_preempted'],
  ];
  if (!realtime && !hasMwait) {
    out.push(['mmu.flush_tlb_multi', 'kvm_flush_tlb_multi'], ['mmu.tlb_remove_table', 'tlb_remove_table']);
  }
  if (pvUnhalt && !realtime && !nopvspin) {
    out.push(
      ['lock.queued_spin_lock_slowpath', '__pv_queued_spin_lock_slowpath'],
      ['lock.queued_spin_unlock', '__raw_callee_save___pv_queued_spin_unlock'],
      ['lock.wait', 'kvm_wait'],
      ['lock.kick', 'kvm_kick_cpu'],
    );
  }
  return out;
}

/** Xen PV: the groups it replaces wholesale start out NULL; then its functions (xen-pv-ops.ts). */
function xenAssignments(nopvspin: boolean): SlotAssignment[] {
  const out: SlotAssignment[] = PV_OPS_SLOTS.filter((slot) => XEN_REPLACED_GROUPS.some((g) => slot.startsWith(`${g}.`))).map((slot) => [slot, XEN_PV_OPS[slot] ?? 'bug'] as const);
  if (!nopvspin) out.push(...Object.entries(XEN_PV_LOCK_OPS));
  return out;
}

export interface BootOptions {
  readonly platform: Platform;
  /** `Skylake-Client`, `EPYC,-avx2`, `+pcid`. */
  readonly cpu: string;
  /** Kernel command line, e.g. `mitigations=off nopvspin`. */
  readonly cmdline: string;
  /**
   * When the image does not name a function a platform installs, call the slot's native
   * function instead of failing: the bytes then have the right shape (a 5-byte CALL) but not the
   * right target. For runtime-switch analysis, which only needs shapes.
   */
  readonly standInForUnnamed?: boolean;
  /** The kernel's .config, for boot decisions it makes from its configuration (preempt model). */
  readonly config?: KernelConfig;
  /**
   * KVM platforms: the host advertises KVM_FEATURE_PV_UNHALT (default true, as QEMU/KVM does).
   * Without it kvm_spinlock_init keeps native lock ops and virt_spin_lock_key on.
   */
  readonly kvmPvUnhalt?: boolean;
  /** Linux 5.10's apply_paravirt writes native instructions inline (native_patch). */
  readonly nativePatch510?: boolean;
}

/**
 * kvm_spinlock_init() (arch/x86/kernel/kvm.c, 6.1): without PV_UNHALT it returns early and
 * virt_spin_lock_key stays on (virt_spin_lock's test-and-set beats a fair lock whose holder may
 * be preempted); every other outcome (REALTIME, one CPU, nopvspin, PV locks) ends at `out:
 * static_branch_disable(&virt_spin_lock_key)`. Other platforms keep bootDecisions' answer.
 */
function kvmSpinlockKey(image: KernelImage, options: BootOptions, d: BootDecisions): BootDecisions {
  const key = image.symbols.addressOf('virt_spin_lock_key');
  if (key === undefined || !(options.platform === 'kvm' || options.platform === 'kvm-realtime')) return d;
  const on = options.kvmPvUnhalt === false;
  return {
    ...d,
    jumpKeyAtBoot: (k) => (k === key ? on : d.jumpKeyAtBoot(k)),
    notes: [...d.notes, `virt_spin_lock_key: ${on ? 'kept enabled (no KVM_FEATURE_PV_UNHALT)' : 'disabled'}, kvm_spinlock_init`],
  };
}

export interface BootSetup {
  readonly env: BootEnv;
  readonly cpu: BootCpu;
  readonly pvOps: PvOpsTable;
  readonly options: BootOptions;
}

export function bootSetup(image: KernelImage, sites: readonly ParaSite[], options: BootOptions): BootSetup {
  if (!PLATFORMS.includes(options.platform)) throw new InspectError(`unknown platform '${options.platform}' (known: ${PLATFORMS.join(', ')})`);
  const cmdline = parseCommandLine(options.cmdline);
  const spec = parseCpuSpec(options.cpu);
  const cpu = bootCpu(spec.model, spec.add, spec.remove, cmdline, options.platform === 'xen-pv');
  const pvOps = readPvOps(image, sites);
  const slots: PvOpTarget[] = pvOps.slots.map((addr) =>
    addr === 0 ? { kind: 'bug' as const, address: image.symbols.addressOf('paravirt_BUG') ?? 0 } : addr === pvOps.paravirtNop ? { kind: 'nop' as const } : { kind: 'function' as const, address: addr },
  );
  const mwait = featureByName('MWAIT')!.bit;
  const assignments =
    options.platform === 'kvm' || options.platform === 'kvm-realtime'
      ? kvmAssignments(options.platform === 'kvm-realtime', cmdline.options.has('nopvspin'), cpu.features.has(mwait), options.kvmPvUnhalt ?? true)
      : options.platform === 'xen-pv'
        ? xenAssignments(cmdline.options.has('nopvspin') || cmdline.options.has('xen_nopvspin'))
        : [];
  const missing: string[] = [];
  const overridden = new Set<number>();
  const paravirtBug = image.symbols.addressOf('paravirt_BUG') ?? 0;
  for (const [slot, symbol] of assignments) {
    const i = pvOpsSlot(slot)!;
    overridden.add(i);
    if (symbol === 'nop' || symbol === 'bug') {
      slots[i] = symbol === 'nop' ? { kind: 'nop' } : { kind: 'bug', address: paravirtBug };
      continue;
    }
    const address = image.symbols.addressOf(symbol) ?? (options.standInForUnnamed === true ? pvOps.slots[i] : undefined);
    if (address === undefined) missing.push(symbol);
    else slots[i] = { kind: 'function', address, name: symbol };
  }
  if (missing.length > 0) {
    throw new InspectError(
      `platform ${options.platform} needs the addresses of ${missing.join(', ')}, which this image does not name ` +
        '(give an unstripped vmlinux or System.map with --symbols; scripts/get-kernel.sh --symbols keeps one beside the cached vmlinux, where inspect finds it)',
    );
  }
  // paravirt_set_cap(): non-native lock ops become features the alternatives test.
  const features = new Set(cpu.features);
  const native = (slot: string): boolean => !overridden.has(pvOpsSlot(slot)!);
  if (!native('lock.queued_spin_unlock')) features.add(featureByName('PVUNLOCK')!.bit);
  if (!native('lock.vcpu_is_preempted')) features.add(featureByName('VCPUPREEMPT')!.bit);

  const decisions = kvmSpinlockKey(image, options, bootDecisions(image, features, cmdline, options.config));
  const returnThunk = image.symbols.addressOf('__x86_return_thunk');
  const active = cpu.returnThunk === '__x86_return_thunk' ? returnThunk : image.symbols.addressOf(cpu.returnThunk);
  const env: BootEnv = {
    features,
    pvOp: (slot) => slots[slot] ?? { kind: 'bug', address: image.symbols.addressOf('paravirt_BUG') ?? 0 },
    indirectThunkArray: image.symbols.addressOf('__x86_indirect_thunk_rax'),
    returnThunk,
    activeReturnThunk: active,
    itsReturnThunk: cpu.returnThunk === 'its_return_thunk',
    bugFunc: image.symbols.addressOf('BUG_func'),
    nopFunc: image.symbols.addressOf('nop_func'),
    pvOpAt: (slotAddress) => {
      if (pvOps.address === undefined || !overridden.has((slotAddress - pvOps.address) / 8)) return undefined;
      const t = slots[(slotAddress - pvOps.address) / 8];
      return t === undefined ? undefined : t.kind === 'function' ? t.address : t.kind === 'nop' ? (pvOps.paravirtNop ?? 0) : 0;
    },
    no5lvl: cmdline.options.has('no5lvl'),
    uniprocessor: uniprocessorBoot(cmdline.options),
    ...(options.nativePatch510 === true
      ? { nativeInline: (slot: number, len: number) => (slots[slot]?.kind === 'function' && !overridden.has(slot) ? nativeInline510(image.symbols.nameAt((slots[slot] as { address: number }).address), len) : undefined) }
      : {}),
    fentry: image.symbols.addressOf('__fentry__'),
    staticCalls: {
      rethunk: features.has(featureByName('RETHUNK')!.bit) ? active : undefined,
      return0: image.symbols.addressOf('__static_call_return0'),
    },
    ...decisions,
  };
  return { env, cpu: { ...cpu, features }, pvOps, options };
}
