/**
 * The real-kernel guest (DESIGN.md §4): the Debian vmlinux mapped at its link addresses as its
 * boot leaves it (memory-map.ts), pvpatch's workload calling the kernel's own lock functions
 * (workload.ts), the KVM host serving the real kvm_wait's HLT, kvm_kick_cpu's KVM_HC_KICK_CPU and
 * the per-CPU steal_time, and probes on the real code as oracles (lock-probes.ts). Afterwards the
 * guest checks its locks: every shared counter equals the sum of the per-CPU acquisition counts,
 * every task finished, and no vCPU is left halted in kvm_wait.
 */
import { Machine, type RunOptions, type RunResult } from '../machine/machine.ts';
import { drainAll, load, type Halves } from '../machine/access.ts';
import { Flag, Reg } from '../x86/registers.ts';
import { KvmHost, type Vendor } from '../host/kvm.ts';
import { pvOpsSlot } from '../elf/pv-ops-slots.ts';
import { DATA_BASE, DATA_SIZE, VECTOR } from '../kernel/layout.ts';
import type { LinuxBoot } from './kernel.ts';
import { symbolOf } from './kernel.ts';
import { mapKernelImage, pvInitLockHash, setupPerCpuAreas, writePvOps } from './memory-map.ts';
import {
  MAX_WORKLOAD_LOCKS, STACKS, STACK_SIZE, WORKLOAD_DATA, WORKLOAD_DATA_SIZE, WORKLOAD_MAX_VCPUS, WORKLOAD_TEXT, WORKLOAD_TEXT_SIZE,
  acquisitionsAddress, counterAddress, doneAddress, lockAddress, perCpuOffset, stackTop,
} from './layout.ts';
import { buildWorkload, DEFAULT_LINUX_WORKLOAD, type LinuxWorkloadShape, type WorkloadImage } from './workload.ts';
import { copyLockProbeState, installLockProbes, lockProbeSites, newLockProbeState, quiescent, type LockProbeSites, type LockProbeState } from './lock-probes.ts';
import { LinuxGuestError } from './errors.ts';
import { switchProbeSites, switchProbes, type LockSwitchObserver, type SwitchProbeSites } from './switch-probes.ts';
import { SERVICE } from '../kernel/image.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { Prng } from '../sched/prng.ts';
import { SPIN_THRESHOLD, setSpinThreshold, spinThresholdImmediates } from './spin-threshold.ts';

/** udelay()'s relative jitter unless a scenario says otherwise: the imitation's ±50 %. */
export const DEFAULT_DELAY_JITTER = 0.5;

/** The lock implementation the boot chose (kvm_spinlock_init, native_pv_lock_init). */
export type LinuxLockFlavor = 'native' | 'pv' | 'virt-spin-lock';

export interface LinuxGuestOptions {
  readonly vcpus: number;
  readonly workload?: Partial<LinuxWorkloadShape>;
  readonly vendor?: Vendor;
  readonly tso?: boolean;
  readonly stopOnHazard?: boolean;
  /**
   * The speed knob: SPIN_THRESHOLD written into the real slowpath's two immediates (default: the
   * kernel's own 1 << 15, untouched). A deviation from the real kernel; run headers say so.
   */
  readonly spinThreshold?: number;
  /** Build the workload with lockop_checkpoint() calls (the v2 switch's global barrier; src/linux/v2-switch.ts). */
  readonly lockopCheckpoint?: boolean;
  /** Seed of the workload's own randomness: udelay() jitter (default 1; `fork({seed})` re-seeds). */
  readonly seed?: number;
  /**
   * Relative jitter of udelay() times, 0..1 (default 0.5, the imitation's: src/kernel/guest.ts).
   * Fixed delays phase-lock the vCPUs into a rhythm where each finds the lock free.
   */
  readonly delayJitter?: number;
}

export interface LinuxGuestForkOptions {
  /** Re-seed udelay()'s jitter as a boot with this seed would (default: continue the parent's sequence). */
  readonly seed?: number;
}

export interface LinuxLockReport {
  readonly index: number;
  readonly role: 'task' | 'irq' | 'nmi';
  readonly counter: number;
  readonly acquisitions: number;
  readonly ok: boolean;
}

/** What the boot decided about the locks, from the pv_ops it left and virt_spin_lock_key. */
export function lockFlavorOf(boot: LinuxBoot): LinuxLockFlavor {
  const slot = boot.setup.env.pvOp(pvOpsSlot('lock.queued_spin_lock_slowpath')!);
  if (slot.kind === 'function' && slot.address === boot.kernel.image.symbols.addressOf('__pv_queued_spin_lock_slowpath')) return 'pv';
  const key = boot.kernel.image.symbols.addressOf('virt_spin_lock_key');
  const on = key === undefined ? undefined : boot.result.jumpLabels.find((_, i) => boot.kernel.tables.jumpTable?.[i]?.key === key)?.enabled;
  return on === true ? 'virt-spin-lock' : 'native';
}

interface ForkSource {
  readonly parent: LinuxGuest;
  readonly seed: number | undefined;
}

export class LinuxGuest {
  readonly machine: Machine;
  readonly host: KvmHost | undefined;
  readonly workload: LinuxWorkloadShape;
  readonly image: WorkloadImage;
  /** The lock flavour the boot chose, or a runtime switch since (lock-op-switch.ts). */
  flavor: LinuxLockFlavor;
  /** The PV hash, when the boot (or a switch's preparation) allocated one. */
  pvHash: { address: number; entries: number; bits: number } | undefined;
  readonly probes: LockProbeState;
  private readonly sites: LockProbeSites;
  private readonly switchSites: SwitchProbeSites;
  /** The oracle of a switch in progress, told of the real code by the switch probes (switch-probes.ts). */
  switchObserver: LockSwitchObserver | undefined;
  /** What lockop_checkpoint() runs (installed by the v2 switch; a plain return before). */
  lockopCheckpoint: ((ctx: ServiceContext) => ServiceBody) | undefined;
  /** The workload's own randomness (udelay() jitter). */
  private readonly rng: Prng;

  constructor(readonly boot: LinuxBoot, readonly options: LinuxGuestOptions, from?: ForkSource) {
    if (from !== undefined) {
      const p = from.parent;
      this.workload = p.workload;
      this.image = p.image;
      this.flavor = p.flavor;
      this.pvHash = p.pvHash;
      this.sites = p.sites;
      this.switchSites = p.switchSites;
      const m = p.machine.fork({ bare: true });
      m.step = p.machine.step;
      this.machine = m;
      this.host = p.host?.fork(m);
      this.probes = copyLockProbeState(p.probes);
      this.rng = from.seed !== undefined ? new Prng(from.seed) : p.rng.clone();
      this.installProbesAndServices();
      return;
    }
    const n = options.vcpus;
    const jitter = options.delayJitter ?? DEFAULT_DELAY_JITTER;
    if (!(jitter >= 0 && jitter <= 1)) throw new LinuxGuestError(`delayJitter must be in 0..1, not ${jitter}`);
    this.rng = new Prng(options.seed ?? 1);
    if (!Number.isInteger(n) || n < 1 || n > WORKLOAD_MAX_VCPUS) throw new LinuxGuestError(`the real-kernel guest runs 1..${WORKLOAD_MAX_VCPUS} vCPUs, not ${n}`);
    this.workload = { ...DEFAULT_LINUX_WORKLOAD, ...options.workload };
    const w = this.workload;
    if (!Number.isInteger(w.taskLocks) || w.taskLocks < 1 || w.taskLocks + 2 > MAX_WORKLOAD_LOCKS) throw new LinuxGuestError(`workload taskLocks must be 1..${MAX_WORKLOAD_LOCKS - 2}`);
    if (!Number.isInteger(w.iterations) || w.iterations < 1) throw new LinuxGuestError('workload iterations must be a positive integer');
    const k = boot.kernel;
    const sym = (name: string) => symbolOf(k, name);
    const m = new Machine({ vcpus: n, tso: options.tso ?? true, stopOnHazard: options.stopOnHazard ?? true });
    this.machine = m;
    mapKernelImage(m.memory, boot);
    writePvOps(m.memory, boot);
    // APIC IDs as QEMU numbers a flat topology: CPU i has APIC ID i.
    setupPerCpuAreas(m.memory, boot, n, Array.from({ length: n }, (_, i) => i));
    this.flavor = lockFlavorOf(boot);
    this.pvHash = this.flavor === 'pv' ? pvInitLockHash(m.memory, boot, n) : undefined;

    this.image = buildWorkload(w, {
      _raw_spin_lock: sym('_raw_spin_lock'),
      _raw_spin_unlock: sym('_raw_spin_unlock'),
      _raw_spin_lock_irqsave: sym('_raw_spin_lock_irqsave'),
      _raw_spin_unlock_irqrestore: sym('_raw_spin_unlock_irqrestore'),
      cpu_number: sym('cpu_number'),
      __preempt_count: sym('__preempt_count'),
    }, options.lockopCheckpoint === true ? SERVICE.lockopCheckpoint : undefined, SERVICE.udelay);
    m.memory.map(WORKLOAD_TEXT, WORKLOAD_TEXT_SIZE, 'rx');
    m.memory.writeBytes(WORKLOAD_TEXT, this.image.text);
    m.memory.map(WORKLOAD_DATA, WORKLOAD_DATA_SIZE, 'rw');
    m.memory.map(STACKS, STACK_SIZE * n, 'rw');
    // pvpatch's kernel-service data (text_poke_bp's batch, v1's states), clear of the real kernel.
    m.memory.map(DATA_BASE, DATA_SIZE, 'rw');

    const platform = boot.options.platform;
    this.host = platform === 'bare-metal' ? undefined : new KvmHost(m, { vendor: options.vendor ?? 'intel', pvUnhalt: boot.options.pvUnhalt ?? true, realtime: platform === 'kvm-realtime' });
    // kvm_register_steal_time(): each CPU's MSR_KVM_STEAL_TIME names its per-CPU steal_time.
    if (this.host !== undefined) for (let i = 0; i < n; i++) this.host.stealTime[i] = perCpuOffset(i) + sym('steal_time');

    this.sites = lockProbeSites(boot.result.text, k);
    this.switchSites = switchProbeSites(k);
    this.probes = newLockProbeState(n);
    this.installProbesAndServices();

    if (options.spinThreshold !== undefined && options.spinThreshold !== SPIN_THRESHOLD) {
      setSpinThreshold(m.memory, spinThresholdImmediates(boot.result.text, k), options.spinThreshold);
    }

    m.setIdt(VECTOR.LOCK_IRQ, this.symbol('irq_handler'));
    m.setIdt(VECTOR.NMI, this.symbol('nmi_handler'));
    for (const c of m.vcpus) {
      const lock = c.id % w.taskLocks;
      c.rip = this.symbol('task_entry');
      c.setAddr(Reg.RSP, stackTop(c.id));
      c.gsBase = perCpuOffset(c.id);
      c.flags |= Flag.IF;
      c.setReg64(Reg.R13, BigInt(w.iterations));
      c.setAddr(Reg.RBX, lockAddress(lock));
      c.setAddr(Reg.R12, counterAddress(lock));
      c.setAddr(Reg.R14, acquisitionsAddress(c.id, lock));
    }
  }

  /** The lock and switch probes over this guest's state, and lockop_checkpoint() (a boot, and every fork). */
  private installProbesAndServices(): void {
    installLockProbes(this.machine, this.sites, this.probes, switchProbes(this.switchSites, () => this.switchObserver));
    // udelay(): the workload's microsecond delays, with the imitation's seeded jitter (uniform
    // ±delayJitter, src/kernel/guest.ts): a fixed period phase-locks the vCPUs into lock-step.
    if ((this.workload.criticalCycles ?? 0) > 0 || (this.workload.thinkCycles ?? 0) > 0) {
      const rng = this.rng, jitter = this.options.delayJitter ?? DEFAULT_DELAY_JITTER;
      this.machine.registerService(SERVICE.udelay, 'udelay', (ctx) => ctx.delay(Math.round(ctx.arg(0) * (1 + jitter * (2 * rng.float() - 1)))));
    }
    if (this.options.lockopCheckpoint === true) {
      this.machine.registerService(SERVICE.lockopCheckpoint, 'lockop_checkpoint', (ctx) => this.lockopCheckpoint?.(ctx) ?? ctx.work());
    }
  }

  /** An independent guest in the same state (copy-on-write machine, host, probe state). Fork between runs. */
  fork(opts: LinuxGuestForkOptions = {}): LinuxGuest {
    const options = opts.seed !== undefined ? { ...this.options, seed: opts.seed } : this.options;
    return new LinuxGuest(this.boot, options, { parent: this, seed: opts.seed });
  }

  symbol(name: string): number {
    const a = this.image.symbols.get(name);
    if (a === undefined) throw new LinuxGuestError(`no symbol '${name}' in the workload`);
    return a;
  }

  /** No vCPU is inside a real lock or unlock function (a point where stop_machine could switch). */
  quiescent(): boolean {
    return quiescent(this.probes);
  }

  /** What of the real kernel this guest changed (the speed knob), one line each, for run headers. */
  deviations(): string[] {
    const t = this.options.spinThreshold;
    return t !== undefined && t !== SPIN_THRESHOLD ? [`SPIN_THRESHOLD ${t} instead of the kernel's ${SPIN_THRESHOLD} (both mov $0x8000 immediates in __pv_queued_spin_lock_slowpath rewritten)`] : [];
  }

  /** The per-CPU address of the kernel's per-CPU variable `name` for vCPU `cpu`. */
  perCpu(cpu: number, name: string): number {
    return perCpuOffset(cpu) + symbolOf(this.boot.kernel, name);
  }

  /** Whether vCPU `c`'s task loop has finished, as it sees its own stores. */
  private done(cpu: number): boolean {
    const out: Halves = { lo: 0, hi: 0 };
    load(this.machine.memory, this.machine.vcpu(cpu), doneAddress(cpu), 1, out);
    return out.lo === 1;
  }

  get tasksDone(): boolean {
    return this.machine.vcpus.every((c) => this.done(c.id));
  }

  /** Run until every task has finished and every vCPU is halted in its idle loop, or another stop. */
  run(opts: RunOptions = {}): RunResult {
    const until = opts.until;
    const idle = this.symbol('task_idle');
    const settled = (m: Machine) => m.vcpus.every((c) => c.halted && c.rip === idle + 2) && this.tasksDone;
    return this.machine.run({ maxInstructions: 50_000_000, ...opts, until: (m) => settled(m) || (until?.(m) ?? false) });
  }

  /** vCPUs halted in kvm_wait's halt (after its HLT) with nothing left to wake them: lost wake-ups when the run has ended. */
  lostWakeups(): number[] {
    const after = new Set(this.sites.halts.map((a) => a + 1));
    return this.machine.vcpus.filter((c) => c.halted && after.has(c.rip)).map((c) => c.id);
  }

  /** Mutual exclusion per lock: shared counter == sum of per-CPU acquisitions. */
  checkLocks(): LinuxLockReport[] {
    const m = this.machine;
    for (const c of m.vcpus) drainAll(m.memory, c);
    const locks = this.workload.taskLocks + 2;
    const out: LinuxLockReport[] = [];
    for (let i = 0; i < locks; i++) {
      const counter = m.memory.readU64(counterAddress(i));
      let acquisitions = 0;
      for (const c of m.vcpus) acquisitions += m.memory.readU64(acquisitionsAddress(c.id, i));
      const role = i === this.image.irqLock ? 'irq' : i === this.image.nmiLock ? 'nmi' : 'task';
      out.push({ index: i, role, counter, acquisitions, ok: counter === acquisitions });
    }
    return out;
  }
}
