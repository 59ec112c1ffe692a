/**
 * The machine's global descriptor table: Linux's x86-64 `gdt_page` (arch/x86/include/asm/segment.h
 * GDT_ENTRY_*, arch/x86/kernel/cpu/common.c), fixed, since nothing here runs LGDT. Only VERW
 * reads it: the machine is always in 64-bit mode at CPL 0, with flat segments.
 */

/** What VERW needs of a descriptor (SDM Vol. 3A 3.4.5): present, data or code, writable, DPL. */
interface Descriptor {
  kind: 'code' | 'data' | 'system';
  writable: boolean;
  dpl: 0 | 3;
}

const CODE0: Descriptor = { kind: 'code', writable: false, dpl: 0 };
const CODE3: Descriptor = { kind: 'code', writable: false, dpl: 3 };
const SYSTEM: Descriptor = { kind: 'system', writable: false, dpl: 0 };

/** GDT index → descriptor; an index not listed is a not-present (zero) entry. */
const LINUX_GDT: ReadonlyMap<number, Descriptor> = new Map<number, Descriptor>([
  [1, CODE0], // GDT_ENTRY_KERNEL32_CS
  [2, CODE0], // GDT_ENTRY_KERNEL_CS (__KERNEL_CS = 0x10)
  [3, { kind: 'data', writable: true, dpl: 0 }], // GDT_ENTRY_KERNEL_DS (__KERNEL_DS = 0x18)
  [4, CODE3], // GDT_ENTRY_DEFAULT_USER32_CS
  [5, { kind: 'data', writable: true, dpl: 3 }], // GDT_ENTRY_DEFAULT_USER_DS (__USER_DS = 0x2b)
  [6, CODE3], // GDT_ENTRY_DEFAULT_USER_CS
  [8, SYSTEM], // GDT_ENTRY_TSS (16 bytes: 8 and 9)
  [9, SYSTEM],
  [10, SYSTEM], // GDT_ENTRY_LDT
  [11, SYSTEM],
  // GDT_ENTRY_TLS_MIN..MAX (12..14) are empty until a task sets TLS.
  [15, { kind: 'data', writable: false, dpl: 3 }], // GDT_ENTRY_CPUNODE: type 5, read-only data (setup_getcpu)
]);

/** GDT_ENTRIES (segment.h): selectors with a higher index are beyond the GDT limit. */
const GDT_ENTRIES = 16;

/** The privilege level the machine runs at (the guest kernel's). */
const CPL = 0;

/**
 * VERW's check (SDM Vol. 2B "VERR/VERW"): is the segment `selector` names writable from CPL? It
 * must be within the GDT (TI = 0: Linux has no LDT by default), not null, a data segment, writable,
 * and accessible: DPL >= CPL and DPL >= RPL. VERW sets ZF when this holds and clears it otherwise.
 */
export function verwWritable(selector: number): boolean {
  const index = (selector >>> 3) & 0x1fff, ti = (selector >>> 2) & 1, rpl = selector & 3;
  if (ti !== 0 || index === 0 || index >= GDT_ENTRIES) return false;
  const d = LINUX_GDT.get(index);
  if (d === undefined || d.kind !== 'data' || !d.writable) return false;
  return d.dpl >= CPL && d.dpl >= rpl;
}
