/**
 * native_patch() of Linux 5.10 (arch/x86/kernel/paravirt_patch.c): before 5.13 moved the native
 * forms into ALT_NOT(X86_FEATURE_XENPV) alternatives, apply_paravirt itself wrote a few native
 * instructions inline when the pv_ops slot still holds the native function and the site has room
 * (PATCH_CASE / PATCH: `len >= sizeof(insn)`), else fell back to paravirt_patch_default's CALL.
 * The slot is recognised by the function it points to, so the 5.10 pv_ops layout need not be known.
 */

/** Native function (as a System.map names it) → the bytes written in place of its call. */
const NATIVE_INLINE: ReadonlyMap<string, readonly number[]> = new Map([
  ['native_irq_disable', [0xfa]], // cli
  ['native_irq_enable', [0xfb]], // sti
  ['native_save_fl', [0x9c, 0x58]], // pushf; pop %rax
  ['native_restore_fl', [0x57, 0x9d]], // push %rdi; popf
  ['native_read_cr2', [0x0f, 0x20, 0xd0]], // mov %cr2, %rax
  ['__native_read_cr3', [0x0f, 0x20, 0xd8]], // mov %cr3, %rax
  ['native_write_cr3', [0x0f, 0x22, 0xdf]], // mov %rdi, %cr3
  ['native_wbinvd', [0x0f, 0x09]], // wbinvd
  ['_paravirt_ident_64', [0x48, 0x89, 0xf8]], // mov %rdi, %rax
  ['__raw_callee_save___native_queued_spin_unlock', [0xc6, 0x07, 0x00]], // movb $0, (%rdi)
  ['__raw_callee_save___native_vcpu_is_preempted', [0x31, 0xc0]], // xor %eax, %eax
]);

/** The inline native bytes for a slot holding `fn`, when the site is long enough. */
export function nativeInline510(fn: string | undefined, len: number): Uint8Array | undefined {
  const b = fn === undefined ? undefined : NATIVE_INLINE.get(fn);
  return b !== undefined && len >= b.length ? Uint8Array.from(b) : undefined;
}
