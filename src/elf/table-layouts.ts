/**
 * Which layout each patch-site table has, derived from the image: its version (linux_banner,
 * kernel-version.ts) picks the struct, and every table's section size must then be a whole
 * number of those entries. A version pvpatch has no layout for is refused, never read with
 * another version's struct (issue 11: 6.12's 14-byte alt_instr read as 6.1's 12 bytes "worked").
 *
 * The structs, from arch/x86/include/asm/alternative.h and paravirt_types.h across versions:
 * - `struct paravirt_patch_site` { u8 *instr; u8 type; u8 len; } at 8-byte alignment: 16 bytes a
 *   stride (5.10 still has `u16 clobbers` after len); gone in 6.8 (pv-ops became alternatives).
 * - `struct alt_instr` { s32 instr_offset; s32 repl_offset; u16 cpuid; u8 instrlen;
 *   u8 replacementlen; } __packed: 12 bytes in 5.10 (Debian's, after the retbleed backport dropped
 *   padlen) to 6.2, bit 15 of cpuid = ALT_NOT from 5.13 (backported to Debian 5.10 with it);
 *   since 6.3 { s32; s32; u32 ft_flags (cpuid:16, flags:16); u8; u8; }: 14 bytes,
 *   flags ALT_FLAG_NOT = 1, and since 6.8 ALT_FLAG_DIRECT_CALL = 2.
 * - `.retpoline_sites`, `.return_sites`, `.call_sites`, `.ibt_endbr_seal`, `runtime_*`: s32 each.
 * - `struct jump_entry` { s32 code; s32 target; long key; }: 16 bytes (JUMP_LABEL_RELATIVE).
 * - `struct static_call_site` { s32 addr; s32 key; }: 8 bytes.
 * - `__mcount_loc`: one unsigned long (absolute address) per ftrace site.
 */
import { FEATURES_5_10, FEATURES_6_1, FEATURES_6_12, type FeatureNumbering } from './cpufeatures.ts';
import { PatchTableError } from './errors.ts';
import type { ImageSection } from './image.ts';
import { seriesAtLeast, versionString, type KernelVersion } from './kernel-version.ts';

export type AltFlagsEncoding =
  /** u16 cpuid with bit 15 = ALT_NOT (ALTINSTR_FLAG_INV). */
  | 'cpuid-inv-bit'
  /** u32 ft_flags: low 16 bits the feature, high 16 bits ALT_FLAG_*. */
  | 'ft-flags';

export interface TableLayouts {
  readonly version: KernelVersion;
  /** Undefined from 6.8: the table no longer exists, an image that has one is refused. */
  readonly parainstructions: { readonly stride: 16; readonly entryBytes: 10 | 12 } | undefined;
  readonly altinstructions: { readonly entrySize: 12 | 14; readonly flags: AltFlagsEncoding; readonly directCall: boolean };
  /** ALT_FLAG_DIRECT_CALL, NOP-or-CALL through pv_ops (6.8+): pv-ops sites live in .altinstructions. */
  readonly pvOpsAsAlternatives: boolean;
  /** How the version numbers its feature bits (alt_instr.cpuid), translated to pvpatch's ids. */
  readonly features: FeatureNumbering;
  /** Which version's boot-patching code writes the bytes (alternatives, NOPs, ENDBR poison). */
  readonly dialect: PatchDialect;
}

/** 6.1: add_nops up to 8 bytes, runs of 0x90 optimized; 6.12: apply_relocation, NOPs up to 11, OSP NOP3 ENDBR poison. */
export type PatchDialect = '6.1' | '6.12';

/**
 * Series pvpatch knows the structs and the feature numbering of (Debian's bullseye, bookworm and
 * trixie / bookworm-backports). The series between share these structs, but their feature bits
 * moved one version at a time, so they are refused too rather than misnamed.
 */
const KNOWN = '5.10, 6.1 and 6.12';

function known(v: KernelVersion): boolean {
  return (v.major === 5 && v.minor === 10) || (v.major === 6 && (v.minor === 1 || v.minor === 12));
}

/** The layouts for `version`; `table` names the table that needs them, for the refusal. */
export function tableLayouts(version: KernelVersion | undefined, table = '.altinstructions'): TableLayouts {
  if (version === undefined) {
    throw new PatchTableError(table, 'the image has no linux_banner (or module vermagic), so its table layouts cannot be told: refusing to guess');
  }
  if (!known(version)) {
    throw new PatchTableError(table, `Linux ${versionString(version)} (${version.release}): pvpatch knows the table layouts of ${KNOWN} only, and will not read this one with another version's`);
  }
  const v63 = seriesAtLeast(version, 6, 3);
  const v68 = seriesAtLeast(version, 6, 8);
  return {
    version,
    parainstructions: v68 ? undefined : { stride: 16, entryBytes: version.major === 5 ? 12 : 10 },
    altinstructions: { entrySize: v63 ? 14 : 12, flags: v63 ? 'ft-flags' : 'cpuid-inv-bit', directCall: v68 },
    pvOpsAsAlternatives: v68,
    features: version.minor === 12 ? FEATURES_6_12 : version.major === 5 ? FEATURES_5_10 : FEATURES_6_1,
    dialect: version.minor === 12 ? '6.12' : '6.1',
  };
}

/**
 * Number of entries of `entrySize` in a section, refusing a size that is not a whole number of
 * them. `lastEntryBytes`: a table whose entries are aligned (paravirt_patch_site) may end right
 * after its last entry's fields.
 */
export function entryCount(s: ImageSection, entrySize: number, version: KernelVersion, lastEntryBytes = entrySize): number {
  if (s.size % entrySize === 0) return s.size / entrySize;
  if (s.size % entrySize === lastEntryBytes) return Math.ceil(s.size / entrySize);
  throw new PatchTableError(s.name, `size ${s.size} is not a whole number of the ${entrySize}-byte entries Linux ${versionString(version)} uses (an unknown layout: refusing to read it)`);
}
