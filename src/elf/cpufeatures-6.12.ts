/**
 * Where Linux 6.12 numbers its CPU feature bits differently from 6.1.y (cpufeatures-6.1 in
 * cpufeatures.ts): arch/x86/include/asm/cpufeatures.h of 6.12 against 6.1.y's, bit by bit, and
 * the features 6.12 has that 6.1.y lacks. `-` marks a 6.1.y bit that is free in 6.12. Every
 * other bit means the same in both. An alt_instr's feature is read in its own version's numbering
 * and translated to pvpatch's (6.1.y's, extended), so the boot model names one feature one way.
 */
export const FEATURES_6_12_DELTA = `
  3*32+5:ZEN5 3*32+6:- 3*32+7:- 3*32+18:CLEAR_CPU_BUF
  7*32+7:TDX_HOST_PLATFORM
  8*32+1:FLEXPRIORITY 8*32+2:EPT 8*32+3:VPID 8*32+4:- 8*32+5:-
  11*32+18:SGX_EDECCSSA 11*32+19:CALL_DEPTH 11*32+21:SMBA 11*32+22:BMEC 11*32+23:USER_SHSTK
  12*32+0:SHA512 12*32+1:SM3 12*32+2:SM4 12*32+7:CMPCCXADD 12*32+8:ARCH_PERFMON_EXT 12*32+10:FZRM
  12*32+11:FSRS 12*32+12:FSRC 12*32+17:FRED 12*32+18:LKGS 12*32+19:WRMSRNS 12*32+21:AMX_FP16
  12*32+23:AVX_IFMA 12*32+26:LAM
  13*32+28:AMD_PSFD 14*32+15:HWP_HIGHEST_PERF_CHANGE 15*32+25:VNMI 16*32+7:SHSTK
  19*32+4:SEV_SNP 19*32+14:DEBUG_SWAP 19*32+28:SVSM
  20*32+0:NO_NESTED_DATA_BP 20*32+1:WRMSR_XX_BASE_NS 20*32+2:LFENCE_RDTSC 20*32+6:NULL_SEL_CLR_BASE
  20*32+9:NO_SMM_CTL_MSR
  21*32+5:AMD_FAST_CPPC 21*32+6:AMD_HETEROGENEOUS_CORES 21*32+7:AMD_WORKLOAD_CLASS
  22*32+31:BUG_TDX_PW_MCE
`;
