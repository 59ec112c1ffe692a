/**
 * pv_ops of a Xen PV guest as alternative_instructions() finds it (Linux 6.1 arch/x86/xen):
 * xen_start_kernel replaces the whole of `pv_ops.cpu` (enlighten_pv.c xen_cpu_ops), `.irq`
 * (irq.c xen_irq_ops) and `.mmu` (mmu_pv.c xen_mmu_ops), so every member those initialisers do not
 * name is NULL and apply_paravirt patches it into a call to paravirt_BUG. Later boot steps, still
 * before patching, refine a few: xen_setup_vcpu_info_placement (the `_direct` irq ops and
 * read_cr2), xen_pagetable_init / xen_post_allocator_init (the final set_* / alloc_* / release_*,
 * make_pte, write_cr3), xen_setup_gdt (write_gdt_entry, load_gdt), xen_init_spinlocks (the lock
 * ops, unless nopvspin or a single vCPU).
 */

/** `nop` = paravirt_nop (the site becomes NOPs); anything else names the function. */
export type XenSlotValue = string | 'nop';

export const XEN_REPLACED_GROUPS = ['cpu', 'irq', 'mmu'] as const;

export const XEN_PV_OPS: Readonly<Record<string, XenSlotValue>> = {
  'cpu.cpuid': 'xen_cpuid',
  'cpu.set_debugreg': 'xen_set_debugreg',
  'cpu.get_debugreg': 'xen_get_debugreg',
  'cpu.read_cr0': 'xen_read_cr0',
  'cpu.write_cr0': 'xen_write_cr0',
  'cpu.write_cr4': 'xen_write_cr4',
  'cpu.wbinvd': 'native_wbinvd',
  'cpu.read_msr': 'xen_read_msr',
  'cpu.write_msr': 'xen_write_msr',
  'cpu.read_msr_safe': 'xen_read_msr_safe',
  'cpu.write_msr_safe': 'xen_write_msr_safe',
  'cpu.read_pmc': 'xen_read_pmc',
  'cpu.load_tr_desc': 'nop',
  'cpu.set_ldt': 'xen_set_ldt',
  'cpu.load_gdt': 'xen_load_gdt',
  'cpu.load_idt': 'xen_load_idt',
  'cpu.load_tls': 'xen_load_tls',
  'cpu.load_gs_index': 'xen_load_gs_index',
  'cpu.alloc_ldt': 'xen_alloc_ldt',
  'cpu.free_ldt': 'xen_free_ldt',
  'cpu.store_tr': 'xen_store_tr',
  'cpu.write_ldt_entry': 'xen_write_ldt_entry',
  'cpu.write_gdt_entry': 'xen_write_gdt_entry',
  'cpu.write_idt_entry': 'xen_write_idt_entry',
  'cpu.load_sp0': 'xen_load_sp0',
  'cpu.invalidate_io_bitmap': 'xen_invalidate_io_bitmap',
  'cpu.update_io_bitmap': 'xen_update_io_bitmap',
  'cpu.io_delay': 'xen_io_delay',
  'cpu.start_context_switch': 'paravirt_start_context_switch',
  'cpu.end_context_switch': 'xen_end_context_switch',

  'irq.save_fl': 'xen_save_fl_direct',
  'irq.irq_disable': 'xen_irq_disable_direct',
  'irq.irq_enable': 'xen_irq_enable_direct',
  'irq.safe_halt': 'xen_safe_halt',
  'irq.halt': 'xen_halt',

  'mmu.read_cr2': 'xen_read_cr2_direct',
  'mmu.write_cr2': 'xen_write_cr2',
  'mmu.read_cr3': 'xen_read_cr3',
  'mmu.write_cr3': 'xen_write_cr3',
  'mmu.flush_tlb_user': 'xen_flush_tlb',
  'mmu.flush_tlb_kernel': 'xen_flush_tlb',
  'mmu.flush_tlb_one_user': 'xen_flush_tlb_one_user',
  'mmu.flush_tlb_multi': 'xen_flush_tlb_multi',
  'mmu.tlb_remove_table': 'tlb_remove_table',
  'mmu.pgd_alloc': 'xen_pgd_alloc',
  'mmu.pgd_free': 'xen_pgd_free',
  'mmu.alloc_pte': 'xen_alloc_pte',
  'mmu.release_pte': 'xen_release_pte',
  'mmu.alloc_pmd': 'xen_alloc_pmd',
  'mmu.release_pmd': 'xen_release_pmd',
  'mmu.alloc_pud': 'xen_alloc_pud',
  'mmu.release_pud': 'xen_release_pud',
  'mmu.set_pte': 'xen_set_pte',
  'mmu.set_pmd': 'xen_set_pmd',
  'mmu.set_pud': 'xen_set_pud',
  'mmu.set_p4d': 'xen_set_p4d',
  'mmu.ptep_modify_prot_start': 'xen_ptep_modify_prot_start',
  'mmu.ptep_modify_prot_commit': 'xen_ptep_modify_prot_commit',
  'mmu.pte_val': '__raw_callee_save_xen_pte_val',
  'mmu.pgd_val': '__raw_callee_save_xen_pgd_val',
  'mmu.make_pte': '__raw_callee_save_xen_make_pte',
  'mmu.make_pgd': '__raw_callee_save_xen_make_pgd',
  'mmu.make_pmd': '__raw_callee_save_xen_make_pmd',
  'mmu.pmd_val': '__raw_callee_save_xen_pmd_val',
  'mmu.pud_val': '__raw_callee_save_xen_pud_val',
  'mmu.make_pud': '__raw_callee_save_xen_make_pud',
  'mmu.p4d_val': '__raw_callee_save_xen_p4d_val',
  'mmu.make_p4d': '__raw_callee_save_xen_make_p4d',
  'mmu.activate_mm': 'xen_activate_mm',
  'mmu.dup_mmap': 'xen_dup_mmap',
  'mmu.exit_mmap': 'xen_exit_mmap',
  'mmu.lazy_mode.enter': 'paravirt_enter_lazy_mmu',
  'mmu.lazy_mode.leave': 'xen_leave_lazy_mmu',
  'mmu.lazy_mode.flush': 'paravirt_flush_lazy_mmu',
  'mmu.set_fixmap': 'xen_set_fixmap',
};

/** xen_init_spinlocks with PV spinlocks on (the default with more than one vCPU). */
export const XEN_PV_LOCK_OPS: Readonly<Record<string, string>> = {
  'lock.queued_spin_lock_slowpath': '__pv_queued_spin_lock_slowpath',
  'lock.queued_spin_unlock': '__raw_callee_save___pv_queued_spin_unlock',
  'lock.wait': 'xen_qlock_wait',
  'lock.kick': 'xen_qlock_kick',
  'lock.vcpu_is_preempted': '__raw_callee_save_xen_vcpu_stolen',
};
