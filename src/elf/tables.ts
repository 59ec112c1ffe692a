/**
 * The patch-site tables of a Linux x86-64 image, decoded with the layouts of its version
 * (table-layouts.ts):
 *
 * - `.parainstructions` (up to 6.7): struct paravirt_patch_site { u8 *instr; u8 type; u8 len; }.
 * - `.altinstructions`: struct alt_instr, offsets relative to their own field; the feature and
 *   ALT_NOT / ALT_FLAG_DIRECT_CALL as the version encodes them.
 * - `.retpoline_sites`, `.return_sites`, `.call_sites` (call depth tracking, 6.2+),
 *   `.ibt_endbr_seal` (CONFIG_X86_KERNEL_IBT): s32 self-relative (objtool).
 * - `__jump_table`: struct jump_entry { s32 code; s32 target; long key; }, key's low bits are
 *   flags (include/linux/jump_label.h).
 * - `.static_call_sites`: struct static_call_site { s32 addr; s32 key; }, key's low bits
 *   STATIC_CALL_SITE_TAIL (1) and _INIT (2) (include/linux/static_call_types.h).
 * - `__mcount_loc`: absolute addresses of the `call __fentry__` at each traceable function.
 *
 * A module keeps every table as a section. A linked vmlinux folds __jump_table,
 * .static_call_sites and __mcount_loc into .data / .init.data (include/asm-generic/vmlinux.lds.h),
 * so they are found between their __start_ / __stop_ symbols (a System.map names them).
 */
import { PatchTableError } from './errors.ts';
import type { KernelImage, ImageSection } from './image.ts';
import { readKernelVersion } from './kernel-version.ts';
import { entryCount, tableLayouts, type TableLayouts } from './table-layouts.ts';

export const ALTINSTR_FLAG_INV = 0x8000;
/** ALT_FLAG_NOT, ALT_FLAG_DIRECT_CALL (6.3+ ft_flags high half; asm/alternative.h). */
export const ALT_FLAG_NOT = 1 << 0;
export const ALT_FLAG_DIRECT_CALL = 1 << 1;

export type TableName =
  | 'parainstructions' | 'altinstructions' | 'retpoline_sites' | 'return_sites' | 'call_sites' | 'ibt_endbr_seal'
  | 'jump_table' | 'static_call_sites' | 'mcount_loc' | 'smp_locks';

/** Where each table lives: its section in a module (and in vmlinux for the first six), its bounding symbols in a vmlinux. */
export const TABLE_SECTIONS: Record<TableName, { section: string; bounds?: readonly [string, string] }> = {
  parainstructions: { section: '.parainstructions' },
  altinstructions: { section: '.altinstructions' },
  retpoline_sites: { section: '.retpoline_sites' },
  return_sites: { section: '.return_sites' },
  call_sites: { section: '.call_sites' },
  ibt_endbr_seal: { section: '.ibt_endbr_seal' },
  jump_table: { section: '__jump_table', bounds: ['__start___jump_table', '__stop___jump_table'] },
  static_call_sites: { section: '.static_call_sites', bounds: ['__start_static_call_sites', '__stop_static_call_sites'] },
  mcount_loc: { section: '__mcount_loc', bounds: ['__start_mcount_loc', '__stop_mcount_loc'] },
  smp_locks: { section: '.smp_locks' },
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
  /** Feature bit without the flags. */
  readonly feature: number;
  /** ALT_NOT: patch when the feature is absent. */
  readonly inverted: boolean;
  /** ALT_FLAG_DIRECT_CALL (6.8+): the site is `call *pv_ops[x](%rip)`, the replacement a CALL to resolve through it. */
  readonly directCall: boolean;
  readonly instrlen: number;
  readonly replacementlen: number;
}

export interface JumpEntry {
  readonly code: number;
  readonly target: number;
  /** Address of the static_key (flags masked off). */
  readonly key: number;
  /** jump_entry_is_branch (bit 0): static_branch_likely, the JMP is taken when the key is off. */
  readonly branch: boolean;
  /** Bit 1: in the image, objtool's "NOPs this" mark (CONFIG_HAVE_JUMP_LABEL_HACK); at run time jump_entry_is_init. */
  readonly objtoolNop: boolean;
}

export interface StaticCallSite {
  readonly address: number;
  readonly key: number;
  readonly tail: boolean;
  readonly init: boolean;
}

/** runtime_const_ptr / runtime_const_shift_right_32 (6.11+, asm/runtime-const.h): immediates fixed up at boot. */
export interface RuntimeConst {
  readonly kind: 'ptr' | 'shift';
  /** The symbol whose value is patched in (USER_PTR_MAX, d_hash_shift, dentry_hashtable). */
  readonly symbol: string;
  /** Address of each immediate (8 bytes for ptr, 1 for shift). */
  readonly sites: readonly number[];
}

export interface PatchTables {
  readonly layouts: TableLayouts;
  readonly parainstructions: readonly ParaSite[];
  readonly altinstructions: readonly AltInstr[];
  readonly retpolineSites: readonly number[];
  readonly returnSites: readonly number[];
  readonly callSites: readonly number[];
  readonly endbrSeal: readonly number[];
  /** Undefined when the image does not say where the table is (a stripped vmlinux without System.map). */
  readonly jumpTable: readonly JumpEntry[] | undefined;
  readonly staticCallSites: readonly StaticCallSite[] | undefined;
  readonly mcountLoc: readonly number[] | undefined;
  readonly runtimeConsts: readonly RuntimeConst[];
  /** `.smp_locks`: each LOCK prefix, undefined for a 0 entry (page padding). */
  readonly smpLocks: readonly (number | undefined)[];
  /** Bytes and entries behind each table present in the image. */
  readonly sizes: Partial<Record<TableName, { readonly bytes: number; readonly entries: number; readonly entrySize: number }>>;
}

function view(s: ImageSection): DataView {
  return new DataView(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength);
}

/** The table's bytes as a section-like view: its own section, or the span between its bounding symbols. */
function tableBytes(image: KernelImage, table: TableName): ImageSection | undefined {
  const where = TABLE_SECTIONS[table];
  const s = image.section(where.section);
  if (s !== undefined) return s;
  if (where.bounds === undefined || image.kind === 'module') return undefined;
  const start = image.symbols.addressOf(where.bounds[0]);
  const stop = image.symbols.addressOf(where.bounds[1]);
  if (start === undefined || stop === undefined) return undefined;
  if (stop < start) throw new PatchTableError(where.section, `${where.bounds[1]} lies before ${where.bounds[0]}`);
  const bytes = stop === start ? new Uint8Array(0) : image.read(start, stop - start);
  if (bytes === undefined) throw new PatchTableError(where.section, `${where.bounds[0]}..${where.bounds[1]} is not inside one loaded section`);
  return { name: where.section, addr: start, size: stop - start, executable: false, bytes };
}

class TableReader {
  readonly sizes: PatchTables['sizes'] = {};
  constructor(
    private readonly image: KernelImage,
    readonly layouts: TableLayouts,
  ) {}

  /** The table's bytes and entry count, or undefined when absent. */
  open(table: TableName, entrySize: number, lastEntryBytes = entrySize): { s: ImageSection; v: DataView; n: number } | undefined {
    const s = tableBytes(this.image, table);
    if (s === undefined) return undefined;
    const n = entryCount(s, entrySize, this.layouts.version, lastEntryBytes);
    (this.sizes as Record<string, unknown>)[table] = { bytes: s.size, entries: n, entrySize };
    return { s, v: view(s), n };
  }

  parainstructions(): ParaSite[] {
    const layout = this.layouts.parainstructions;
    if (layout === undefined) {
      if (this.image.section('.parainstructions') !== undefined) {
        throw new PatchTableError('.parainstructions', `Linux ${this.layouts.version.release} should have no .parainstructions (gone in 6.8): an unknown layout, refusing to read it`);
      }
      return [];
    }
    const t = this.open('parainstructions', layout.stride, layout.entryBytes);
    if (t === undefined) return [];
    const out: ParaSite[] = [];
    for (let i = 0, off = 0; i < t.n; i++, off += layout.stride) {
      out.push({ address: Number(t.v.getBigInt64(off, true)), type: t.v.getUint8(off + 8), len: t.v.getUint8(off + 9) });
    }
    return out;
  }

  altinstructions(): AltInstr[] {
    const layout = this.layouts.altinstructions;
    const t = this.open('altinstructions', layout.entrySize);
    if (t === undefined) return [];
    const out: AltInstr[] = [];
    const lens = layout.flags === 'ft-flags' ? 12 : 10;
    for (let i = 0, off = 0; i < t.n; i++, off += layout.entrySize) {
      const field = t.s.addr + off;
      const cpuid = t.v.getUint16(off + 8, true);
      const flags = layout.flags === 'ft-flags' ? t.v.getUint16(off + 10, true) : 0;
      out.push({
        address: field + t.v.getInt32(off, true),
        replacement: field + 4 + t.v.getInt32(off + 4, true),
        feature: this.layouts.features.toId(layout.flags === 'ft-flags' ? cpuid : cpuid & ~ALTINSTR_FLAG_INV),
        inverted: layout.flags === 'ft-flags' ? (flags & ALT_FLAG_NOT) !== 0 : (cpuid & ALTINSTR_FLAG_INV) !== 0,
        directCall: layout.directCall && (flags & ALT_FLAG_DIRECT_CALL) !== 0,
        instrlen: t.v.getUint8(off + lens),
        replacementlen: t.v.getUint8(off + lens + 1),
      });
    }
    return out;
  }

  selfRelative(table: 'retpoline_sites' | 'return_sites' | 'call_sites' | 'ibt_endbr_seal'): number[] {
    const t = this.open(table, 4);
    if (t === undefined) return [];
    const out: number[] = [];
    for (let off = 0; off < t.s.size; off += 4) out.push(t.s.addr + off + t.v.getInt32(off, true));
    return out;
  }

  jumpTable(): JumpEntry[] | undefined {
    const t = this.open('jump_table', 16);
    if (t === undefined) return undefined;
    const out: JumpEntry[] = [];
    for (let off = 0; off < t.s.size; off += 16) {
      const field = t.s.addr + off;
      const raw = t.v.getBigInt64(off + 8, true);
      const flags = Number(BigInt.asUintN(2, raw));
      out.push({
        code: field + t.v.getInt32(off, true),
        target: field + 4 + t.v.getInt32(off + 4, true),
        // key is relative to its own field too (CONFIG_HAVE_ARCH_JUMP_LABEL_RELATIVE).
        key: field + 8 + Number(raw) - flags,
        branch: (flags & 1) !== 0,
        objtoolNop: (flags & 2) !== 0,
      });
    }
    return out;
  }

  staticCallSites(): StaticCallSite[] | undefined {
    const t = this.open('static_call_sites', 8);
    if (t === undefined) return undefined;
    const out: StaticCallSite[] = [];
    for (let off = 0; off < t.s.size; off += 8) {
      const field = t.s.addr + off;
      const key = field + 4 + t.v.getInt32(off + 4, true);
      const flags = ((key % 4) + 4) % 4;
      out.push({ address: field + t.v.getInt32(off, true), key: key - flags, tail: (flags & 1) !== 0, init: (flags & 2) !== 0 });
    }
    return out;
  }

  smpLocks(): (number | undefined)[] {
    const t = this.open('smp_locks', 4);
    if (t === undefined) return [];
    const out: (number | undefined)[] = [];
    for (let off = 0; off < t.s.size; off += 4) {
      const rel = t.v.getInt32(off, true);
      out.push(rel === 0 ? undefined : t.s.addr + off + rel);
    }
    return out;
  }

  mcountLoc(): number[] | undefined {
    const t = this.open('mcount_loc', 8);
    if (t === undefined) return undefined;
    const out: number[] = [];
    for (let off = 0; off < t.s.size; off += 8) out.push(Number(t.v.getBigInt64(off, true)));
    return out;
  }
}

/** Every `runtime_ptr_<sym>` / `runtime_shift_<sym>` section: s32 self-relative pointers to the immediates. */
function readRuntimeConsts(image: KernelImage, layouts: TableLayouts): RuntimeConst[] {
  const out: RuntimeConst[] = [];
  for (const s of image.sections) {
    const m = /^runtime_(ptr|shift)_(.+)$/.exec(s.name);
    if (m === null) continue;
    const n = entryCount(s, 4, layouts.version);
    const v = view(s);
    const sites: number[] = [];
    for (let i = 0; i < n; i++) sites.push(s.addr + 4 * i + v.getInt32(4 * i, true));
    out.push({ kind: m[1] as 'ptr' | 'shift', symbol: m[2]!, sites });
  }
  return out;
}

/** Every table of `image`, with the layouts its version uses; refuses a version or size it does not know. */
export function readPatchTables(image: KernelImage, layouts: TableLayouts = tableLayouts(readKernelVersion(image))): PatchTables {
  const r = new TableReader(image, layouts);
  return {
    layouts,
    parainstructions: r.parainstructions(),
    altinstructions: r.altinstructions(),
    retpolineSites: r.selfRelative('retpoline_sites'),
    returnSites: r.selfRelative('return_sites'),
    callSites: r.selfRelative('call_sites'),
    endbrSeal: r.selfRelative('ibt_endbr_seal'),
    jumpTable: r.jumpTable(),
    staticCallSites: r.staticCallSites(),
    mcountLoc: r.mcountLoc(),
    runtimeConsts: readRuntimeConsts(image, layouts),
    smpLocks: r.smpLocks(),
    sizes: r.sizes,
  };
}
