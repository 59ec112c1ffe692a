/**
 * The platforms boot patching is reproduced for, and what each does to pv_ops before
 * apply_paravirt reads it:
 * - `bare-metal`: pv_ops as the image initialises it (native functions, _paravirt_nop).
 * - `kvm`: a KVM guest with QEMU's default PV features (arch/x86/kernel/kvm.c): io_delay →
 *   kvm_io_delay (NOP_IO_DELAY); vcpu_is_preempted → __kvm_vcpu_is_preempted (STEAL_TIME);
 *   flush_tlb_multi/tlb_remove_table (PV_TLB_FLUSH, no REALTIME); PV spinlocks
 *   (kvm_spinlock_init: PV_UNHALT, >1 CPU, no REALTIME, no `nopvspin`).
 * - `kvm-realtime`: KVM_HINTS_REALTIME: no PV spinlocks, no PV TLB flush (seed 000's case).
 * - `xen-pv`: X86_FEATURE_XENPV; every pv_ops slot Xen sets is replaced (needs symbols).
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
import { pvOpsSlot } from './pv-ops-slots.ts';
import type { ParaSite } from './tables.ts';

export type Platform = 'bare-metal' | 'kvm' | 'kvm-realtime' | 'xen-pv';
export const PLATFORMS: readonly Platform[] = ['bare-metal', 'kvm', 'kvm-realtime', 'xen-pv'];

/** A pv_ops slot a platform points at a named function (or at _paravirt_nop). */
type SlotAssignment = readonly [slot: string, symbol: string];

function kvmAssignments(realtime: boolean, nopvspin: boolean, hasMwait: boolean): SlotAssignment[] {
  const out: SlotAssignment[] = [
    ['cpu.io_delay', 'kvm_io_delay'],
    ['lock.vcpu_is_preempted', '__raw_callee_save___kvm_vcpu_is_preempted'],
  ];
  if (!realtime && !hasMwait) {
    out.push(['mmu.flush_tlb_multi', 'kvm_flush_tlb_multi'], ['mmu.tlb_remove_table', 'tlb_remove_table']);
  }
  if (!realtime && !nopvspin) {
    out.push(
      ['lock.queued_spin_lock_slowpath', '__pv_queued_spin_lock_slowpath'],
      ['lock.queued_spin_unlock', '__raw_callee_save___pv_queued_spin_unlock'],
      ['lock.wait', 'kvm_wait'],
      ['lock.kick', 'kvm_kick_cpu'],
    );
  }
  return out;
}

/** Xen PV (arch/x86/xen/enlighten_pv.c, irq.c, mmu_pv.c, spinlock.c): the slots that decide patch bytes most. */
const XEN_PV: SlotAssignment[] = [
  ['irq.save_fl', 'xen_save_fl_direct'],
  ['irq.irq_disable', 'xen_irq_disable_direct'],
  ['irq.irq_enable', 'xen_irq_enable_direct'],
  ['irq.safe_halt', 'xen_safe_halt'],
  ['irq.halt', 'xen_halt'],
  ['mmu.read_cr2', 'xen_read_cr2'],
  ['mmu.write_cr2', 'xen_write_cr2'],
  ['mmu.read_cr3', 'xen_read_cr3'],
  ['mmu.write_cr3', 'xen_write_cr3_init'],
  ['cpu.cpuid', 'xen_cpuid'],
  ['cpu.io_delay', 'xen_io_delay'],
  ['lock.queued_spin_lock_slowpath', '__pv_queued_spin_lock_slowpath'],
  ['lock.queued_spin_unlock', '__raw_callee_save___pv_queued_spin_unlock'],
  ['lock.wait', 'xen_qlock_wait'],
  ['lock.kick', 'xen_qlock_kick'],
  ['lock.vcpu_is_preempted', '__raw_callee_save_xen_vcpu_stolen'],
];

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
      ? kvmAssignments(options.platform === 'kvm-realtime', cmdline.options.has('nopvspin'), cpu.features.has(mwait))
      : options.platform === 'xen-pv'
        ? XEN_PV
        : [];
  const missing: string[] = [];
  const overridden = new Set<number>();
  for (const [slot, symbol] of assignments) {
    const i = pvOpsSlot(slot)!;
    const address = image.symbols.addressOf(symbol) ?? (options.standInForUnnamed === true ? pvOps.slots[i] : undefined);
    if (address === undefined) missing.push(symbol);
    else {
      slots[i] = { kind: 'function', address, name: symbol };
      overridden.add(i);
    }
  }
  if (missing.length > 0) {
    throw new InspectError(
      `platform ${options.platform} needs the addresses of ${missing.join(', ')}, which this image does not name ` +
        '(give an unstripped vmlinux or System.map with --symbols)',
    );
  }
  // paravirt_set_cap(): non-native lock ops become features the alternatives test.
  const features = new Set(cpu.features);
  const native = (slot: string): boolean => !overridden.has(pvOpsSlot(slot)!);
  if (!native('lock.queued_spin_unlock')) features.add(featureByName('PVUNLOCK')!.bit);
  if (!native('lock.vcpu_is_preempted')) features.add(featureByName('VCPUPREEMPT')!.bit);

  const returnThunk = image.symbols.addressOf('__x86_return_thunk');
  const active = cpu.returnThunk === '__x86_return_thunk' ? returnThunk : image.symbols.addressOf(cpu.returnThunk);
  const env: BootEnv = {
    features,
    pvOp: (slot) => slots[slot] ?? { kind: 'bug', address: image.symbols.addressOf('paravirt_BUG') ?? 0 },
    indirectThunkArray: image.symbols.addressOf('__x86_indirect_thunk_rax'),
    returnThunk,
    activeReturnThunk: active,
    itsReturnThunk: cpu.returnThunk === 'its_return_thunk',
  };
  return { env, cpu: { ...cpu, features }, pvOps, options };
}
