/**
 * pv_ops slot names: `.parainstructions` entries carry `type` = PARAVIRT_PATCH(op) =
 * offsetof(struct paravirt_patch_template, op) / sizeof(void *) (Linux 6.1
 * arch/x86/include/asm/paravirt_types.h). The layout depends on the configuration; this is the
 * x86-64 layout with CONFIG_PARAVIRT_XXL, CONFIG_X86_IOPL_IOPERM and CONFIG_PGTABLE_LEVELS=5,
 * which is what Debian's 6.1 kernels use. `struct paravirt_callee_save` is one pointer, so a
 * callee-save op takes one slot; `mmu.lazy_mode` takes three.
 */

const CPU = [
  'io_delay', 'get_debugreg', 'set_debugreg', 'read_cr0', 'write_cr0', 'write_cr4', 'load_tr_desc',
  'load_gdt', 'load_idt', 'set_ldt', 'store_tr', 'load_tls', 'load_gs_index', 'write_ldt_entry',
  'write_gdt_entry', 'write_idt_entry', 'alloc_ldt', 'free_ldt', 'load_sp0', 'invalidate_io_bitmap',
  'update_io_bitmap', 'wbinvd', 'cpuid', 'read_msr', 'write_msr', 'read_msr_safe', 'write_msr_safe',
  'read_pmc', 'start_context_switch', 'end_context_switch',
].map((n) => `cpu.${n}`);

const IRQ = ['save_fl', 'irq_disable', 'irq_enable', 'safe_halt', 'halt'].map((n) => `irq.${n}`);

const MMU = [
  'flush_tlb_user', 'flush_tlb_kernel', 'flush_tlb_one_user', 'flush_tlb_multi', 'tlb_remove_table',
  'exit_mmap', 'notify_page_enc_status_changed', 'read_cr2', 'write_cr2', 'read_cr3', 'write_cr3',
  'activate_mm', 'dup_mmap', 'pgd_alloc', 'pgd_free', 'alloc_pte', 'alloc_pmd', 'alloc_pud',
  'alloc_p4d', 'release_pte', 'release_pmd', 'release_pud', 'release_p4d', 'set_pte', 'set_pmd',
  'ptep_modify_prot_start', 'ptep_modify_prot_commit', 'pte_val', 'make_pte', 'pgd_val', 'make_pgd',
  'set_pud', 'pmd_val', 'make_pmd', 'pud_val', 'make_pud', 'set_p4d', 'p4d_val', 'make_p4d', 'set_pgd',
  'lazy_mode.enter', 'lazy_mode.leave', 'lazy_mode.flush', 'set_fixmap',
].map((n) => `mmu.${n}`);

const LOCK = ['queued_spin_lock_slowpath', 'queued_spin_unlock', 'wait', 'kick', 'vcpu_is_preempted'].map((n) => `lock.${n}`);

/** Slot index → `group.op` name, in struct order. */
export const PV_OPS_SLOTS: readonly string[] = [...CPU, ...IRQ, ...MMU, ...LOCK];

/** `lock.queued_spin_unlock`, or `slot 97` for an index past the known layout. */
export function pvOpsSlotName(type: number): string {
  return PV_OPS_SLOTS[type] ?? `slot ${type}`;
}

/** The slot index of a `group.op` name (also accepts the bare op name when unique). */
export function pvOpsSlot(name: string): number | undefined {
  const i = PV_OPS_SLOTS.indexOf(name);
  if (i >= 0) return i;
  const matches = PV_OPS_SLOTS.flatMap((s, j) => (s.endsWith(`.${name}`) ? [j] : []));
  return matches.length === 1 ? matches[0] : undefined;
}
