/**
 * boot_cpu_data as Linux 6.1.y has it when alternative_instructions() runs: the CPU model's
 * CPUID bits, the capabilities Linux itself forces (arch/x86/kernel/cpu/common.c, intel.c,
 * amd.c), and the synthetic bits that cpu_select_mitigations() (arch/x86/kernel/cpu/bugs.c)
 * sets from the X86_BUG_* bits and the command line. Also which return thunk bugs.c chose.
 *
 * This is a model of the decisions that change patch bytes, in bugs.c's order, not of every
 * printk: spectre_v1 → spectre_v2 (+RSB, BHI) → retbleed → md_clear family → srso → its.
 */
import { featureByName } from './cpufeatures.ts';
import type { CpuModel } from './cpu-models.ts';
import { InspectError } from './errors.ts';

export type ReturnThunkChoice = '__x86_return_thunk' | 'its_return_thunk' | 'retbleed_return_thunk' | 'srso_return_thunk' | 'srso_alias_return_thunk';

export interface KernelCommandLine {
  readonly options: ReadonlyMap<string, string | true>;
}

/** Parse `mitigations=off nopvspin retbleed=unret` (space-separated, as on a boot loader line). */
export function parseCommandLine(text: string): KernelCommandLine {
  const options = new Map<string, string | true>();
  for (const word of text.split(/\s+/)) {
    if (word === '') continue;
    const eq = word.indexOf('=');
    if (eq < 0) options.set(word, true);
    else options.set(word.slice(0, eq), word.slice(eq + 1));
  }
  return { options };
}

export interface BootCpu {
  readonly features: ReadonlySet<number>;
  readonly returnThunk: ReturnThunkChoice;
  /** One line per decision, for `inspect` to show why a feature is on. */
  readonly notes: readonly string[];
}

/** CPUID(1).EAX: stepping, model, family with their extended fields (Intel SDM vol. 2A, CPUID). */
function cpuidSignature(m: CpuModel): number {
  const fam = Math.min(m.family, 0xf);
  const extFam = m.family > 0xf ? m.family - 0xf : 0;
  return (extFam << 20) | ((m.model >> 4) << 16) | (fam << 8) | ((m.model & 0xf) << 4);
}

function bitOf(name: string): number {
  const f = featureByName(name);
  if (f === undefined) throw new InspectError(`unknown CPU feature '${name}' (use /proc/cpuinfo or X86_FEATURE_* names)`);
  return f.bit;
}

/**
 * The feature set for `model` with `add`/`remove` applied to its CPUID bits, on a platform that
 * is (`xenpv`) or is not a Xen PV guest, under `cmdline`.
 */
export function bootCpu(model: CpuModel, add: readonly string[], remove: readonly string[], cmdline: KernelCommandLine, xenpv: boolean): BootCpu {
  const f = new Set<number>();
  const notes: string[] = [];
  const has = (n: string): boolean => f.has(bitOf(n));
  const set = (n: string, why: string): void => {
    if (!f.has(bitOf(n))) notes.push(`${n}: ${why}`);
    f.add(bitOf(n));
  };
  const clear = (n: string): void => void f.delete(bitOf(n));
  const opt = (k: string): string | true | undefined => cmdline.options.get(k);
  const mitigationsOff = opt('mitigations') === 'off';

  for (const n of model.cpuid) f.add(bitOf(n));
  for (const n of add) f.add(bitOf(n));
  for (const n of remove) f.delete(bitOf(n));
  for (const b of model.bugs) f.add(bitOf(`BUG_${b}`));

  // common.c / vendor init: always-present and vendor-forced capabilities.
  set('ALWAYS', 'common.c setup_force_cpu_cap');
  set('NOPL', 'x86-64 always has NOPL');
  set('APIC_MSRS_FENCE', 'common.c default; AMD clears it');
  if (has('XSAVE')) set('OSXSAVE', 'CR4.OSXSAVE set by fpu__init_cpu_xstate');
  if (model.vendor === 'intel') {
    set('SYSENTER32', 'intel.c: 64-bit Intel');
    if (has('XMM2')) set('LFENCE_RDTSC', 'intel.c: LFENCE is serializing on Intel');
    if (model.family === 6) set('REP_GOOD', 'intel.c init_intel: family 6 (fast strings on, as QEMU sets MISC_ENABLE)');
  } else {
    clear('APIC_MSRS_FENCE');
    set('SYSCALL32', 'amd.c');
    set('VMMCALL', 'amd.c: AMD hypercalls use VMMCALL');
    if (model.family >= 0x10) set('REP_GOOD', 'amd.c: family >= 0x10');
    // early_init_amd_k8: "C+ stepping K8 rep microcode works well", judged on CPUID(1).EAX.
    if (model.family === 0x0f && cpuidSignature(model) >= 0x0f48 && !(cpuidSignature(model) >= 0x0f50 && cpuidSignature(model) < 0x0f58)) set('REP_GOOD', 'amd.c: K8 revision C+');
    // bsp_init_amd: family 0x15..0x17 without AMD_SSBD/VIRT_SSBD reads MSR_AMD64_LS_CFG (TCG answers 0).
    if (model.family >= 0x15 && model.family <= 0x17 && !has('AMD_SSBD') && !has('VIRT_SSBD')) {
      set('LS_CFG_SSBD', 'amd.c: LS_CFG MSR readable');
      set('SSBD', 'amd.c: LS_CFG MSR readable');
    }
    if (has('XMM2')) set('LFENCE_RDTSC', 'amd.c: DE_CFG makes LFENCE serializing');
    if (!has('3DNOWPREFETCH') && has('LM')) set('3DNOWPREFETCH', 'amd.c: LM implies PREFETCHW');
    if (model.family === 0x17 || model.family === 0x19) set('ZEN', 'amd.c init_amd_zen_common');
    // bsp_init_amd: the Zen generation flags (6.1.y backport and 6.12), by family and model range.
    const m = model.model;
    const inRange = (ranges: readonly [number, number][]): boolean => ranges.some(([lo, hi]) => m >= lo && m <= hi);
    if (model.family === 0x17 && inRange([[0x00, 0x2f], [0x50, 0x5f]])) set('ZEN1', 'amd.c: family 17h Zen 1 models');
    if (model.family === 0x17 && inRange([[0x30, 0x4f], [0x60, 0x7f], [0x90, 0x91], [0xa0, 0xaf]])) set('ZEN2', 'amd.c: family 17h Zen 2 models');
    if (model.family === 0x19 && inRange([[0x00, 0x0f], [0x20, 0x5f]])) set('ZEN3', 'amd.c: family 19h Zen 3 models');
    if (model.family === 0x19 && inRange([[0x10, 0x1f], [0x60, 0xaf]])) set('ZEN4', 'amd.c: family 19h Zen 4 models');
  }
  // vulnerable_to_its (common.c): an Intel guest without ITS_NO may run on affected hardware.
  if (model.vendor === 'intel' && has('HYPERVISOR') && !has('BHI_CTRL')) f.add(bitOf('BUG_ITS'));
  if (xenpv) {
    set('XENPV', 'xen_start_kernel');
    clear('SYSENTER32');
    clear('SYSCALL32');
    f.delete(bitOf('BUG_SYSRET_SS_ATTRS'));
  }

  // Kernel page-table isolation (arch/x86/mm/pti.c, before check_bugs); never for Xen PV.
  const ptiOff = mitigationsOff || opt('nopti') === true || opt('pti') === 'off' || xenpv;
  if (has('BUG_CPU_MELTDOWN') && !ptiOff) set('PTI', 'Meltdown-affected CPU');
  if (opt('pti') === 'on' && !xenpv) set('PTI', 'pti=on');

  // spectre_v1_select_mitigation
  if (has('BUG_SPECTRE_V1') && !mitigationsOff && opt('nospectre_v1') !== true) {
    const smapWorks = has('SMAP') && !has('BUG_CPU_MELTDOWN');
    if (has('FSGSBASE') || !smapWorks) {
      if (has('BUG_SWAPGS') && !has('PTI')) set('FENCE_SWAPGS_USER', 'spectre_v1: SWAPGS without PTI');
      set('FENCE_SWAPGS_KERNEL', 'spectre_v1: LFENCE on kernel entry');
    }
  }

  // spectre_v2_select_mitigation: without IBRS/eIBRS (no preset enumerates them), auto = retpoline.
  const v2 = opt('nospectre_v2') === true || mitigationsOff ? 'off' : (opt('spectre_v2') ?? 'auto');
  let v2mode: 'none' | 'retpoline' | 'lfence' | 'ibrs' | 'eibrs' = 'none';
  if (v2 !== 'off' && (has('BUG_SPECTRE_V2') || (v2 !== 'auto' && v2 !== true))) {
    if (v2 === 'retpoline,lfence' || v2 === 'retpoline,amd') v2mode = 'lfence';
    else if (v2 === 'ibrs') v2mode = 'ibrs';
    else if (v2 === 'eibrs') v2mode = 'eibrs';
    else v2mode = 'retpoline';
  }
  if (v2mode === 'ibrs') set('KERNEL_IBRS', 'spectre_v2=ibrs');
  if (v2mode === 'lfence') set('RETPOLINE_LFENCE', 'spectre_v2=retpoline,lfence');
  if (v2mode === 'lfence' || v2mode === 'retpoline') set('RETPOLINE', `spectre_v2 mode ${v2mode}`);
  if (v2mode === 'retpoline' || v2mode === 'lfence' || v2mode === 'ibrs') {
    set('RSB_CTXSW', 'spectre_v2_select_rsb_mitigation');
    set('RSB_VMEXIT', 'spectre_v2_select_rsb_mitigation');
  }
  // bhi_select_mitigation: a retpoline kernel without ARCH_CAP_RRSBA counts RRSBA as disabled.
  if (has('BUG_BHI') && !mitigationsOff && opt('spectre_bhi') !== 'off' && v2mode !== 'none' && !(v2mode === 'retpoline')) {
    set('CLEAR_BHB_LOOP', 'spectre_bhi: software BHB clearing');
    set('CLEAR_BHB_LOOP_ON_VMEXIT', 'spectre_bhi');
  }

  // retbleed_select_mitigation: AMD auto = untrained return thunk (CONFIG_CPU_UNRET_ENTRY=y).
  let returnThunk: ReturnThunkChoice = '__x86_return_thunk';
  const retbleed = opt('retbleed') ?? 'auto';
  let retbleedUnret = false;
  if (has('BUG_RETBLEED') && !mitigationsOff && retbleed !== 'off') {
    if (retbleed === 'unret' || (model.vendor === 'amd' && (retbleed === 'auto' || retbleed === true))) retbleedUnret = true;
    if (retbleedUnret) {
      set('RETHUNK', 'retbleed=unret');
      set('UNRET', 'retbleed=unret');
      returnThunk = 'retbleed_return_thunk';
    }
  }

  // md_clear_select_mitigation: MDS/TAA/MMIO/RFDS share VERW buffer clearing.
  const mdOff = mitigationsOff || (opt('mds') === 'off' && opt('tsx_async_abort') === 'off' && opt('mmio_stale_data') === 'off' && opt('reg_file_data_sampling') === 'off');
  if (!mdOff && (has('BUG_MDS') || has('BUG_TAA') || has('BUG_MMIO_STALE_DATA') || has('BUG_RFDS'))) set('CLEAR_CPU_BUF', 'MDS-class bug: VERW on return to user');

  // srso_select_mitigation: Zen 1/2 default "safe RET" on top of the untrained return.
  if (has('BUG_SRSO') && !mitigationsOff && opt('spec_rstack_overflow') !== 'off' && retbleedUnret) {
    set('RETHUNK', 'srso');
    set('UNRET', 'srso');
    if (model.family === 0x19) {
      set('SRSO_ALIAS', 'srso: Zen 3/4 alias');
      returnThunk = 'srso_alias_return_thunk';
    } else {
      set('SRSO', 'srso: safe RET');
      returnThunk = 'srso_return_thunk';
    }
  }

  // its_select_mitigation: aligned thunks need a spectre_v2 mitigation and no RETPOLINE_LFENCE.
  const itsOpt = opt('indirect_target_selection');
  if (has('BUG_ITS') && !mitigationsOff && itsOpt !== 'off' && v2mode !== 'none' && !has('RETPOLINE_LFENCE')) {
    if (!has('RETPOLINE')) set('INDIRECT_THUNK_ITS', 'ITS: aligned indirect thunks');
    set('RETHUNK', 'ITS: aligned return thunk');
    returnThunk = 'its_return_thunk';
  }
  return { features: f, returnThunk, notes };
}
