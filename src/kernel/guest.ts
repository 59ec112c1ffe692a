/**
 * Booting the guest: lay out the image, decide the lock flavour as Linux does, patch every site
 * (apply_paravirt) before the other vCPUs start, and set each vCPU on its workload. Afterwards the
 * guest can check its locks: every shared counter must equal the sum of the per-CPU acquisition
 * counts (mutual exclusion), and every task must finish (no lost wake-up).
 */
import { Machine, type RunOptions, type RunResult, type Tier } from '../machine/machine.ts';
import { drainAll, load, type Halves } from '../machine/access.ts';
import { Reg, Flag } from '../x86/registers.ts';
import { KvmHost, type KvmOptions, type Vendor } from '../host/kvm.ts';
import type { ServiceContext, ServiceFactory } from '../machine/service.ts';
import {
  DATA, DATA_BASE, DATA_SIZE, GUEST_MAX_VCPUS, MAX_LOCKS, PERCPU, PERCPU_BASE, PERCPU_SIZE, PV_HASH_ENTRIES,
  PV_HASH_ENTRY_SIZE, STACK_BASE, STACK_SIZE, TEXT_BASE, TEXT_SIZE, VECTOR, counterAddress, percpuBase, stackTop,
} from './layout.ts';
import { buildImage, SERVICE, type Image, type NmiEntry, type WorkloadShape } from './image.ts';
import { applyParavirt, kvmSpinlockInit, kvmVcpuIsPreempted, pvOpsTable, type SpinlockDecision } from './paravirt.ts';
import { PV_OPS, type Flavor } from './pv-ops.ts';
import { nativeSlowpath, newSlowpathStats, pvSlowpath, pvUnlockSlowpath, type SlowpathEnv, type SlowpathStats } from './qspinlock-slowpath.ts';
import { GuestConfigError } from './errors.ts';
import { AtomicSwitchOracle } from './atomic-switch.ts';
import { Prng } from '../sched/prng.ts';
import { hexAddress } from '../x86/format.ts';

export type Platform = 'bare-metal' | 'kvm';
export type FlavorChoice = 'auto' | Flavor;

export interface GuestOptions {
  vcpus: number;
  platform?: Platform;
  host?: KvmOptions;
  /**
   * auto = decide as kvm_spinlock_init does; native or pv = force the four lock ops it sets
   * (vcpu_is_preempted is kvm_guest_init's: KVM's on a KVM host, which offers steal time).
   */
  flavor?: FlavorChoice;
  nopvspin?: boolean;
  /** The hypercall instruction the guest was built with (default: the host vendor's). */
  hypercall?: 'vmcall' | 'vmmcall';
  workload?: Partial<WorkloadShape>;
  /** SPIN_THRESHOLD for PV waiters (default Linux's, 1 << 15; a smaller one is a declared deviation). */
  spinThreshold?: number;
  tso?: boolean;
  stopOnHazard?: boolean;
  /** Execution tier of the machine (src/machine/machine.ts; default compiled). */
  tier?: Tier;
  /** Seed of the workload's own randomness (udelay jitter). */
  seed?: number;
  /** Relative jitter of udelay() times, 0..1 (default 0.5). */
  delayJitter?: number;
  /** The NMI entry (default `linux`: Linux's nested-NMI handling; `plain` is a negative control). */
  nmiEntry?: NmiEntry;
}

/** SPIN_THRESHOLD of kernel/locking/qspinlock_paravirt.h (Linux 6.1): spins before a PV waiter halts. */
export const SPIN_THRESHOLD = 1 << 15;

export const DEFAULT_WORKLOAD: WorkloadShape = { iterations: 20, criticalLoops: 10, thinkLoops: 20, taskLocks: 1, irqLockEvery: 4 };

export interface LockReport {
  index: number;
  role: 'task' | 'irq' | 'nmi';
  counter: number;
  acquisitions: number;
  ok: boolean;
}

export interface GuestSnapshot {
  step: number;
  /** The latest vCPU clock, in cycles (timed strategy; 0 otherwise). */
  time: number;
  acquisitions: number;
  slowpaths: number;
  spins: number;
  waits: number;
  kicks: number;
}

export interface GuestStats extends SlowpathStats {
  /** Lock wait times in TSC cycles (rdtsc before and after each task-context acquisition). */
  waitCycles: number[];
  tasksDone: number;
}

function checkOptions(o: GuestOptions): void {
  if (!Number.isInteger(o.vcpus) || o.vcpus < 1) throw new GuestConfigError(`a guest needs at least 1 vCPU, not ${o.vcpus}`);
  if (o.vcpus > GUEST_MAX_VCPUS) throw new GuestConfigError(`this guest supports at most ${GUEST_MAX_VCPUS} vCPUs, not ${o.vcpus}`);
  if (o.flavor !== undefined && !['auto', 'native', 'pv'].includes(o.flavor)) throw new GuestConfigError(`unknown lock flavor '${o.flavor}' (auto, native or pv)`);
  if (o.platform !== undefined && !['bare-metal', 'kvm'].includes(o.platform)) throw new GuestConfigError(`unknown platform '${o.platform}' (bare-metal or kvm)`);
  const w = { ...DEFAULT_WORKLOAD, ...o.workload };
  if (w.taskLocks < 1 || w.taskLocks + 2 > MAX_LOCKS) throw new GuestConfigError(`taskLocks must be 1..${MAX_LOCKS - 2}`);
  if (!Number.isInteger(w.iterations) || w.iterations < 1) throw new GuestConfigError('workload iterations must be a positive integer');
}

/**
 * Something installed on a booted guest that keeps state in TypeScript or registers services,
 * probes or IDT entries (a protocol, its trigger, a patcher). Its constructor calls
 * `guest.install(this)`; Guest.fork() asks every installed component, in install order, for its
 * counterpart on the fork, which registers its own services there with closures over its own
 * copied state (never the parent's). A service or probe that no component re-registers makes
 * fork() fail, so a new service cannot silently share state between forks.
 */
export interface GuestComponent {
  /** Build this component on `fork` (a fork of the guest it is installed on) with a copy of its state. */
  forkInto(fork: Guest): GuestComponent;
}

export interface GuestForkOptions {
  /**
   * Re-seed the workload's randomness (udelay jitter) as a boot with this seed would: a fork of a
   * booted guest with seed s runs exactly as a fresh boot with seed s. Default: continue the
   * parent's sequence.
   */
  seed?: number;
}

/** Internal: what the constructor forks from (Guest.fork). */
interface ForkSource {
  parent: Guest;
  seed: number | undefined;
}

export class Guest {
  readonly machine: Machine;
  readonly host: KvmHost | undefined;
  readonly image: Image;
  readonly decision: SpinlockDecision;
  readonly stats: GuestStats;
  readonly workload: WorkloadShape;
  readonly env: SlowpathEnv;
  /** The atomic-switch oracle (DESIGN.md §6), on for every guest. */
  readonly atomicSwitch: AtomicSwitchOracle;
  /** What lockop_checkpoint() runs (workload.lockopCheckpoint); installed by the v2 switch. */
  lockopCheckpoint: ServiceFactory | undefined;
  /** The workload's own randomness (udelay jitter). */
  private readonly rng: Prng;
  /** Components installed on this guest, in order (Guest.fork forks each). */
  private readonly components: GuestComponent[] = [];
  /** On a fork: the parent's components → their counterparts here. */
  private readonly counterparts = new Map<GuestComponent, GuestComponent>();

  constructor(readonly options: GuestOptions, from?: ForkSource) {
    if (from !== undefined) {
      // A fork (Guest.fork): the image and the boot decision are the parent's (immutable); every
      // piece of state is copied; every service and probe is registered again over the copies.
      const p = from.parent;
      this.workload = p.workload;
      this.image = p.image;
      this.decision = p.decision;
      const m = p.machine.fork({ bare: true });
      m.step = p.machine.step;
      this.machine = m;
      this.host = p.host?.fork(m);
      this.stats = { ...p.stats, waitCycles: [...p.stats.waitCycles] };
      this.env = { ...p.env, stats: this.stats };
      this.atomicSwitch = p.atomicSwitch.fork(m);
      this.env.ops = this.atomicSwitch;
      this.rng = from.seed !== undefined ? new Prng(from.seed) : p.rng.clone();
      this.registerServices();
      return;
    }
    checkOptions(options);
    const platform = options.platform ?? 'kvm';
    const vendor: Vendor = options.host?.vendor ?? 'intel';
    this.workload = { ...DEFAULT_WORKLOAD, ...options.workload };
    const m = new Machine({ vcpus: options.vcpus, tso: options.tso ?? true, stopOnHazard: options.stopOnHazard ?? true, ...(options.tier ? { tier: options.tier } : {}) });
    this.machine = m;
    m.memory.map(TEXT_BASE, TEXT_SIZE, 'rx');
    m.memory.map(DATA_BASE, DATA_SIZE, 'rw');
    m.memory.map(PERCPU_BASE, PERCPU_SIZE * options.vcpus, 'rw');
    m.memory.map(STACK_BASE, STACK_SIZE * options.vcpus, 'rw');

    this.host = platform === 'kvm' ? new KvmHost(m, options.host) : undefined;
    if (this.host) for (let i = 0; i < options.vcpus; i++) this.host.stealTime[i] = percpuBase(i) + PERCPU.stealTime;
    const cpuid = (leaf: number) => this.host?.cpuid(m.vcpu(0), leaf);

    // kvm_guest_init() picks vcpu_is_preempted (steal time) before kvm_spinlock_init() runs.
    const hypercall = options.hypercall ?? (vendor === 'amd' ? 'vmmcall' : 'vmcall');
    this.image = buildImage(this.workload, hypercall, options.nmiEntry ?? 'linux', kvmVcpuIsPreempted(cpuid));
    m.memory.writeBytes(TEXT_BASE, this.image.text);
    for (let i = 0; i < options.vcpus; i++) m.memory.writeU64(DATA_BASE + DATA.perCpuOffset + 8 * i, percpuBase(i));

    // kvm_spinlock_init(): what CPUID says, unless the flavour is forced.
    const auto = kvmSpinlockInit(cpuid, options.vcpus, options.nopvspin ?? false);
    const choice = options.flavor ?? 'auto';
    if (choice === 'pv' && !(this.host?.pvUnhalt ?? false)) {
      throw new GuestConfigError('lock flavor pv needs a KVM host with PV_UNHALT (platform kvm, host.pvUnhalt true)');
    }
    this.decision = choice === 'auto' ? auto : { flavor: choice, reason: `lock flavor forced to ${choice}` };

    const stats: GuestStats = { ...newSlowpathStats(), waitCycles: [], tasksDone: 0 };
    this.stats = stats;
    this.env = {
      pvWaitStub: this.symbol('pv_wait'),
      pvKickStub: this.symbol('pv_kick'),
      hash: { pointer: DATA_BASE + DATA.pvLockHash, table: DATA_BASE + DATA.pvHash, entries: PV_HASH_ENTRIES, entrySize: PV_HASH_ENTRY_SIZE },
      spinThreshold: options.spinThreshold ?? SPIN_THRESHOLD,
      stats,
    };
    this.atomicSwitch = new AtomicSwitchOracle(m, this.image.sites, this.symbol('kvm_kick_cpu'));
    this.env.ops = this.atomicSwitch;
    this.rng = new Prng(options.seed ?? 1);
    this.registerServices();
    this.setFlavor(this.decision.flavor);

    m.setIdt(VECTOR.LOCK_IRQ, this.symbol('irq_handler'));
    m.setIdt(VECTOR.NMI, this.symbol('nmi_handler'));
    m.setIdt(VECTOR.HINT, this.symbol('hint_handler'));
    for (const c of m.vcpus) {
      c.rip = this.symbol('task_entry');
      c.setAddr(Reg.RSP, stackTop(c.id));
      c.gsBase = percpuBase(c.id);
      c.flags |= Flag.IF;
      c.setReg64(Reg.R13, BigInt(this.workload.iterations));
      c.setReg64(Reg.RBX, BigInt((c.id % this.workload.taskLocks) * 64));
    }
  }

  /** The kernel's own services, over this guest's state (at boot, and again on every fork). */
  private registerServices(): void {
    const m = this.machine, env = this.env, stats = this.stats, rng = this.rng;
    m.registerService(SERVICE.nativeSlowpath, 'native_queued_spin_lock_slowpath', (ctx) => nativeSlowpath(ctx, env));
    m.registerService(SERVICE.pvSlowpath, '__pv_queued_spin_lock_slowpath', (ctx) => pvSlowpath(ctx, env));
    m.registerService(SERVICE.pvUnlockSlowpath, '__pv_queued_spin_unlock_slowpath', (ctx) => pvUnlockSlowpath(ctx, env));
    m.registerService(SERVICE.recordWait, 'record_wait', function* (ctx: ServiceContext) {
      stats.waitCycles.push(ctx.arg(0));
      yield* ctx.work();
    });
    // udelay() with seeded jitter (uniform ±delayJitter): real think times vary, and a fixed period
    // would phase-lock the vCPUs into a collision-free rhythm no real workload has.
    const jitter = this.options.delayJitter ?? 0.5;
    m.registerService(SERVICE.udelay, 'udelay', (ctx: ServiceContext) => ctx.delay(Math.round(ctx.arg(0) * (1 + jitter * (2 * rng.float() - 1)))));
    m.registerService(SERVICE.taskDone, 'task_done', function* (ctx: ServiceContext) {
      stats.tasksDone++;
      yield* ctx.work();
    });
    if (this.workload.lockopCheckpoint) {
      m.registerService(SERVICE.lockopCheckpoint, 'lockop_checkpoint', (ctx: ServiceContext) => {
        const f = this.lockopCheckpoint;
        return f ? f(ctx) : ctx.work();
      });
    }
  }

  /** Record a component installed on this guest (its constructor calls this), for Guest.fork. */
  install<T extends GuestComponent>(c: T): T {
    this.components.push(c);
    return c;
  }

  /** On a fork: the counterpart of the parent's component `c` (its copy installed here). */
  counterpart<T extends GuestComponent>(c: T): T {
    const x = this.counterparts.get(c);
    if (x === undefined) throw new GuestConfigError('this component is not installed on the guest this one was forked from');
    return x as T;
  }

  /**
   * An independent guest in the same state: the machine (copy-on-write), the counters, the
   * atomic-switch oracle, the host, the workload's randomness (`seed` re-seeds it as a boot would),
   * and every installed component (protocols, triggers, patchers) with their services rebound to
   * the fork's own copies; `counterpart()` finds them. Fork between runs: a vCPU inside a kernel
   * service cannot be forked (its coroutine is not copyable) and fork() says so.
   */
  fork(opts: GuestForkOptions = {}): Guest {
    const g = new Guest(opts.seed !== undefined ? { ...this.options, seed: opts.seed } : this.options, { parent: this, seed: opts.seed });
    for (const c of this.components) g.counterparts.set(c, c.forkInto(g));
    const missing = [...this.machine.services].filter(([a]) => !g.machine.services.has(a)).map(([a, svc]) => `service '${svc.name}' at ${hexAddress(a)}`);
    const probes = new Set(g.machine.probeAddresses());
    missing.push(...this.machine.probeAddresses().filter((a) => !probes.has(a)).map((a) => `a probe at ${hexAddress(a)}`));
    if (this.lockopCheckpoint !== undefined && g.lockopCheckpoint === undefined) missing.push('the lockop_checkpoint handler');
    if (this.machine.hooks !== (this.host ?? this.machine.hooks) || (this.host === undefined && Object.keys(this.machine.hooks).length > 0)) missing.push('host hooks installed outside the guest\'s host');
    if (missing.length > 0) throw new GuestConfigError(`cannot fork this guest: ${missing.join(', ')} belong${missing.length === 1 ? 's' : ''} to nothing that forks (install it as a GuestComponent)`);
    return g;
  }

  /**
   * Boot-time: kvm_spinlock_init()'s __pv_init_lock_hash() when it enables PV spinlocks (only
   * then: a native boot has no hash), the pv_ops table and every site for `flavor` (apply_paravirt).
   */
  private setFlavor(flavor: Flavor): void {
    if (flavor === 'pv') this.machine.memory.writeU64(this.env.hash.pointer, this.env.hash.table);
    this.writePvOps(flavor);
    applyParavirt(this.machine.memory, this.image.sites, flavor, this.image.targets);
  }

  /** Point every pv_ops slot at `flavor`'s implementation (boot, or the end of a runtime switch). */
  writePvOps(flavor: Flavor): void {
    const table = pvOpsTable(flavor, this.image.targets);
    for (const op of PV_OPS) this.machine.memory.writeU64(DATA_BASE + DATA.pvOps + 8 * op, table.get(op)!);
  }

  /**
   * The options that make this guest differ from Linux 6.1 on purpose, one line each (a run
   * prints them in its header): a smaller SPIN_THRESHOLD makes PV waiters halt after a few spins,
   * so short runs reach pv_wait, pv_hash and pv_kick.
   */
  deviations(): string[] {
    const t = this.env.spinThreshold;
    return t === SPIN_THRESHOLD ? [] : [`SPIN_THRESHOLD ${t} (Linux 6.1: 1 << 15 = ${SPIN_THRESHOLD}): PV waiters halt after ${t} spins`];
  }

  get flavor(): Flavor {
    return this.decision.flavor;
  }

  symbol(name: string): number {
    const a = this.image.symbols.get(name);
    if (a === undefined) throw new GuestConfigError(`no symbol '${name}' in the guest image`);
    return a;
  }

  get tasksDone(): boolean {
    return this.stats.tasksDone === this.machine.vcpus.length;
  }

  /**
   * Run until every task has finished and every vCPU is back in its idle HLT (so no IRQ or NMI
   * handler is stopped half-way through a critical section), or the run stops for another reason.
   */
  run(opts: RunOptions = {}): RunResult {
    const until = opts.until;
    const settled = (m: Machine) => this.tasksDone && m.vcpus.every((c) => c.halted);
    // Settled changes only at a task_done service or a HLT, never inside a compiled block.
    return this.machine.run({ maxInstructions: 50_000_000, ...opts, until: (m) => settled(m) || (until?.(m) ?? false), untilCoarse: until === undefined || opts.untilCoarse === true });
  }

  /** The p-th percentile of the task-context lock wait times, in TSC cycles (0 with no samples). */
  waitPercentile(p: number): number {
    const xs = this.stats.waitCycles;
    if (xs.length === 0) return 0;
    const sorted = Float64Array.from(xs).sort();
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  }

  /** HLTs executed inside kvm_wait (PV waiters that halted), from the trace. */
  haltsInKvmWait(): number {
    const lo = this.symbol('kvm_wait'), hi = this.symbol('kvm_kick_cpu');
    return this.machine.events.filter((e) => e.type === 'halt' && e.rip >= lo && e.rip < hi).length;
  }

  /**
   * The guest's counters now, without disturbing the run: every lock's acquisitions as each vCPU
   * sees its own per-CPU counts (its store buffer included), the slowpath statistics, kicks, and
   * the step and latest vCPU clock. For before/after comparisons around a switch.
   */
  snapshot(): GuestSnapshot {
    const m = this.machine;
    const st = this.stats;
    return { step: m.step, time: Math.max(...m.vcpus.map((c) => c.time)), acquisitions: this.acquisitionsSoFar(), slowpaths: st.slowpaths, spins: st.spins, waits: st.waits, kicks: st.kicks };
  }

  /**
   * Acquisitions of locks 0..locks-1 so far (default: every lock; the task locks come first), as
   * each vCPU sees its own per-CPU counts, store buffer included: readable mid-run.
   */
  acquisitionsSoFar(locks = this.workload.taskLocks + 2): number {
    const m = this.machine;
    const out: Halves = { lo: 0, hi: 0 };
    let n = 0;
    for (const c of m.vcpus) {
      for (let i = 0; i < locks; i++) {
        load(m.memory, c, percpuBase(c.id) + PERCPU.acquisitions + 8 * i, 8, out);
        n += out.lo + out.hi * 2 ** 32;
      }
    }
    return n;
  }

  /** Mutual exclusion per lock: shared counter == sum of per-CPU acquisitions. */
  checkLocks(): LockReport[] {
    for (const c of this.machine.vcpus) drainAll(this.machine.memory, c);
    const out: LockReport[] = [];
    const n = this.workload.taskLocks + 2;
    for (let i = 0; i < n; i++) {
      const counter = this.machine.memory.readU64(counterAddress(i));
      let acquisitions = 0;
      for (const c of this.machine.vcpus) acquisitions += this.machine.memory.readU64(percpuBase(c.id) + PERCPU.acquisitions + 8 * i);
      const role = i === this.image.irqLock ? 'irq' : i === this.image.nmiLock ? 'nmi' : 'task';
      out.push({ index: i, role, counter, acquisitions, ok: counter === acquisitions });
    }
    return out;
  }
}

