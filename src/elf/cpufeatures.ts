/**
 * Linux 6.1.y x86 CPU feature and bug bits (arch/x86/include/asm/cpufeatures.h, NCAPINTS = 22,
 * NBUGINTS = 2, as in Debian 6.1.192). Only the facts: word*32+bit, the macro name without its
 * X86_FEATURE_ prefix (bugs keep BUG_), and the /proc/cpuinfo name when it differs from the
 * lowercased macro name ("-" = hidden, the header's "" comment).
 */
import { FEATURES_6_12_DELTA } from './cpufeatures-6.12.ts';

/** NCAPINTS * 32: bug bits start here (X86_BUG(0)). */
export const X86_BUG_BASE = 22 * 32;
/** (NCAPINTS + NBUGINTS) * 32: apply_alternatives BUG()s on anything above. */
export const X86_FEATURE_LIMIT = (22 + 2) * 32;

const TABLE = `
  0*32+0:FPU 0*32+1:VME 0*32+2:DE 0*32+3:PSE 0*32+4:TSC
  0*32+5:MSR 0*32+6:PAE 0*32+7:MCE 0*32+8:CX8 0*32+9:APIC
  0*32+11:SEP 0*32+12:MTRR 0*32+13:PGE 0*32+14:MCA 0*32+15:CMOV
  0*32+16:PAT 0*32+17:PSE36 0*32+18:PN 0*32+19:CLFLUSH 0*32+21:DS:dts
  0*32+22:ACPI 0*32+23:MMX 0*32+24:FXSR 0*32+25:XMM:sse 0*32+26:XMM2:sse2
  0*32+27:SELFSNOOP:ss 0*32+28:HT 0*32+29:ACC:tm 0*32+30:IA64 0*32+31:PBE
  1*32+11:SYSCALL 1*32+19:MP 1*32+20:NX 1*32+22:MMXEXT 1*32+25:FXSR_OPT
  1*32+26:GBPAGES:pdpe1gb 1*32+27:RDTSCP 1*32+29:LM 1*32+30:3DNOWEXT 1*32+31:3DNOW
  2*32+0:RECOVERY 2*32+1:LONGRUN 2*32+3:LRTI 3*32+0:CXMMX 3*32+1:K6_MTRR
  3*32+2:CYRIX_ARR 3*32+3:CENTAUR_MCR 3*32+4:K8:- 3*32+6:P3:- 3*32+7:P4:-
  3*32+8:CONSTANT_TSC 3*32+9:UP 3*32+10:ART 3*32+11:ARCH_PERFMON 3*32+12:PEBS
  3*32+13:BTS 3*32+14:SYSCALL32:- 3*32+15:SYSENTER32:- 3*32+16:REP_GOOD 3*32+17:AMD_LBR_V2
  3*32+18:LFENCE_RDTSC:- 3*32+19:ACC_POWER 3*32+20:NOPL 3*32+21:ALWAYS:- 3*32+22:XTOPOLOGY
  3*32+23:TSC_RELIABLE 3*32+24:NONSTOP_TSC 3*32+25:CPUID 3*32+26:EXTD_APICID 3*32+27:AMD_DCM
  3*32+28:APERFMPERF 3*32+29:RAPL 3*32+30:NONSTOP_TSC_S3 3*32+31:TSC_KNOWN_FREQ 4*32+0:XMM3:pni
  4*32+1:PCLMULQDQ 4*32+2:DTES64 4*32+3:MWAIT:monitor 4*32+4:DSCPL:ds_cpl 4*32+5:VMX
  4*32+6:SMX 4*32+7:EST 4*32+8:TM2 4*32+9:SSSE3 4*32+10:CID
  4*32+11:SDBG 4*32+12:FMA 4*32+13:CX16 4*32+14:XTPR 4*32+15:PDCM
  4*32+17:PCID 4*32+18:DCA 4*32+19:XMM4_1:sse4_1 4*32+20:XMM4_2:sse4_2 4*32+21:X2APIC
  4*32+22:MOVBE 4*32+23:POPCNT 4*32+24:TSC_DEADLINE_TIMER 4*32+25:AES 4*32+26:XSAVE
  4*32+27:OSXSAVE:- 4*32+28:AVX 4*32+29:F16C 4*32+30:RDRAND 4*32+31:HYPERVISOR
  5*32+2:XSTORE:rng 5*32+3:XSTORE_EN:rng_en 5*32+6:XCRYPT:ace 5*32+7:XCRYPT_EN:ace_en 5*32+8:ACE2
  5*32+9:ACE2_EN 5*32+10:PHE 5*32+11:PHE_EN 5*32+12:PMM 5*32+13:PMM_EN
  6*32+0:LAHF_LM 6*32+1:CMP_LEGACY 6*32+2:SVM 6*32+3:EXTAPIC 6*32+4:CR8_LEGACY
  6*32+5:ABM 6*32+6:SSE4A 6*32+7:MISALIGNSSE 6*32+8:3DNOWPREFETCH 6*32+9:OSVW
  6*32+10:IBS 6*32+11:XOP 6*32+12:SKINIT 6*32+13:WDT 6*32+15:LWP
  6*32+16:FMA4 6*32+17:TCE 6*32+19:NODEID_MSR 6*32+21:TBM 6*32+22:TOPOEXT
  6*32+23:PERFCTR_CORE 6*32+24:PERFCTR_NB 6*32+26:BPEXT 6*32+27:PTSC 6*32+28:PERFCTR_LLC
  6*32+29:MWAITX 7*32+0:RING3MWAIT 7*32+1:CPUID_FAULT 7*32+2:CPB 7*32+3:EPB
  7*32+4:CAT_L3 7*32+5:CAT_L2 7*32+6:CDP_L3 7*32+7:INVPCID_SINGLE 7*32+8:HW_PSTATE
  7*32+9:PROC_FEEDBACK 7*32+10:XCOMPACTED:- 7*32+11:PTI 7*32+12:KERNEL_IBRS:- 7*32+13:RSB_VMEXIT:-
  7*32+14:INTEL_PPIN 7*32+15:CDP_L2 7*32+16:MSR_SPEC_CTRL:- 7*32+17:SSBD 7*32+18:MBA
  7*32+19:RSB_CTXSW:- 7*32+20:PERFMON_V2 7*32+21:USE_IBPB:- 7*32+22:USE_IBRS_FW:- 7*32+23:SPEC_STORE_BYPASS_DISABLE:-
  7*32+24:LS_CFG_SSBD:- 7*32+25:IBRS 7*32+26:IBPB 7*32+27:STIBP 7*32+28:ZEN:-
  7*32+29:L1TF_PTEINV:- 7*32+30:IBRS_ENHANCED 7*32+31:MSR_IA32_FEAT_CTL:- 8*32+0:TPR_SHADOW 8*32+1:VNMI
  8*32+2:FLEXPRIORITY 8*32+3:EPT 8*32+4:VPID 8*32+5:COHERENCY_SFW_NO:- 8*32+15:VMMCALL
  8*32+16:XENPV:- 8*32+17:EPT_AD 8*32+18:VMCALL:- 8*32+19:VMW_VMMCALL:- 8*32+20:PVUNLOCK:-
  8*32+21:VCPUPREEMPT:- 8*32+22:TDX_GUEST 9*32+0:FSGSBASE 9*32+1:TSC_ADJUST 9*32+2:SGX
  9*32+3:BMI1 9*32+4:HLE 9*32+5:AVX2 9*32+6:FDP_EXCPTN_ONLY:- 9*32+7:SMEP
  9*32+8:BMI2 9*32+9:ERMS 9*32+10:INVPCID 9*32+11:RTM 9*32+12:CQM
  9*32+13:ZERO_FCS_FDS:- 9*32+14:MPX 9*32+15:RDT_A 9*32+16:AVX512F 9*32+17:AVX512DQ
  9*32+18:RDSEED 9*32+19:ADX 9*32+20:SMAP 9*32+21:AVX512IFMA 9*32+23:CLFLUSHOPT
  9*32+24:CLWB 9*32+25:INTEL_PT 9*32+26:AVX512PF 9*32+27:AVX512ER 9*32+28:AVX512CD
  9*32+29:SHA_NI 9*32+30:AVX512BW 9*32+31:AVX512VL 10*32+0:XSAVEOPT 10*32+1:XSAVEC
  10*32+2:XGETBV1 10*32+3:XSAVES 10*32+4:XFD:- 11*32+0:CQM_LLC 11*32+1:CQM_OCCUP_LLC
  11*32+2:CQM_MBM_TOTAL 11*32+3:CQM_MBM_LOCAL 11*32+4:FENCE_SWAPGS_USER:- 11*32+5:FENCE_SWAPGS_KERNEL:- 11*32+6:SPLIT_LOCK_DETECT
  11*32+7:PER_THREAD_MBA:- 11*32+8:SGX1:- 11*32+9:SGX2:- 11*32+10:ENTRY_IBPB:- 11*32+11:RRSBA_CTRL:-
  11*32+12:RETPOLINE:- 11*32+13:RETPOLINE_LFENCE:- 11*32+14:RETHUNK:- 11*32+15:UNRET:- 11*32+16:USE_IBPB_FW:-
  11*32+17:RSB_VMEXIT_LITE:- 11*32+18:CLEAR_CPU_BUF:- 11*32+20:MSR_TSX_CTRL:- 11*32+24:SRSO:- 11*32+25:SRSO_ALIAS:-
  11*32+26:IBPB_ON_VMEXIT:- 11*32+27:APIC_MSRS_FENCE:- 11*32+28:ZEN2:- 11*32+29:ZEN3:- 11*32+30:ZEN4:-
  11*32+31:ZEN1:- 12*32+4:AVX_VNNI 12*32+5:AVX512_BF16 13*32+0:CLZERO 13*32+1:IRPERF
  13*32+2:XSAVEERPTR 13*32+4:RDPRU 13*32+9:WBNOINVD 13*32+12:AMD_IBPB:- 13*32+14:AMD_IBRS:-
  13*32+15:AMD_STIBP:- 13*32+17:AMD_STIBP_ALWAYS_ON:- 13*32+23:AMD_PPIN 13*32+24:AMD_SSBD:- 13*32+25:VIRT_SSBD
  13*32+26:AMD_SSB_NO:- 13*32+27:CPPC 13*32+29:BTC_NO:- 13*32+30:AMD_IBPB_RET:- 13*32+31:BRS
  14*32+0:DTHERM 14*32+1:IDA 14*32+2:ARAT 14*32+4:PLN 14*32+6:PTS
  14*32+7:HWP 14*32+8:HWP_NOTIFY 14*32+9:HWP_ACT_WINDOW 14*32+10:HWP_EPP 14*32+11:HWP_PKG_REQ
  14*32+19:HFI 15*32+0:NPT 15*32+1:LBRV 15*32+2:SVML:svm_lock 15*32+3:NRIPS:nrip_save
  15*32+4:TSCRATEMSR:tsc_scale 15*32+5:VMCBCLEAN:vmcb_clean 15*32+6:FLUSHBYASID 15*32+7:DECODEASSISTS 15*32+10:PAUSEFILTER
  15*32+12:PFTHRESHOLD 15*32+13:AVIC 15*32+15:V_VMSAVE_VMLOAD 15*32+16:VGIF 15*32+18:X2AVIC
  15*32+20:V_SPEC_CTRL 15*32+28:SVME_ADDR_CHK:- 16*32+1:AVX512VBMI 16*32+2:UMIP 16*32+3:PKU
  16*32+4:OSPKE 16*32+5:WAITPKG 16*32+6:AVX512_VBMI2 16*32+8:GFNI 16*32+9:VAES
  16*32+10:VPCLMULQDQ 16*32+11:AVX512_VNNI 16*32+12:AVX512_BITALG 16*32+13:TME 16*32+14:AVX512_VPOPCNTDQ
  16*32+16:LA57 16*32+22:RDPID 16*32+24:BUS_LOCK_DETECT 16*32+25:CLDEMOTE 16*32+27:MOVDIRI
  16*32+28:MOVDIR64B 16*32+29:ENQCMD 16*32+30:SGX_LC 17*32+0:OVERFLOW_RECOV 17*32+1:SUCCOR
  17*32+3:SMCA 18*32+2:AVX512_4VNNIW 18*32+3:AVX512_4FMAPS 18*32+4:FSRM 18*32+8:AVX512_VP2INTERSECT
  18*32+9:SRBDS_CTRL:- 18*32+10:MD_CLEAR 18*32+11:RTM_ALWAYS_ABORT:- 18*32+13:TSX_FORCE_ABORT:- 18*32+14:SERIALIZE
  18*32+15:HYBRID_CPU:- 18*32+16:TSXLDTRK 18*32+18:PCONFIG 18*32+19:ARCH_LBR 18*32+20:IBT
  18*32+22:AMX_BF16 18*32+23:AVX512_FP16 18*32+24:AMX_TILE 18*32+25:AMX_INT8 18*32+26:SPEC_CTRL:-
  18*32+27:INTEL_STIBP:- 18*32+28:FLUSH_L1D 18*32+29:ARCH_CAPABILITIES 18*32+30:CORE_CAPABILITIES:- 18*32+31:SPEC_CTRL_SSBD:-
  19*32+0:SME 19*32+1:SEV 19*32+2:VM_PAGE_FLUSH:- 19*32+3:SEV_ES 19*32+9:V_TSC_AUX:-
  19*32+10:SME_COHERENT:- 20*32+5:VERW_CLEAR:- 20*32+8:AUTOIBRS:- 20*32+27:SBPB:- 20*32+28:IBPB_BRTYPE:-
  20*32+29:SRSO_NO:- 21*32+0:AMD_LBR_PMC_FREEZE 21*32+1:CLEAR_BHB_LOOP:- 21*32+2:BHI_CTRL:- 21*32+3:CLEAR_BHB_HW:-
  21*32+4:CLEAR_BHB_LOOP_ON_VMEXIT:- 21*32+5:INDIRECT_THUNK_ITS:- 21*32+11:TSA_SQ_NO:- 21*32+12:TSA_L1_NO:- 21*32+13:CLEAR_CPU_BUF_VM:-
  21*32+14:IBPB_EXIT_TO_USER 22*32+0:BUG_F00F 22*32+1:BUG_FDIV 22*32+2:BUG_COMA 22*32+3:BUG_AMD_TLB_MMATCH:tlb_mmatch
  22*32+4:BUG_AMD_APIC_C1E:apic_c1e 22*32+5:BUG_11AP 22*32+6:BUG_FXSAVE_LEAK 22*32+7:BUG_CLFLUSH_MONITOR 22*32+8:BUG_SYSRET_SS_ATTRS
  22*32+9:BUG_ESPFIX:- 22*32+10:BUG_NULL_SEG 22*32+11:BUG_SWAPGS_FENCE 22*32+12:BUG_MONITOR 22*32+13:BUG_AMD_E400
  22*32+14:BUG_CPU_MELTDOWN 22*32+15:BUG_SPECTRE_V1 22*32+16:BUG_SPECTRE_V2 22*32+17:BUG_SPEC_STORE_BYPASS 22*32+18:BUG_L1TF
  22*32+19:BUG_MDS 22*32+20:BUG_MSBDS_ONLY 22*32+21:BUG_SWAPGS 22*32+22:BUG_TAA 22*32+23:BUG_ITLB_MULTIHIT
  22*32+24:BUG_SRBDS 22*32+25:BUG_MMIO_STALE_DATA 22*32+26:BUG_MMIO_UNKNOWN 22*32+27:BUG_RETBLEED 22*32+28:BUG_EIBRS_PBRSB
  22*32+29:BUG_SMT_RSB 22*32+30:BUG_GDS 23*32+0:BUG_SRSO 23*32+1:BUG_DIV0 23*32+2:BUG_RFDS
  23*32+3:BUG_BHI 23*32+4:BUG_IBPB_NO_RET 23*32+5:BUG_ITS 23*32+6:BUG_ITS_NATIVE_ONLY 23*32+9:BUG_TSA
  23*32+10:BUG_VMSCAPE
`;

export interface CpuFeature {
  /** word * 32 + bit, the value alt_instr.cpuid carries (without ALT_NOT). */
  readonly bit: number;
  /** Linux macro name without the X86_FEATURE_ prefix (bugs: BUG_SPECTRE_V2, ...). */
  readonly name: string;
  /** /proc/cpuinfo flag, or "" when Linux hides it. */
  readonly cpuinfo: string;
}

function parse(): { byBit: Map<number, CpuFeature>; byName: Map<string, CpuFeature> } {
  const byBit = new Map<number, CpuFeature>();
  const byName = new Map<string, CpuFeature>();
  for (const token of TABLE.split(/\s+/)) {
    if (token === "") continue;
    const [pos, name, shown] = token.split(":") as [string, string, string | undefined];
    const [word, bit] = pos.split("*32+").map(Number) as [number, number];
    const f: CpuFeature = {
      bit: word * 32 + bit,
      name,
      cpuinfo: shown === undefined ? name.toLowerCase() : shown === "-" ? "" : shown,
    };
    // A few bits have two macro names (aliases); the first one is the canonical name.
    if (!byBit.has(f.bit)) byBit.set(f.bit, f);
    byName.set(name, f);
    if (f.cpuinfo !== "" && !byName.has(f.cpuinfo.toUpperCase())) byName.set(f.cpuinfo.toUpperCase(), f);
  }
  return { byBit, byName };
}

const FEATURES = parse();

/** pvpatch's own ids for features 6.1.y does not have (never a real bit: above every version's limit). */
export const EXTRA_FEATURE_BASE = 64 * 32;

/** A version's numbering: image bit → pvpatch feature id (6.1.y's bit, or an extra id). */
export interface FeatureNumbering {
  readonly version: string;
  /** X86_FEATURE_LIMIT of that version: apply_alternatives BUG()s above it. */
  readonly limit: number;
  toId(bit: number): number;
}

function numberingFromDelta(version: string, delta: string, base: (bit: number) => number = (b) => b, limit = X86_FEATURE_LIMIT): FeatureNumbering {
  const map = new Map<number, number>();
  let next = EXTRA_FEATURE_BASE;
  for (const token of delta.split(/\s+/)) {
    if (token === '') continue;
    const [pos, name] = token.split(':') as [string, string];
    const [word, bit] = pos.split('*32+').map(Number) as [number, number];
    const raw = word * 32 + bit;
    if (name === '-') {
      map.set(raw, -1 - raw);
      continue;
    }
    let f = FEATURES.byName.get(name);
    if (f === undefined) {
      f = { bit: next++, name, cpuinfo: '' };
      FEATURES.byName.set(name, f);
      FEATURES.byBit.set(f.bit, f);
    }
    map.set(raw, f.bit);
  }
  return { version, limit, toId: (b) => map.get(b) ?? base(b) };
}

/**
 * Debian's 5.10.y, as its image shows it: the backports added a 23rd capability word, so every
 * X86_BUG bit sits one word higher than in 6.1.y (X86_BUG_11AP, the APIC mov→xchg alternative, is
 * 23*32+5), and X86_FEATURE_CLEAR_CPU_BUF (the `jmp` over VERW on every exit to user) is 11*32+19.
 * Other capability bits are read as 6.1.y's; word 22 is unnamed.
 */
export const FEATURES_5_10: FeatureNumbering = numberingFromDelta(
  '5.10',
  '11*32+18:- 11*32+19:CLEAR_CPU_BUF',
  (b) => (b >= 23 * 32 ? b - 32 : b >= 22 * 32 ? -1 - b : b),
  (23 + 2) * 32,
);

/** 6.1.y's numbering is pvpatch's own. */
export const FEATURES_6_1: FeatureNumbering = { version: '6.1', limit: X86_FEATURE_LIMIT, toId: (b) => b };
export const FEATURES_6_12: FeatureNumbering = numberingFromDelta('6.12', FEATURES_6_12_DELTA);

/** The feature at `bit`, or undefined for an unnamed bit. */
export function featureByBit(bit: number): CpuFeature | undefined {
  return FEATURES.byBit.get(bit);
}

/** Look a feature up by Linux macro name or /proc/cpuinfo flag, case-insensitive (`XENPV`, `avx2`, `BUG_ITS`). */
export function featureByName(name: string): CpuFeature | undefined {
  const key = name.toUpperCase().replace(/^X86_FEATURE_/, "").replace(/^X86_BUG_/, "BUG_");
  return FEATURES.byName.get(key);
}

/** A printable name for a feature bit: `XENPV` or `8*32+16` when unnamed. */
export function featureName(bit: number): string {
  if (bit < 0) return `${Math.floor((-1 - bit) / 32)}*32+${(-1 - bit) % 32} (unnamed)`;
  return FEATURES.byBit.get(bit)?.name ?? `${Math.floor(bit / 32)}*32+${bit % 32}`;
}
