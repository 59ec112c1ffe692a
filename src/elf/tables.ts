/**
 * The patch-site tables of a Linux 6.1 x86-64 image, decoded from their sections:
 *
 * - `.parainstructions`: struct paravirt_patch_site { u8 *instr; u8 type; u8 len; } aligned to 8:
 *   16 bytes (paravirt_types.h; the `.short clobber` of older kernels is gone, the pad remains).
 * - `.altinstructions`: struct alt_instr { s32 instr_offset; s32 repl_offset; u16 cpuid;
 *   u8 instrlen; u8 replacementlen; } __packed: 12 bytes, offsets relative to their own field,
 *   bit 15 of cpuid = ALTINSTR_FLAG_INV (ALT_NOT) (asm/alternative.h).
 * - `.retpoline_sites`, `.return_sites`: s32 self-relative (objtool --retpoline / --rethunk).
 * - `__jump_table`: struct jump_entry { s32 code; s32 target; long key; } 16 bytes, key's low
 *   bits are flags (include/linux/jump_label.h).
 * - `.static_call_sites`: struct static_call_site { s32 addr; s32 key; } 8 bytes, key's low bits
 *   STATIC_CALL_SITE_TAIL (1) and _INIT (2) (include/linux/static_call_types.h).
 *
 * A linked vmlinux keeps the first four as sections; __jump_table and .static_call_sites are
 * folded into .data / .init.data by the linker script and cannot be found without symbols.
 */
import { PatchTableError } from './errors.ts';
import type { KernelImage, ImageSection } from './image.ts';

export const ALTINSTR_FLAG_INV = 0x8000;

export type TableName = 'parainstructions' | 'altinstructions' | 'retpoline_sites' | 'return_sites' | 'jump_table' | 'static_call_sites';

export const TABLE_SECTIONS: Record<TableName, { section: string; entrySize: number }> = {
  parainstructions: { section: '.parainstructions', entrySize: 16 },
  altinstructions: { section: '.altinstructions', entrySize: 12 },
  retpoline_sites: { section: '.retpoline_sites', entrySize: 4 },
  return_sites: { section: '.return_sites', entrySize: 4 },
  jump_table: { section: '__jump_table', entrySize: 16 },
  static_call_sites: { section: '.static_call_sites', entrySize: 8 },
};

export interface ParaSite {
  readonly address: number;
  /** pv_ops slot (PARAVIRT_PATCH). */
  readonly type: number;
  readonly len: number;
}

export interface AltInstr {
  readonly address: number;
  readonly replacement: number;
  /** Feature bit without the inversion flag. */
  readonly feature: number;
  /** ALT_NOT: patch when the feature is absent. */
  readonly inverted: boolean;
  readonly instrlen: number;
  readonly replacementlen: number;
}

export interface JumpEntry {
  readonly code: number;
  readonly target: number;
  /** Address of the static_key (flags masked off). */
  readonly key: number;
  /** JUMP_TYPE_TRUE: the branch is initially enabled. */
  readonly initiallyTrue: boolean;
  readonly branch: boolean;
}

export interface StaticCallSite {
  readonly address: number;
  readonly key: number;
  readonly tail: boolean;
  readonly init: boolean;
}

export interface PatchTables {
  readonly parainstructions: readonly ParaSite[];
  readonly altinstructions: readonly AltInstr[];
  readonly retpolineSites: readonly number[];
  readonly returnSites: readonly number[];
  readonly jumpTable: readonly JumpEntry[] | undefined;
  readonly staticCallSites: readonly StaticCallSite[] | undefined;
  /** Section sizes behind each table (for counts derived from size / entry size). */
  readonly sectionSizes: Partial<Record<TableName, number>>;
}

function view(s: ImageSection): DataView {
  return new DataView(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength);
}

function tableSection(image: KernelImage, table: TableName): ImageSection | undefined {
  const { section, entrySize } = TABLE_SECTIONS[table];
  const s = image.section(section);
  if (s === undefined) return undefined;
  if (s.size % entrySize !== 0) {
    throw new PatchTableError(section, `size ${s.size} is not a multiple of the ${entrySize}-byte Linux 6.1 entry (a different kernel version?)`);
  }
  return s;
}

export function readParainstructions(image: KernelImage): ParaSite[] {
  const s = tableSection(image, 'parainstructions');
  if (s === undefined) return [];
  const v = view(s);
  const out: ParaSite[] = [];
  for (let off = 0; off < s.size; off += 16) {
    out.push({ address: Number(v.getBigInt64(off, true)), type: v.getUint8(off + 8), len: v.getUint8(off + 9) });
  }
  return out;
}

export function readAltinstructions(image: KernelImage): AltInstr[] {
  const s = tableSection(image, 'altinstructions');
  if (s === undefined) return [];
  const v = view(s);
  const out: AltInstr[] = [];
  for (let off = 0; off < s.size; off += 12) {
    const field = s.addr + off;
    const cpuid = v.getUint16(off + 8, true);
    out.push({
      address: field + v.getInt32(off, true),
      replacement: field + 4 + v.getInt32(off + 4, true),
      feature: cpuid & ~ALTINSTR_FLAG_INV,
      inverted: (cpuid & ALTINSTR_FLAG_INV) !== 0,
      instrlen: v.getUint8(off + 10),
      replacementlen: v.getUint8(off + 11),
    });
  }
  return out;
}

function readSelfRelative(image: KernelImage, table: 'retpoline_sites' | 'return_sites'): number[] {
  const s = tableSection(image, table);
  if (s === undefined) return [];
  const v = view(s);
  const out: number[] = [];
  for (let off = 0; off < s.size; off += 4) out.push(s.addr + off + v.getInt32(off, true));
  return out;
}

function readJumpTable(image: KernelImage): JumpEntry[] | undefined {
  const s = tableSection(image, 'jump_table');
  if (s === undefined) return undefined;
  const v = view(s);
  const out: JumpEntry[] = [];
  for (let off = 0; off < s.size; off += 16) {
    const field = s.addr + off;
    const keyRel = Number(v.getBigInt64(off + 8, true));
    const flags = Number(BigInt.asUintN(2, v.getBigInt64(off + 8, true)));
    out.push({
      code: field + v.getInt32(off, true),
      target: field + 4 + v.getInt32(off + 4, true),
      // key is relative to its own field too (CONFIG_HAVE_ARCH_JUMP_LABEL_RELATIVE).
      key: field + 8 + keyRel - flags,
      initiallyTrue: (flags & 1) !== 0,
      branch: (flags & 2) !== 0,
    });
  }
  return out;
}

function readStaticCallSites(image: KernelImage): StaticCallSite[] | undefined {
  const s = tableSection(image, 'static_call_sites');
  if (s === undefined) return undefined;
  const v = view(s);
  const out: StaticCallSite[] = [];
  for (let off = 0; off < s.size; off += 8) {
    const field = s.addr + off;
    const key = field + 4 + v.getInt32(off + 4, true);
    const flags = ((key % 4) + 4) % 4;
    out.push({ address: field + v.getInt32(off, true), key: key - flags, tail: (flags & 1) !== 0, init: (flags & 2) !== 0 });
  }
  return out;
}

export function readPatchTables(image: KernelImage): PatchTables {
  const sectionSizes: Partial<Record<TableName, number>> = {};
  for (const t of Object.keys(TABLE_SECTIONS) as TableName[]) {
    const s = image.section(TABLE_SECTIONS[t].section);
    if (s !== undefined) sectionSizes[t] = s.size;
  }
  return {
    parainstructions: readParainstructions(image),
    altinstructions: readAltinstructions(image),
    retpolineSites: readSelfRelative(image, 'retpoline_sites'),
    returnSites: readSelfRelative(image, 'return_sites'),
    jumpTable: readJumpTable(image),
    staticCallSites: readStaticCallSites(image),
    sectionSizes,
  };
}
