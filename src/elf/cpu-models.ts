/**
 * CPU presets named after QEMU CPU models, as a TCG guest of Debian's qemu-system-x86 7.2 sees
 * them: the model's CPUID features (QMP `query-cpu-model-expansion`, type full) minus those TCG
 * cannot provide (`query-cpu-definitions` unavailable-features: e.g. pcid, x2apic, invpcid,
 * rdseed, xsavec on Skylake-Client), in Linux's /proc/cpuinfo names. None of these models
 * enumerates IA32_ARCH_CAPABILITIES, so Linux decides vulnerabilities from family/model alone.
 *
 * `bugs` are the X86_BUG_* bits Linux 6.1.y sets for that family/model (cpu_set_bug_bits() with
 * its cpu_vuln_whitelist/blacklist, plus init_amd()'s errata), written out per model rather than
 * re-deriving Linux's tables.
 */
import { InspectError } from './errors.ts';

export type Vendor = 'intel' | 'amd';

export interface CpuModel {
  readonly name: string;
  readonly vendor: Vendor;
  readonly family: number;
  readonly model: number;
  /** CPUID features, /proc/cpuinfo names. */
  readonly cpuid: readonly string[];
  /** X86_BUG_* names (without the prefix) Linux sets for this model. */
  readonly bugs: readonly string[];
}

const BASE = 'fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall nx lm pni hypervisor lahf_lm';

const SKYLAKE_CLIENT: CpuModel = {
  name: 'Skylake-Client',
  vendor: 'intel',
  family: 6,
  model: 0x5e,
  cpuid: `${BASE} rdtscp pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand abm fsgsbase bmi1 avx2 smep bmi2 erms adx smap xsaveopt xgetbv1 arat`.split(' '),
  // Skylake (6/94) without ARCH_CAPABILITIES: Meltdown, L1TF, MDS, MMIO, RETBleed, GDS, ITS, SRBDS (has RDRAND), BHI.
  bugs: ['SPECTRE_V1', 'SPECTRE_V2', 'SPEC_STORE_BYPASS', 'SWAPGS', 'CPU_MELTDOWN', 'L1TF', 'MDS', 'ITLB_MULTIHIT', 'SRBDS', 'MMIO_STALE_DATA', 'RETBLEED', 'GDS', 'BHI', 'ITS'],
};

const HASWELL: CpuModel = {
  name: 'Haswell',
  vendor: 'intel',
  family: 6,
  model: 0x3c,
  cpuid: `${BASE} rdtscp pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand abm fsgsbase bmi1 avx2 smep bmi2 erms xsaveopt arat`.split(' '),
  bugs: ['SPECTRE_V1', 'SPECTRE_V2', 'SPEC_STORE_BYPASS', 'SWAPGS', 'CPU_MELTDOWN', 'L1TF', 'MDS', 'ITLB_MULTIHIT', 'SRBDS', 'BHI'],
};

const EPYC: CpuModel = {
  name: 'EPYC',
  vendor: 'amd',
  family: 0x17,
  model: 0x01,
  cpuid: `${BASE} mmxext rdtscp pdpe1gb pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand cr8_legacy abm sse4a svm npt fsgsbase bmi1 avx2 smep bmi2 adx smap clflushopt xsaveopt xgetbv1 arat mwait`.split(' '),
  // Zen 1: RETBleed, SRSO, DIV0; init_amd: SYSRET_SS_ATTRS, FXSAVE_LEAK (no XSAVEERPTR), NULL_SEG (guest).
  bugs: ['SPECTRE_V1', 'SPECTRE_V2', 'SPEC_STORE_BYPASS', 'RETBLEED', 'SRSO', 'DIV0', 'SYSRET_SS_ATTRS', 'FXSAVE_LEAK', 'NULL_SEG'],
};

const QEMU64: CpuModel = {
  name: 'qemu64',
  vendor: 'amd',
  family: 0x0f,
  model: 0x6b,
  cpuid: `${BASE} cx16 svm`.split(' '),
  // K8-class: whitelisted for Meltdown/SSB/L1TF/MDS; init_amd_k8 sets SWAPGS_FENCE.
  bugs: ['SPECTRE_V1', 'SPECTRE_V2', 'SYSRET_SS_ATTRS', 'FXSAVE_LEAK', 'NULL_SEG', 'SWAPGS_FENCE'],
};

export const CPU_MODELS: readonly CpuModel[] = [SKYLAKE_CLIENT, HASWELL, EPYC, QEMU64];

/**
 * A preset with explicit changes: `Skylake-Client`, `EPYC,-avx2,+pcid`, or `+feat,-feat` on top
 * of the default (Skylake-Client). Feature names are /proc/cpuinfo or Linux macro names.
 */
export function parseCpuSpec(spec: string): { model: CpuModel; add: string[]; remove: string[] } {
  const parts = spec.split(',').map((s) => s.trim()).filter((s) => s !== '');
  let model = SKYLAKE_CLIENT;
  const add: string[] = [];
  const remove: string[] = [];
  for (const [i, p] of parts.entries()) {
    if (p.startsWith('+')) add.push(p.slice(1));
    else if (p.startsWith('-')) remove.push(p.slice(1));
    else if (i === 0) {
      const m = CPU_MODELS.find((c) => c.name.toLowerCase() === p.toLowerCase());
      if (m === undefined) throw new InspectError(`unknown CPU model '${p}' (known: ${CPU_MODELS.map((c) => c.name).join(', ')})`);
      model = m;
    } else throw new InspectError(`CPU spec part '${p}' must be +feature or -feature`);
  }
  return { model, add, remove };
}
