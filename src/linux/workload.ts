/**
 * The real-kernel guest's workload, in pvpatch's own x86 at WORKLOAD_TEXT (the module area): what
 * a driver does with a spinlock, calling the kernel's own exported functions.
 * - task loop (every vCPU): `_raw_spin_lock(task lock)`, the shared counter += 1 (a plain load and
 *   store, so a broken lock loses increments), this CPU's acquisition count += 1, a delay,
 *   `_raw_spin_unlock`; every `irqEvery`-th iteration `_raw_spin_lock_irqsave(irq lock)` /
 *   `_raw_spin_unlock_irqrestore` around the IRQ lock's counter; then done[cpu] = 1 and idle
 *   (`sti; hlt`).
 * - IRQ handler: irq_enter_rcu()'s preempt_count += HARDIRQ_OFFSET, the IRQ lock, the counter,
 *   irq_exit; IRET.
 * - NMI handler: irqentry_nmi_enter()'s __nmi_enter(): preempt_count += NMI_OFFSET + HARDIRQ_OFFSET
 *   (so the real kvm_wait's in_nmi() sees it and never halts), the NMI lock, the counter, back.
 * Handlers find their CPU as Linux code does, through %gs:cpu_number.
 */
import { Asm, abs, dword, gs, mem, qword, byte, rax, rbx, rbp, rcx, rdi, rsi, r8, r9, r10, r11, r12, r13, r14, rdx, ecx, eax, type AsmReg } from '../x86/asm.ts';
import { HARDIRQ_OFFSET, NMI_OFFSET } from '../kernel/preempt-count.ts';
import { ACQ_STRIDE, WORKLOAD_DATA, WORKLOAD_DATA_LAYOUT, WORKLOAD_TEXT, WORKLOAD_TEXT_SIZE, counterAddress, lockAddress } from './layout.ts';
import { LinuxGuestError } from './errors.ts';

/** The kernel functions the workload calls, and the per-CPU symbols it reads. */
export interface KernelEntries {
  readonly _raw_spin_lock: number;
  readonly _raw_spin_unlock: number;
  readonly _raw_spin_lock_irqsave: number;
  readonly _raw_spin_unlock_irqrestore: number;
  /** Per-CPU offsets (%gs-relative). */
  readonly cpu_number: number;
  readonly __preempt_count: number;
}

export interface LinuxWorkloadShape {
  /** Task-loop iterations per vCPU. */
  readonly iterations: number;
  /** Task locks; vCPU i takes lock i mod taskLocks. */
  readonly taskLocks: number;
  /** Delay-loop iterations inside the critical section and between acquisitions. */
  readonly criticalLoops: number;
  readonly thinkLoops: number;
  /** Every n-th iteration also takes the IRQ lock with _irqsave (0: never). */
  readonly irqEvery: number;
  /** Delay-loop iterations inside the IRQ and NMI handlers' critical sections (default 0). */
  readonly handlerLoops?: number;
  /**
   * The NMI handler does nmi_enter()'s preempt_count += NMI_OFFSET + HARDIRQ_OFFSET (default
   * true). False is a negative control: in_nmi() is then false inside the NMI handler.
   */
  readonly nmiEnter?: boolean;
  /**
   * Simulated cycles of udelay() (pvpatch's own service, outside the kernel's text) inside the
   * task's critical section and between acquisitions, on top of the delay loops (default 0): a
   * microsecond-scale delay at one step instead of thousands of loop instructions (bench locks).
   */
  readonly criticalCycles?: number;
  readonly thinkCycles?: number;
}

export const DEFAULT_LINUX_WORKLOAD: LinuxWorkloadShape = { iterations: 20, taskLocks: 1, criticalLoops: 10, thinkLoops: 20, irqEvery: 4 };

export interface WorkloadImage {
  readonly text: Uint8Array;
  readonly symbols: ReadonlyMap<string, number>;
  readonly irqLock: number;
  readonly nmiLock: number;
  /** Return addresses of the workload's calls to each lock function (where a call's caller resumes). */
  readonly returnSites: ReadonlyMap<number, 'lock' | 'unlock'>;
}

const CALLER_SAVED: readonly AsmReg[] = [rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11];

function delay(a: Asm, n: number, label: string): void {
  if (n <= 0) return;
  a.mov(ecx, n);
  a.here(label);
  a.dec(ecx).jne(a.label(label));
}

/** udelay(cycles) through the service at `udelay` (clobbers rdi). */
function callUdelay(a: Asm, cycles: number | undefined, udelay: number | undefined): void {
  if (cycles === undefined || cycles <= 0) return;
  if (udelay === undefined) throw new LinuxGuestError('the workload has udelay() cycles but no udelay service');
  a.mov(rdi, cycles).call(udelay);
}

/** acquisitions[cpu][lock] += 1 for the CPU in %gs:cpu_number (clobbers rax). */
function countAcquisition(a: Asm, k: KernelEntries, lock: number): void {
  a.mov(eax, dword(gs(k.cpu_number)));
  a.ins('imul', rax, rax, ACQ_STRIDE);
  a.inc(qword(mem({ base: rax, disp: WORKLOAD_DATA + WORKLOAD_DATA_LAYOUT.acquisitions + 8 * lock })));
}

/** counter[lock] += 1 as a plain load/store (clobbers rax). */
function bumpCounter(a: Asm, lock: number): void {
  a.mov(rax, qword(abs(counterAddress(lock)))).inc(rax).mov(qword(abs(counterAddress(lock))), rax);
}

/**
 * `checkpoint`: the address of lockop_checkpoint() (the v2 switch's global barrier, a point where
 * this CPU holds no lock): called at the top of every task-loop iteration and, IRQs off, before
 * every idle HLT (sti; hlt: the STI shadow keeps a wake-up IPI from slipping in between).
 */
export function buildWorkload(shape: LinuxWorkloadShape, k: KernelEntries, checkpoint?: number, udelay?: number): WorkloadImage {
  const a = new Asm(WORKLOAD_TEXT);
  const irqLock = shape.taskLocks;
  const nmiLock = shape.taskLocks + 1;
  const returnLabels: [string, 'lock' | 'unlock'][] = [];
  let calls = 0;
  const call = (target: number, kind: 'lock' | 'unlock'): void => {
    a.call(target);
    const l = `.ret${calls++}`;
    a.here(l);
    returnLabels.push([l, kind]);
  };

  // Task: rbx = this CPU's task lock, r12 its counter, r14 its acquisition slot, r13 iterations left.
  a.here('task_entry');
  a.here('.task_loop');
  if (checkpoint !== undefined) a.call(checkpoint);
  delay(a, shape.thinkLoops, '.think');
  callUdelay(a, shape.thinkCycles, udelay);
  a.mov(rdi, rbx);
  call(k._raw_spin_lock, 'lock');
  a.mov(rax, qword(mem(r12))).inc(rax).mov(qword(mem(r12)), rax);
  a.inc(qword(mem(r14)));
  delay(a, shape.criticalLoops, '.cs_task');
  callUdelay(a, shape.criticalCycles, udelay);
  a.mov(rdi, rbx);
  call(k._raw_spin_unlock, 'unlock');
  if (shape.irqEvery > 0) {
    a.mov(rax, r13).xor(rdx, rdx).mov(ecx, shape.irqEvery).ins('div', rcx);
    a.test(rdx, rdx).jne(a.label('.skip_irq_lock'));
    a.mov(rdi, lockAddress(irqLock));
    call(k._raw_spin_lock_irqsave, 'lock');
    a.mov(rbp, rax); // the flags _irqsave returns, for _irqrestore
    bumpCounter(a, irqLock);
    countAcquisition(a, k, irqLock);
    a.mov(rdi, lockAddress(irqLock)).mov(rsi, rbp);
    call(k._raw_spin_unlock_irqrestore, 'unlock');
    a.bind(a.label('.skip_irq_lock'));
  }
  a.dec(r13).jne(a.label('.task_loop'));
  a.mov(eax, dword(gs(k.cpu_number)));
  a.mov(byte(mem({ base: rax, disp: WORKLOAD_DATA + WORKLOAD_DATA_LAYOUT.done })), 1);
  a.here('.idle_loop');
  if (checkpoint !== undefined) a.cli().call(checkpoint);
  a.here('task_idle');
  a.sti().hlt();
  a.jmp(a.label('.idle_loop'));

  const handler = (name: string, lock: number, preempt: number): void => {
    a.here(name);
    for (const r of CALLER_SAVED) a.push(r);
    if (preempt !== 0) a.add(dword(gs(k.__preempt_count)), preempt);
    a.mov(rdi, lockAddress(lock));
    call(k._raw_spin_lock, 'lock');
    bumpCounter(a, lock);
    countAcquisition(a, k, lock);
    delay(a, shape.handlerLoops ?? 0, `.cs_${name}`);
    a.mov(rdi, lockAddress(lock));
    call(k._raw_spin_unlock, 'unlock');
    if (preempt !== 0) a.sub(dword(gs(k.__preempt_count)), preempt);
    for (const r of [...CALLER_SAVED].reverse()) a.pop(r);
    a.iretq();
  };
  handler('irq_handler', irqLock, HARDIRQ_OFFSET);
  handler('nmi_handler', nmiLock, shape.nmiEnter === false ? 0 : NMI_OFFSET + HARDIRQ_OFFSET);

  const out = a.assemble();
  if (out.bytes.length > WORKLOAD_TEXT_SIZE) throw new LinuxGuestError(`the workload is ${out.bytes.length} bytes, more than its ${WORKLOAD_TEXT_SIZE}`);
  const symbols = new Map<string, number>();
  for (const [name] of out.labels) if (!name.startsWith('.')) symbols.set(name, out.address(name));
  const returnSites = new Map(returnLabels.map(([l, kind]) => [out.address(l), kind] as const));
  return { text: out.bytes, symbols, irqLock, nmiLock, returnSites };
}
