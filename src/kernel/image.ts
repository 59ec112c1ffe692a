/**
 * The guest kernel's text, written with the assembler DSL: the lock fast path and every pv-op
 * call site as real x86 (DESIGN.md §4), the paravirt implementations Linux writes in assembly
 * (the PV unlock, __kvm_vcpu_is_preempted, kvm_wait, kvm_kick_cpu), callee-save thunks, and the
 * workload. Every call site is recorded as a `.parainstructions` entry {address, type, len}.
 */
import {
  Asm, mem, rip, abs, byte, dword, qword, gs,
  rax, rbx, rcx, rdx, rsi, rdi, r8, r9, r10, r11, r12, r13, eax, ebx, ecx, edx, esi, edi, al, dl,
  type AsmReg,
} from '../x86/asm.ts';
import { DATA, DATA_BASE, NmiState, PERCPU, SERVICE_BASE, TEXT_BASE, TEXT_SIZE, counterAddress, lockAddress } from './layout.ts';
import { PV_OPS, PvOp, SITE_LENGTH, type Flavor, type OpTargets, type PatchSite } from './pv-ops.ts';
import { Q_LOCKED_VAL } from './qspinlock-word.ts';
import { KvmHypercall, STEAL_TIME_PREEMPTED_OFFSET } from '../host/kvm-abi.ts';
import { GuestConfigError } from './errors.ts';
import { HARDIRQ_OFFSET, NMI_MASK, NMI_OFFSET } from './preempt-count.ts';

/** Kernel services (TypeScript coroutines) and their fixed addresses. */
export const SERVICE = {
  nativeSlowpath: SERVICE_BASE + 0x00,
  pvSlowpath: SERVICE_BASE + 0x10,
  pvUnlockSlowpath: SERVICE_BASE + 0x20,
  recordWait: SERVICE_BASE + 0x30,
  taskDone: SERVICE_BASE + 0x40,
  udelay: SERVICE_BASE + 0x50,
  /** lockop_checkpoint(): the task loop's no-lock point (v2 global barrier, src/kernel/lockop-barrier.ts). */
  lockopCheckpoint: SERVICE_BASE + 0x60,
} as const;

export interface WorkloadShape {
  /** Lock/unlock iterations per vCPU in task context. */
  iterations: number;
  /** Delay-loop iterations inside the critical section and between acquisitions (instruction by instruction). */
  criticalLoops: number;
  thinkLoops: number;
  /** Or: time inside the critical section and between acquisitions as udelay() cycles (one step each). */
  criticalCycles?: number;
  thinkCycles?: number;
  /** Number of task-context locks; vCPU i uses lock (i mod taskLocks). */
  taskLocks: number;
  /** Every n-th iteration also takes the IRQ lock with interrupts disabled (0 = never). */
  irqLockEvery: number;
  /**
   * Call lockop_checkpoint() between task iterations and in the idle loop, where the CPU holds no
   * lock (the v2 lock-op switch's global barrier and its trigger poll; default off).
   */
  lockopCheckpoint?: boolean;
  /**
   * Extra `.parainstructions` lock-op sites in cold_lock_sites(), a function no vCPU calls, so a
   * switch can be measured on 10, 100 or 1,000 sites while the live ones stay the same (default 0).
   * They mix the five ops in the proportions of a real kernel's lock-op sites (EXTRA_SITE_MIX), so
   * a switch writes every form patchBytes makes (a CALL, the inlined `movb`, NOPs) as often as it
   * would there, and skips the vcpu_is_preempted sites as often (no switch changes that op).
   */
  extraSites?: number;
}

/**
 * Lock-op sites per op in Debian's 6.1 cloud kernel (6.1.0-56-cloud-amd64; `pvpatch inspect
 * vmlinux`: slots 79..83): 35 slowpath, 39 unlock, 2 wait, 1 kick, 9 vcpu_is_preempted of 86.
 */
export const EXTRA_SITE_MIX: Readonly<Record<PvOp, number>> = {
  [PvOp.QueuedSpinLockSlowpath]: 35,
  [PvOp.QueuedSpinUnlock]: 39,
  [PvOp.Wait]: 2,
  [PvOp.Kick]: 1,
  [PvOp.VcpuIsPreempted]: 9,
};

/**
 * The op of each of `n` extra sites: at every prefix, each op has its share of EXTRA_SITE_MIX
 * rounded as closely as possible (the op furthest below its share comes next; ties by op order).
 */
export function extraSiteTypes(n: number): PvOp[] {
  const ops = PV_OPS;
  const total = ops.reduce((a, op) => a + EXTRA_SITE_MIX[op], 0);
  const emitted = ops.map(() => 0);
  const out: PvOp[] = [];
  for (let i = 1; i <= n; i++) {
    let best = 0, bestDeficit = -Infinity;
    ops.forEach((op, k) => {
      const deficit = (EXTRA_SITE_MIX[op] * i) / total - emitted[k]!;
      if (deficit > bestDeficit) { bestDeficit = deficit; best = k; }
    });
    emitted[best]!++;
    out.push(ops[best]!);
  }
  return out;
}

export interface Image {
  text: Uint8Array;
  sites: PatchSite[];
  symbols: Map<string, number>;
  targets: OpTargets;
  /** Lock indices: task locks 0..taskLocks-1, then the IRQ lock, then the NMI lock. */
  irqLock: number;
  nmiLock: number;
  hypercall: 'vmcall' | 'vmmcall';
}

const PV_OPS_ADDR = DATA_BASE + DATA.pvOps;
const CALLER_SAVED: readonly AsmReg[] = [rcx, rdx, rsi, rdi, r8, r9, r10, r11];

class ImageBuilder {
  readonly a = new Asm(TEXT_BASE);
  private readonly siteLabels: { label: string; type: PvOp }[] = [];

  /** A pv-op call site: `call *pv_ops+8*type(%rip)`, NOP-padded to the op's site length. */
  site(type: PvOp): void {
    const label = `.site${this.siteLabels.length}`;
    this.a.here(label);
    this.siteLabels.push({ label, type });
    this.a.callIndirect(rip(PV_OPS_ADDR + 8 * type));
    const padding = SITE_LENGTH[type] - 6;
    if (padding > 0) this.a.nop(padding);
  }

  sites(addressOf: (label: string) => number): PatchSite[] {
    return this.siteLabels.map((s) => ({ address: addressOf(s.label), type: s.type, len: SITE_LENGTH[s.type] }));
  }
}

function rdtsc64(a: Asm): void {
  a.ins('rdtsc').ins('shl', rdx, 32).ins('or', rax, rdx);
}

/** The kernel text's mapping: all the image may occupy. */
const TEXT_ROOM = TEXT_SIZE;

function doesNotFit(what: string): GuestConfigError {
  return new GuestConfigError(`the guest text does not fit: ${what}, and there are ${TEXT_ROOM} bytes (0x${TEXT_ROOM.toString(16)}) in the kernel text's mapping`);
}

/**
 * The NMI entry: `linux` does what Linux's does, nested-NMI handling included (emitNmiHandler);
 * `plain` runs the handler on every NMI, so an NMI that nests after an IRET inside an NMI runs it
 * again inside the first (a negative control: DESIGN.md §5, "no NMI handling").
 */
export type NmiEntry = 'linux' | 'plain';

/**
 * Build the guest kernel text for `shape`, using `hypercall` for KVM hypercalls; `vcpuIsPreempted`
 * is kvm_guest_init()'s boot-time choice for that op (src/kernel/paravirt.ts kvmVcpuIsPreempted).
 */
export function buildImage(shape: WorkloadShape, hypercall: 'vmcall' | 'vmmcall', nmiEntry: NmiEntry, vcpuIsPreempted: Flavor): Image {
  const extra = shape.extraSites ?? 0;
  if (!Number.isInteger(extra) || extra < 0) throw new GuestConfigError(`workload extraSites must be a non-negative integer, not ${extra}`);
  // Before assembling, so an absurd request fails at once instead of after building a huge image.
  const maxLen = Math.max(...PV_OPS.map((op) => SITE_LENGTH[op]));
  if (extra * maxLen > TEXT_ROOM) throw doesNotFit(`${extra} extra sites of up to ${maxLen} bytes need ${extra * maxLen}`);
  const b = new ImageBuilder();
  const a = b.a;
  const irqLock = shape.taskLocks;
  const nmiLock = shape.taskLocks + 1;

  // _raw_spin_lock(lock): queued_spin_lock() inlined — the fast path, then the slowpath site.
  a.here('_raw_spin_lock');
  a.xor(eax, eax).mov(edx, Q_LOCKED_VAL);
  a.lock().cmpxchg(dword(mem(rdi)), edx);
  a.jne(a.label('.lock_slow'));
  a.ret();
  a.bind(a.label('.lock_slow'));
  a.mov(esi, eax);
  b.site(PvOp.QueuedSpinLockSlowpath);
  a.ret();

  // _raw_spin_unlock(lock): the unlock site.
  a.here('_raw_spin_unlock');
  b.site(PvOp.QueuedSpinUnlock);
  a.ret();

  // Stubs through which the slowpath services reach the wait, kick and vcpu_is_preempted sites.
  a.here('pv_wait');
  b.site(PvOp.Wait);
  a.ret();
  a.here('pv_kick');
  b.site(PvOp.Kick);
  a.ret();
  a.here('vcpu_is_preempted');
  b.site(PvOp.VcpuIsPreempted);
  a.movzx(eax, al);
  a.ret();

  // __raw_callee_save___pv_queued_spin_unlock (arch/x86/include/asm/qspinlock_paravirt.h).
  a.here('__raw_callee_save___pv_queued_spin_unlock');
  a.push(rdx).mov(eax, 1).xor(edx, edx);
  a.lock().cmpxchg(byte(mem(rdi)), dl);
  a.cmp(al, 1).jne(a.label('.pv_unlock_slow'));
  a.pop(rdx).ret();
  a.bind(a.label('.pv_unlock_slow'));
  a.push(rsi).movzx(esi, al);
  a.call(a.label('__raw_callee_save___pv_queued_spin_unlock_slowpath'));
  a.pop(rsi).pop(rdx).ret();

  // PV_CALLEE_SAVE_REGS_THUNK(__pv_queued_spin_unlock_slowpath): keep every register but RAX.
  a.here('__raw_callee_save___pv_queued_spin_unlock_slowpath');
  for (const r of CALLER_SAVED) a.push(r);
  a.call(SERVICE.pvUnlockSlowpath);
  for (const r of [...CALLER_SAVED].reverse()) a.pop(r);
  a.ret();

  // __raw_callee_save___kvm_vcpu_is_preempted (arch/x86/kernel/kvm.c): steal_time.preempted != 0.
  a.here('__raw_callee_save___kvm_vcpu_is_preempted');
  a.mov(rax, qword(mem({ index: rdi, scale: 8, disp: DATA_BASE + DATA.perCpuOffset })));
  a.cmp(byte(mem(rax, PERCPU.stealTime + STEAL_TIME_PREEMPTED_OFFSET)), 0);
  a.ins('setne', al);
  a.ret();

  // kvm_wait(ptr, val): halt if *ptr still holds val (arch/x86/kernel/kvm.c).
  // Linux 6.1: `if (in_nmi()) return;` first: an NMI must never halt (nothing would wake it in
  // time, and the lock it waits for may be held by the context it interrupted).
  a.here('kvm_wait');
  a.test(dword(gs(PERCPU.preemptCount)), NMI_MASK).jne(a.label('.wait_out'));
  a.pushfq().pop(rax).test(eax, 0x200).je(a.label('.wait_irqs_off'));
  a.cli();
  a.movzx(eax, byte(mem(rdi))).cmp(eax, esi).jne(a.label('.wait_enable'));
  a.sti().hlt(); // safe_halt(): the STI shadow covers the HLT
  a.ret();
  a.bind(a.label('.wait_enable'));
  a.sti().ret();
  a.bind(a.label('.wait_irqs_off'));
  a.movzx(eax, byte(mem(rdi))).cmp(eax, esi).jne(a.label('.wait_out'));
  a.hlt();
  a.bind(a.label('.wait_out'));
  a.ret();

  // kvm_kick_cpu(cpu): KVM_HC_KICK_CPU with the target's APIC ID.
  a.here('kvm_kick_cpu');
  a.push(rbx).mov(eax, KvmHypercall.KICK_CPU).xor(ebx, ebx).mov(ecx, edi);
  a.ins(hypercall);
  a.pop(rbx).ret();

  // The native implementations the pv_ops table points at before patching (paravirt.c).
  a.here('native_queued_spin_unlock');
  a.mov(byte(mem(rdi)), 0).ret();
  a.here('native_vcpu_is_preempted');
  a.xor(eax, eax).ret();
  a.here('paravirt_nop');
  a.ret();
  a.here('halt_forever');
  a.hlt().jmp(a.label('halt_forever'));

  // The workload: task loop, IRQ handler, NMI handler (src/kernel/workload.ts explains the shape).
  emitTask(b, shape, irqLock);
  emitHandler(b, 'irq_handler', irqLock, 'iretq', 0);
  if (nmiEntry === 'linux') emitNmiHandler(b, nmiLock);
  else emitHandler(b, 'nmi_handler', nmiLock, 'iretq', NMI_OFFSET + HARDIRQ_OFFSET);
  a.here('hint_handler');
  a.iretq();
  emitColdSites(b, extra);

  const out = a.assemble();
  if (out.bytes.length > TEXT_ROOM) throw doesNotFit(`the image is ${out.bytes.length} bytes`);
  const sym = (n: string) => out.address(n);
  const symbols = new Map<string, number>();
  for (const [k] of out.labels) if (!k.startsWith('.')) symbols.set(k, out.address(k));
  return {
    text: out.bytes,
    sites: b.sites(sym),
    symbols,
    irqLock,
    nmiLock,
    hypercall,
    targets: {
      native: {
        [PvOp.QueuedSpinLockSlowpath]: SERVICE.nativeSlowpath,
        [PvOp.QueuedSpinUnlock]: sym('native_queued_spin_unlock'),
        [PvOp.Wait]: sym('paravirt_nop'),
        [PvOp.Kick]: sym('paravirt_nop'),
        [PvOp.VcpuIsPreempted]: sym('native_vcpu_is_preempted'),
      },
      pv: {
        [PvOp.QueuedSpinLockSlowpath]: SERVICE.pvSlowpath,
        [PvOp.QueuedSpinUnlock]: sym('__raw_callee_save___pv_queued_spin_unlock'),
        [PvOp.Wait]: sym('kvm_wait'),
        [PvOp.Kick]: sym('kvm_kick_cpu'),
        [PvOp.VcpuIsPreempted]: sym('__raw_callee_save___kvm_vcpu_is_preempted'),
      },
      vcpuIsPreempted,
    },
  };
}

/** Delay loop of `n` iterations in ecx (no shared state): critical-section work or think time. */
function delay(a: Asm, n: number, label: string): void {
  if (n <= 0) return;
  a.mov(ecx, n);
  a.here(label);
  a.dec(ecx).jne(a.label(label));
}

/** udelay(cycles): one service step that moves the vCPU's clock (clobbers rdi). */
function udelay(a: Asm, cycles: number): void {
  if (cycles <= 0) return;
  a.mov(edi, cycles).call(SERVICE.udelay);
}

/** A critical section on lock `i`: shared counter += 1, per-CPU acquisition count += 1. */
function criticalSection(b: ImageBuilder, i: number, loops: number, tag: string): void {
  const a = b.a;
  a.mov(rax, qword(abs(counterAddress(i)))).inc(rax).mov(qword(abs(counterAddress(i))), rax);
  a.inc(qword(gs(PERCPU.acquisitions + 8 * i)));
  delay(a, loops, `.cs_${tag}`);
}

function emitTask(b: ImageBuilder, shape: WorkloadShape, irqLock: number): void {
  const a = b.a;
  // On entry: r13 = iterations, r12 scratch (t0), rbx = this CPU's task lock index * 64.
  a.here('task_entry');
  a.here('.task_loop');
  if (shape.lockopCheckpoint) a.call(SERVICE.lockopCheckpoint);
  delay(a, shape.thinkLoops, '.think');
  udelay(a, shape.thinkCycles ?? 0);
  rdtsc64(a);
  a.mov(r12, rax);
  a.lea(rdi, mem({ base: rbx, disp: lockAddress(0) }));
  a.call(a.label('_raw_spin_lock'));
  rdtsc64(a);
  a.sub(rax, r12).mov(rdi, rax).call(SERVICE.recordWait);
  // Critical section on the task lock: counter at the same index, one line per lock.
  a.lea(r8, mem({ base: rbx, disp: counterAddress(0) }));
  a.mov(rax, qword(mem(r8))).inc(rax).mov(qword(mem(r8)), rax);
  a.lea(r8, mem({ base: rbx, disp: 0 }));
  a.ins('shr', r8, 3);
  a.inc(qword(gs(mem({ base: r8, disp: PERCPU.acquisitions }))));
  delay(a, shape.criticalLoops, '.cs_task');
  udelay(a, shape.criticalCycles ?? 0);
  a.lea(rdi, mem({ base: rbx, disp: lockAddress(0) }));
  b.site(PvOp.QueuedSpinUnlock); // the unlock, inlined as Linux inlines spin_unlock
  if (shape.irqLockEvery > 0) {
    // Every n-th iteration: spin_lock_irqsave(irq_lock) — the lock IRQ handlers take too.
    a.mov(rax, r13).xor(edx, edx).mov(ecx, shape.irqLockEvery).ins('div', rcx);
    a.test(rdx, rdx).jne(a.label('.skip_irq_lock'));
    a.pushfq().cli();
    a.mov(rdi, lockAddress(irqLock)).call(a.label('_raw_spin_lock'));
    criticalSection(b, irqLock, 0, 'task_irq');
    a.mov(rdi, lockAddress(irqLock));
    b.site(PvOp.QueuedSpinUnlock);
    a.popfq();
    a.bind(a.label('.skip_irq_lock'));
  }
  a.dec(r13).jne(a.label('.task_loop'));
  a.mov(byte(gs(PERCPU.done)), 1);
  a.call(SERVICE.taskDone);
  a.here('.task_idle');
  if (shape.lockopCheckpoint) {
    // Idle is a no-lock point too; IRQs off across the check so a wake-up IPI cannot slip in
    // before the HLT (sti; hlt: the STI shadow covers it).
    a.cli().call(SERVICE.lockopCheckpoint).sti();
  }
  a.hlt().jmp(a.label('.task_idle'));
}

/** cold_lock_sites(): the extra lock-op sites back to back, then RET. Nothing calls it. */
function emitColdSites(b: ImageBuilder, n: number): void {
  if (n <= 0) return;
  b.a.here('cold_lock_sites');
  for (const type of extraSiteTypes(n)) b.site(type);
  b.a.ret();
}

/**
 * nmi_handler with Linux's nested-NMI protocol (arch/x86/kernel/nmi.c, exc_nmi() and nmi_state).
 * NMIs stay blocked from delivery until the next IRET, any IRET (SDM 6.7.1), so an IRET inside the
 * handler (poke_int3_handler's, after an INT3 on a site the NMI path runs) lets a second NMI in
 * while the first still holds its lock. Linux never runs the handler nested:
 *  1. nmi_state != NMI_NOT_RUNNING: this NMI nested inside one this CPU is running. Latch it
 *     (NMI_LATCHED) and IRET at once, back into the outer handler; never wait for a lock here.
 *  2. Otherwise nmi_state = NMI_EXECUTING and, at nmi_restart, run the handler.
 *  3. this_cpu_dec_return(nmi_state): LATCHED -> EXECUTING means an NMI came in meanwhile: run
 *     the handler again for it (nmi_restart); EXECUTING -> NOT_RUNNING returns.
 * entry_64.S does the same in assembly for NMIs from kernel mode (the "NMI executing" variable on
 * the NMI stack; a nested NMI rewrites the outer's iret frame to repeat_nmi, so the outer repeats
 * instead of the nested one running). This machine has no IST stacks, so the guest uses the C
 * form (what exc_nmi does for a nested NMI the assembly lets through), with the same effect: a
 * nested NMI is latched and the handler repeats after the outer one finishes. Several NMIs
 * during one handler collapse into one repeat, as the CPU latches only one.
 */
function emitNmiHandler(b: ImageBuilder, lock: number): void {
  const a = b.a;
  const state = byte(gs(PERCPU.nmiState));
  a.here('nmi_handler');
  a.cmp(state, NmiState.NOT_RUNNING).je(a.label('.nmi_first'));
  a.here('nmi_latched');
  a.mov(state, NmiState.LATCHED);
  a.iretq(); // the flags the CMP changed come back from the frame
  a.bind(a.label('.nmi_first'));
  a.mov(state, NmiState.EXECUTING);
  a.push(rax);
  for (const r of CALLER_SAVED) a.push(r);
  a.here('.nmi_restart');
  a.add(dword(gs(PERCPU.preemptCount)), NMI_OFFSET + HARDIRQ_OFFSET); // irqentry_nmi_enter(): __nmi_enter()
  a.mov(rdi, lockAddress(lock)).call(a.label('_raw_spin_lock'));
  criticalSection(b, lock, 0, 'nmi_handler');
  a.mov(rdi, lockAddress(lock));
  b.site(PvOp.QueuedSpinUnlock);
  a.sub(dword(gs(PERCPU.preemptCount)), NMI_OFFSET + HARDIRQ_OFFSET); // irqentry_nmi_exit(): __nmi_exit()
  a.dec(state).jne(a.label('.nmi_restart'));
  for (const r of [...CALLER_SAVED].reverse()) a.pop(r);
  a.pop(rax);
  a.iretq();
}

/** A handler that takes `lock`; `preempt` is what its entry adds to preempt_count (nmi_enter; 0: nothing). */
function emitHandler(b: ImageBuilder, name: string, lock: number, ret: 'iretq', preempt: number): void {
  const a = b.a;
  a.here(name);
  a.push(rax);
  for (const r of CALLER_SAVED) a.push(r);
  if (preempt !== 0) a.add(dword(gs(PERCPU.preemptCount)), preempt);
  a.mov(rdi, lockAddress(lock)).call(a.label('_raw_spin_lock'));
  criticalSection(b, lock, 0, name);
  a.mov(rdi, lockAddress(lock));
  b.site(PvOp.QueuedSpinUnlock);
  if (preempt !== 0) a.sub(dword(gs(PERCPU.preemptCount)), preempt);
  for (const r of [...CALLER_SAVED].reverse()) a.pop(r);
  a.pop(rax);
  a.ins(ret);
}

