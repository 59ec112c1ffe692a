/**
 * The SMP machine: memory, vCPUs, the IDT, host hooks, and the run loop that asks a Chooser what
 * happens next (DESIGN.md §2–§3). A booted machine forks cheaply (copy-on-write pages) so that an
 * explorer re-runs thousands of executions from one boot.
 */
import type { Insn } from '../x86/insn.ts';
import { Memory } from './memory.ts';
import { Vcpu } from './vcpu.ts';
import { fetch, decodeAt } from './decode-cache.ts';
import { execute } from './execute.ts';
import { deliverPending, canWake, raiseIrq, raiseNmi } from './interrupts.ts';
import { drainAll, drainOne } from './access.ts';
import { Pseudo, type FootprintRecorder } from './footprint.ts';
import { ServiceContext, type ServiceFactory } from './service.ts';
import { pop64, checkReturn } from './interrupts.ts';
import { Reg } from '../x86/registers.ts';
import { MachineConfigError } from './errors.ts';
import { ACTION_KINDS, ActionKind, CostClass, FirstEnabled, NO_DECISION, action, actionCpu, actionKind, type Chooser, type ChooserStop, type ChoiceKind, type SchedulingPoint } from './chooser.ts';
import type { ExecContext, HostHooks } from './context.ts';
import type { Hazard, MachineEvent } from './events.ts';
import { StepRing, StepKind, type RecentStep } from './step-ring.ts';
import { CompiledTier } from './jit/tier.ts';
import type { StepHook } from './jit/compile.ts';

export const MAX_VCPUS = 256;

/**
 * How guest instructions execute: `interp` steps the interpreter one instruction at a time (the
 * reference); `compiled` runs hot basic blocks as generated JavaScript (src/machine/jit/) wherever
 * the run needs no per-instruction hook, with the same results, counts and schedules.
 */
export type Tier = 'interp' | 'compiled';
export const TIERS: readonly Tier[] = ['interp', 'compiled'];

/** The step ring's label for each non-step action kind (tracing only). */
const RING_KIND: Partial<Record<ActionKind, StepKind>> = {
  [ActionKind.Drain]: StepKind.Drain,
  [ActionKind.Nmi]: StepKind.Nmi,
  [ActionKind.Irq]: StepKind.Irq,
  [ActionKind.Preempt]: StepKind.Preempt,
  [ActionKind.Resume]: StepKind.Resume,
};

export interface MachineOptions {
  vcpus: number;
  /** x86-TSO store buffers (default true). Off = sequential consistency, every store commits at once. */
  tso?: boolean;
  /** Stop the run at the first hazard (default true). */
  stopOnHazard?: boolean;
  /** Keep at most this many trace events (default 100,000); later ones are counted, not kept. */
  maxEvents?: number;
  /** Execution tier (default 'compiled'). */
  tier?: Tier;
}

/** External events the Chooser may inject during a run (the explorer decides where they land). */
export interface InjectionBudget {
  /** How many NMIs may be injected. */
  nmis?: number;
  /** How many fixed-vector interrupts may be injected, and which vector. */
  irqs?: number;
  irqVector?: number;
  /** vCPUs that may receive them (default: all). */
  cpus?: number[];
  /**
   * How many times the host may deschedule a running vCPU (a Preempt decision; its Resume is a
   * decision too, free). For the strategies that do not own time: the timed strategy preempts
   * through its HostScheduler (src/host/scheduler.ts) instead.
   */
  preemptions?: number;
}

export interface RunOptions {
  chooser?: Chooser;
  /** Stop after this many instructions in total (default 10 million). */
  maxInstructions?: number;
  inject?: InjectionBudget;
  /** Checked after every action; stop when it returns true. */
  until?: (m: Machine) => boolean;
  /**
   * `until` can turn true only after a step the compiled tier never runs (a HLT, an interrupt
   * delivery, a kernel service, a probed instruction) or a non-step action: the compiled tier may
   * then run whole blocks between its checks (Guest.run's "every task done, every vCPU idle").
   */
  untilCoarse?: boolean;
  /** With `untilCoarse`: a machine step at which `until` must still be asked exactly (a trigger at a step). */
  untilAtStep?: number;
  /** Keep the decision log for replay (default true); long timed benchmark runs turn it off. */
  record?: boolean;
}

export type StopReason =
  /** Every vCPU is halted with nothing that could wake it, and no store is buffered. */
  | 'all-halted'
  | 'limit'
  | 'hazard'
  | 'until'
  /** The guest faulted or executed an unsupported instruction (see `error`). */
  | 'error'
  /** The chooser could not decide (a replayed schedule no longer fits; see `misfit`). */
  | 'misfit';

export interface RunResult {
  reason: StopReason;
  /** Actions taken (instruction steps, drains, injections). */
  steps: number;
  instructions: number;
  hazards: Hazard[];
  /** The machine step of each hazard (the violating step a report names). */
  hazardSteps: number[];
  error?: Error & { userFacing?: boolean };
  /** Why the chooser stopped the run (reason 'misfit'): its own record, e.g. a ReplayMisfit. */
  misfit?: ChooserStop;
}

function popCount(bits: number): number {
  let n = 0;
  for (; bits !== 0; bits &= bits - 1) n++;
  return n;
}

/** `decide`'s answer when no action is enabled (NO_DECISION is -1). */
const NOTHING_ENABLED = -2;
/** No inline point's pick waits for the run loop. */
const NO_PENDING = -3;
/** A quick point's forced step that the chooser refused (Chooser.forced: a misfit). */
const FORCED_REFUSED = -4;

/** Thrown inside the run loop when `choose` returns NO_DECISION mid-instruction; the run catches it. */
class ChooserStopped extends Error {}

/** A run's budgets as the run loop spends them. */
interface RunBudget {
  nmis: number;
  irqs: number;
  preemptions: number;
  irqVector: number;
  cpus: number[] | undefined;
}

/** An instruction probe (Machine.probe): a hazard to report, or undefined. */
export type Probe = (c: Vcpu, insn: Insn) => Hazard | undefined;

/** One decision of a run: an action (>= 0), or a choice value v encoded as -(v + 1). */
export type Decision = number;

export class Machine implements ExecContext {
  memory: Memory;
  readonly vcpus: Vcpu[];
  readonly tso: boolean;
  readonly stopOnHazard: boolean;
  readonly tier: Tier;
  /** The compiled tier's block cache (tier 'compiled'). */
  private readonly jit: CompiledTier | undefined;
  readonly idt = new Map<number, number>();
  hooks: HostHooks = {};
  readonly events: MachineEvent[] = [];
  droppedEvents = 0;
  /**
   * Emit the tracing-only events too (service spans, IPIs, store-buffer depth; events.ts): on for
   * a run whose trace or report is written, off for benchmarks.
   */
  tracing = false;
  /** The last steps of a traced run (tracing only), for the instructions around a violation. */
  private ring: StepRing | undefined;
  /** Per vCPU, the store-buffer depth last emitted (tracing only). */
  private tracedDepth: Int32Array;
  readonly hazards: Hazard[] = [];
  /** The step at which each hazard was raised. */
  readonly hazardSteps: number[] = [];
  /**
   * Every decision the chooser made in the runs so far (points with one enabled action are not
   * decisions), run-length encoded as [code, count] pairs in the run loop's own encoding (the hot
   * path appends here); read it as a typed Schedule with src/sched/schedule.ts's recordedSchedule().
   */
  readonly decisions: number[] = [];
  step = 0;
  private readonly maxEvents: number;
  private readonly actions: Int32Array;
  private chooser: Chooser = new FirstEnabled();
  private stopRequested = false;
  /** Another vCPU's runnable state may have changed (an interrupt, NMI or kick arrived): end any burst. */
  private dirty = false;

  constructor(opts: MachineOptions) {
    const n = opts.vcpus;
    if (!Number.isInteger(n) || n < 1 || n > MAX_VCPUS) {
      throw new MachineConfigError(`a machine needs 1..${MAX_VCPUS} vCPUs, not ${n}`);
    }
    this.memory = new Memory();
    this.vcpus = Array.from({ length: n }, (_, i) => new Vcpu(i));
    this.tso = opts.tso ?? true;
    this.stopOnHazard = opts.stopOnHazard ?? true;
    this.maxEvents = opts.maxEvents ?? 100_000;
    this.actions = new Int32Array(n * ACTION_KINDS);
    this.descheduled = new Uint8Array(n);
    this.enabledKinds = new Uint8Array(n);
    this.tracedDepth = new Int32Array(n);
    this.tier = opts.tier ?? 'compiled';
    if (!TIERS.includes(this.tier)) throw new MachineConfigError(`unknown tier '${String(this.tier)}' (use ${TIERS.join(' or ')})`);
    this.jit = this.tier === 'compiled' ? new CompiledTier(this) : undefined;
  }

  vcpu(id: number): Vcpu {
    const c = this.vcpus[id];
    if (!c) throw new MachineConfigError(`no vCPU ${id} (the machine has ${this.vcpus.length})`);
    return c;
  }

  setIdt(vector: number, handler: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new MachineConfigError(`bad interrupt vector ${vector}`);
    this.idt.set(vector, handler);
  }

  // ---- ExecContext -------------------------------------------------------------------------

  emit(e: MachineEvent): void {
    if (this.events.length < this.maxEvents) this.events.push(e);
    else this.droppedEvents++;
  }

  /** Kernel services by address (src/machine/service.ts), and the address range they occupy. */
  readonly services = new Map<number, { name: string; factory: ServiceFactory }>();
  private serviceLo = Infinity;
  private serviceHi = -Infinity;

  /** Run `factory` whenever a vCPU reaches `address` (normally by CALL). */
  registerService(address: number, name: string, factory: ServiceFactory): void {
    if (this.services.has(address)) throw new MachineConfigError(`two services at 0x${address.toString(16)}`);
    this.services.set(address, { name, factory });
    this.serviceLo = Math.min(this.serviceLo, address);
    this.serviceHi = Math.max(this.serviceHi, address);
    this.jit?.flush();
  }

  private stepService(c: Vcpu, svc: { name: string; factory: ServiceFactory }): number {
    const rsp = c.getAddr(Reg.RSP);
    const frames = c.serviceFrames;
    let top = frames[frames.length - 1];
    if (top === undefined || top.rsp !== rsp || top.address !== c.rip) {
      top = { rsp, address: c.rip, name: svc.name, body: svc.factory(new ServiceContext(this, c, c.rip)) };
      frames.push(top);
      if (this.tracing) this.emit({ type: 'service-enter', step: this.step, cpu: c.id, name: svc.name, address: c.rip });
    }
    const r = top.body.next();
    if (!r.done) return r.value;
    frames.pop();
    if (this.tracing) this.emit({ type: 'service-exit', step: this.step, cpu: c.id, name: svc.name });
    if (typeof r.value === 'bigint') c.setReg64(Reg.RAX, r.value);
    else if (typeof r.value === 'number') c.setAddr(Reg.RAX, r.value);
    const slot = c.getAddr(Reg.RSP);
    const target = pop64(this, c);
    c.rip = target;
    return checkReturn(this, c, slot, target) ? -1 : CostClass.Branch;
  }

  /** The hazard that made the last fetch return null. */
  fetchHazard: Hazard | null = null;

  /** Probes by address (none: `undefined`, so a run without probes pays one field test per step). */
  private probes: Map<number, Probe> | undefined;
  /** Their address range, and a bit per address of it saying whether one is there (the hot test). */
  private probeLo = 0;
  private probeBits = new Uint8Array(0);
  private probeSpan = 0;

  /**
   * Call `probe` whenever a vCPU is about to execute the instruction at `address`, with the
   * instruction it fetched (the old or the new one at a legal INT3 first-byte fetch). A probe
   * changes nothing a vCPU can see (unlike a kprobe, it writes no INT3); it returns a hazard to
   * report one — an oracle of a layer above the machine. One probe per address.
   */
  probe(address: number, probe: Probe): void {
    this.probeMany([[address, probe]]);
  }

  /** Several probes at once (Machine.probe each), the address bitmap built once for all. */
  probeMany(entries: Iterable<readonly [number, Probe]>): void {
    this.probes ??= new Map();
    for (const [address, probe] of entries) {
      if (this.probes.has(address)) throw new MachineConfigError(`two probes at 0x${address.toString(16)}`);
      this.probes.set(address, probe);
    }
    let lo = Infinity, hi = -Infinity;
    for (const a of this.probes.keys()) { if (a < lo) lo = a; if (a > hi) hi = a; }
    if (hi - lo >= 1 << 24) throw new MachineConfigError('probes must lie within 16 MiB of each other');
    this.probeLo = lo;
    this.probeBits = new Uint8Array(((hi - lo) >>> 3) + 1);
    this.probeSpan = hi - lo + 1;
    for (const a of this.probes.keys()) this.probeBits[(a - lo) >>> 3]! |= 1 << ((a - lo) & 7);
    this.jit?.flush();
  }

  get vcpuCount(): number {
    return this.vcpus.length;
  }

  /** Instructions this machine ran in compiled blocks (tier 'compiled'), of `retired()`. */
  get compiledInstructions(): number {
    return this.jit?.total ?? 0;
  }

  /** Is there a probe or a kernel service at `addr` (the per-step loop must see a vCPU arrive)? */
  intercepts(addr: number): boolean {
    if (addr >= this.serviceLo && addr <= this.serviceHi && this.services.has(addr)) return true;
    const k = addr - this.probeLo;
    return this.probes !== undefined && k >= 0 && k < this.probeSpan && (this.probeBits[k >>> 3]! & (1 << (k & 7))) !== 0;
  }

  /**
   * Run vCPU `c` in compiled code for 1..max instructions, as `max` interpreter steps would, and
   * return how many ran; 0 when no compiled block may run at its RIP now (tier 'interp', an
   * interrupt to deliver, a probe, a CMC hazard to check, ...: step the interpreter instead).
   * `hook`, when given, is asked after every instruction (see src/machine/jit/compile.ts). Counts
   * retired instructions on the vCPU, not machine steps: the caller does that.
   */
  runCompiled(c: Vcpu, max: number, hook?: StepHook): number {
    if (this.jit === undefined || max < 1 || this.tracing || this.memory.footprint !== undefined) return 0;
    return this.jit.run(c, max, hook);
  }

  hazard(h: Hazard): boolean {
    this.hazards.push(h);
    this.hazardSteps.push(this.step);
    this.emit({ type: 'hazard', step: this.step, cpu: h.cpu, hazard: h });
    if (this.stopOnHazard) this.stopRequested = true;
    return this.stopOnHazard;
  }

  chooseOldNew(cpu: number, address: number): number {
    const v = this.choose('cmc-old-new', 2);
    this.emit({ type: 'cmc-choice', step: this.step, cpu, address, executed: v === 0 ? 'old' : 'new' });
    return v;
  }

  choose(kind: ChoiceKind, n: number): number {
    const v = this.chooser.choose(kind, n);
    if (v === NO_DECISION) throw new ChooserStopped();
    if (!Number.isInteger(v) || v < 0 || v >= n) throw new MachineConfigError(`chooser '${this.chooser.name}' returned ${v} for a choice among ${n}`);
    this.record(-(v + 1));
    return v;
  }

  sendIpi(from: number, icr: number, dest: number): void {
    const vector = icr & 0xff;
    const nmi = ((icr >>> 8) & 7) === 4;
    const shorthand = (icr >>> 18) & 3;
    const targets =
      shorthand === 0 ? [dest] : shorthand === 1 ? [from] : this.vcpus.map((c) => c.id).filter((id) => shorthand === 2 || id !== from);
    for (const t of targets) {
      const c = this.vcpus[t];
      if (!c) continue; // an IPI to a missing APIC ID is dropped, as on hardware
      this.memory.footprint?.interrupt(t, nmi ? Pseudo.Nmi : Pseudo.Irq);
      if (nmi) raiseNmi(c);
      else raiseIrq(c, vector);
      if (this.tracing) this.emit({ type: 'ipi', step: this.step, cpu: from, target: t, vector, nmi });
    }
    this.dirty = true;
  }

  // ---- interrupts from outside (host, devices, other vCPUs' IPIs) ---------------------------

  raiseIrq(cpu: number, vector: number): void {
    this.memory.footprint?.interrupt(cpu, Pseudo.Irq);
    raiseIrq(this.vcpu(cpu), vector);
    this.dirty = true;
  }

  raiseNmi(cpu: number): void {
    this.memory.footprint?.interrupt(cpu, Pseudo.Nmi);
    raiseNmi(this.vcpu(cpu));
    this.dirty = true;
  }

  /**
   * Wake a halted vCPU without an interrupt (the host's kick, KVM_HC_KICK_CPU). A vCPU that is not
   * halted yet remembers the kick and its next HLT falls through (KVM's pv_unhalted).
   */
  kick(cpu: number): void {
    const c = this.vcpu(cpu);
    this.memory.footprint?.interrupt(cpu, Pseudo.Kick);
    if (!c.halted) {
      c.pvUnhalted = true;
      return;
    }
    {
      c.halted = false;
      this.dirty = true;
      this.emit({ type: 'wake', step: this.step, cpu, reason: 'kick' });
    }
  }

  // ---- execution -----------------------------------------------------------------------------

  /** The decoded instruction at `addr` (no hazard check), for tools and tests. */
  instructionAt(addr: number): Insn | undefined {
    return decodeAt(this.memory, addr);
  }

  /** One step of vCPU `c`: deliver a pending interrupt, or fetch and execute one instruction. */
  stepCpu(c: Vcpu): number {
    // Footprints (src/machine/footprint.ts) cost this one field test per step when off.
    const fp = this.memory.footprint;
    if (fp !== undefined) fp.step(c);
    if ((c.nmiPending || c.pendingIrqs.length > 0) && deliverPending(this, c)) return CostClass.Interrupt;
    if (c.halted) return CostClass.Halt;
    if (c.interruptShadow) c.interruptShadow = false;
    const rip = c.rip;
    if (rip >= this.serviceLo && rip <= this.serviceHi) {
      const svc = this.services.get(rip);
      if (svc !== undefined) {
        const cost = this.stepService(c, svc);
        c.retired++;
        return cost;
      }
    }
    let insn = fetch(this, c.id, c.serializedSeq, rip, c.storeBuffer);
    if (insn === null) {
      insn = decodeAt(this.memory, c.rip)!;
      if (fp !== undefined) fp.fetch(rip, insn.len);
      if (this.hazard(this.fetchHazard!)) return -1;
    } else if (fp !== undefined) fp.fetch(rip, insn.len);
    const pd = rip - this.probeLo;
    if (this.probes !== undefined && pd >= 0 && pd < this.probeSpan && ((this.probeBits[pd >>> 3]! >>> (pd & 7)) & 1) === 1) {
      fp?.pseudoWrite(Pseudo.Oracle);
      const h = this.probes!.get(rip)!(c, insn);
      if (h !== undefined && this.hazard(h)) return -1;
    }
    const fast = insn.fast;
    const cost = fast !== undefined ? fast.run(this, c, insn) : execute(this, c, insn);
    c.retired++;
    return cost;
  }

  /** Steps of the current burst not yet in `decisions` (flushed before any other record). */
  private burstAction = -1;
  private burstCount = 0;

  /** Whether the current run keeps its decision log. */
  private recording = true;

  /** Append `k` repeats of decision `d` to the run-length encoded log. */
  private append(d: Decision, k: number): void {
    if (!this.recording) return;
    const log = this.decisions;
    const n = log.length;
    if (n > 0 && log[n - 2] === d) log[n - 1]! += k;
    else log.push(d, k);
  }

  private flushBurst(): void {
    if (this.burstCount === 0) return;
    const k = this.burstCount;
    this.burstCount = 0;
    this.append(this.burstAction, k);
  }

  private record(d: Decision): void {
    this.flushBurst();
    this.append(d, 1);
  }

  /** vCPUs the host descheduled by a Preempt decision (1) and has not resumed yet. */
  private readonly descheduled: Uint8Array;

  /** The enabled action kinds of vCPU `i`, a bit per ActionKind. */
  private vcpuKinds(i: number, budget: RunBudget): number {
    const c = this.vcpus[i]!;
    let bits = 0;
    if (!c.preempted && (!c.halted || canWake(c))) bits |= 1 << ActionKind.Step;
    if (c.storeBuffer.length > 0) bits |= 1 << ActionKind.Drain;
    if ((budget.nmis > 0 || budget.irqs > 0) && (budget.cpus === undefined || budget.cpus.includes(i))) {
      if (budget.nmis > 0) bits |= 1 << ActionKind.Nmi;
      if (budget.irqs > 0) bits |= 1 << ActionKind.Irq;
    }
    // Only a running vCPU can be descheduled (a halted one has already exited to the host).
    if (budget.preemptions > 0 && !c.preempted && !c.halted) bits |= 1 << ActionKind.Preempt;
    else if (this.descheduled[i] === 1) bits |= 1 << ActionKind.Resume;
    return bits;
  }

  /** The enabled actions of vCPU `i`, written to `out` from `at`; returns the index after them. */
  private vcpuActions(i: number, budget: RunBudget, out: Int32Array, at: number): number {
    const bits = this.vcpuKinds(i, budget);
    this.enabledKinds[i] = bits;
    let n = at;
    for (let k = 0; bits >>> k !== 0; k++) if ((bits & (1 << k)) !== 0) out[n++] = i * ACTION_KINDS + k;
    return n;
  }

  /** Enabled actions from the last point, still valid but for vCPU `enabledStale`'s (issue 12). */
  private enabledCount = 0;
  /** Per vCPU, its kinds in that set (a bit per ActionKind). */
  private readonly enabledKinds: Uint8Array;
  /** -1: rebuild the whole set; else the one vCPU whose entries may have changed. */
  private enabledStale = -1;
  private readonly segment = new Int32Array(ACTION_KINDS);

  /**
   * The enabled actions, in vCPU order and by kind within a vCPU (action codes ascending). After a
   * step burst or a drain of one vCPU that changed nothing else, only that vCPU's entries are
   * recomputed and spliced in (found by binary search): the same set as a full rebuild, at a cost
   * that does not grow with the vCPU count but for one native move when its length changes.
   */
  private enabled(budget: RunBudget): number {
    const acts = this.actions;
    const stale = this.enabledStale;
    this.enabledStale = -1;
    if (stale < 0) {
      let n = 0;
      for (let i = 0; i < this.vcpus.length; i++) n = this.vcpuActions(i, budget, acts, n);
      this.enabledCount = n;
      return n;
    }
    const count = this.enabledCount;
    const seg = this.segment;
    const len = this.vcpuActions(stale, budget, seg, 0);
    let lo = 0, hi = count;
    const first = stale * 8;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (acts[mid]! < first) lo = mid + 1;
      else hi = mid;
    }
    let end = lo;
    while (end < count && acts[end]! < first + 8) end++;
    const old = end - lo;
    if (len !== old) acts.copyWithin(lo + len, end, count);
    for (let k = 0; k < len; k++) acts[lo + k] = seg[k]!;
    this.enabledCount = count + len - old;
    return this.enabledCount;
  }

  /**
   * The host deschedules `c` (a VM exit: its store buffer drains, steal time's `preempted` byte is
   * set through the host hook) or runs it again, as src/host/scheduler.ts does for the timed strategy.
   */
  private hostPreempt(c: Vcpu, preempted: boolean): void {
    if (preempted) drainAll(this.memory, c);
    c.preempted = preempted;
    this.descheduled[c.id] = preempted ? 1 : 0;
    this.hooks.preempt?.(c, preempted);
    this.emit({ type: 'host-preempt', step: this.step, cpu: c.id, preempted });
    this.dirty = true;
  }

  /** Instruction steps taken in the current run (the run's limit counts these). */
  private runInstructions = 0;

  /**
   * One instruction step of `c` inside a burst: all the run loop does per instruction (the trace
   * ring, the step, its cost told to the chooser, the stop tests), in one place so that every
   * kind of burst shares it. Returns why the run stops, or undefined to go on.
   */
  private burstStep(c: Vcpu, chooser: Chooser, until: RunOptions['until'], maxInstructions: number): StopReason | undefined {
    this.burstCount++;
    if (this.tracing) (this.ring ??= new StepRing()).push(this.step, c.id, StepKind.Instruction, c.rip);
    const cost = this.stepCpu(c);
    this.runInstructions++;
    this.step++;
    if (this.tracing) this.traceStoreBuffer(c);
    if (cost < 0 || this.stopRequested) return 'hazard';
    chooser.observe?.(c, ActionKind.Step, cost as CostClass);
    if (until !== undefined && until(this)) return 'until';
    if (this.runInstructions >= maxInstructions) return 'limit';
    return undefined;
  }

  /** Run until every vCPU halts, a hazard, a fault, the instruction limit or `until`. */
  run(opts: RunOptions = {}): RunResult {
    this.chooser = opts.chooser ?? new FirstEnabled();
    const maxInstructions = opts.maxInstructions ?? 10_000_000;
    const inj = opts.inject ?? {};
    const budget: RunBudget = { nmis: inj.nmis ?? 0, irqs: inj.irqs ?? 0, preemptions: inj.preemptions ?? 0, irqVector: inj.irqVector ?? 0x20, cpus: inj.cpus };
    const hazardsBefore = this.hazards.length;
    const retiredBefore = this.retired();
    const stepsBefore = this.step;
    this.stopRequested = false;
    this.recording = opts.record ?? true;
    const point = { actions: this.actions, count: 0, vcpus: this.vcpus, step: 0, changed: -1, budget };
    // What changed since the chooser's last point (SchedulingPoint.changed): -1 (anything) until
    // it has seen one; ASKED right after.
    const ASKED = -2;
    let changed = -1;
    const chooser = this.chooser;
    const until = opts.until;
    let reason: StopReason = 'limit';
    let error: RunResult['error'];
    this.runInstructions = 0;
    // Only the vCPU that acted can have changed its entries, unless something marked others
    // dirty, the budgets moved, or the strategy's host changes run states itself.
    const incremental = chooser.changesRunState !== true;
    this.enabledStale = -1;
    // [jit] The compiled tier runs within a burst when nothing needs a hook per instruction but the
    // chooser's: `hook` is asked after every compiled instruction and stops the block where the
    // per-step loop would end the burst (continueWith per step, or, for a burst decided up front
    // by Chooser.burst, the changes listed there).
    const bursts = chooser.burst !== undefined;
    const engine = this.jit !== undefined && (until === undefined || opts.untilCoarse === true) && !this.tracing && this.memory.footprint === undefined && (bursts || chooser.continueWith !== undefined) ? this.jit : undefined;
    let jitStop = false, jitAsk = false, untilHit = false;
    let burstBuffered = false, burstSpinning = false;
    const observes = chooser.observe !== undefined;
    // The enabled count at the current point (set by `decide`).
    let n = 0;
    /**
     * A scheduling point: the enabled set, then the chooser's pick, as an index into `actions`
     * (0 when one action is enabled: no decision), NO_DECISION (a misfit) or NOTHING_ENABLED.
     */
    const decide = (): number => {
      const stale = this.enabledStale;
      n = this.enabled(budget);
      changed = changed === ASKED || changed === stale ? stale : -1;
      if (n === 0) return NOTHING_ENABLED;
      if (n === 1) return 0;
      point.count = n;
      point.step = this.step;
      point.changed = changed;
      changed = ASKED;
      const idx = chooser.next(point as SchedulingPoint);
      if (idx === NO_DECISION) return NO_DECISION;
      if (!(idx >= 0 && idx < n)) throw new MachineConfigError(`chooser '${chooser.name}' picked action ${idx} of ${n}`);
      return idx;
    };
    // [jit] Inline points (continueWith strategies: timed, replay): where a burst ends inside a
    // compiled block, the block's hook takes the run loop's next scheduling point itself, the
    // same calls in the same order. When the pick is the block's own vCPU (its step: the block
    // goes on; its drain: applied here, as the run loop applies one, then another point), the
    // block does not exit; any other pick is left in `pending` for the run loop to take. Under
    // the timed strategy a store drains 20 cycles after issue (STORE_DRAIN_LATENCY), so without
    // this a memory loop left compiled code at every drain.
    const inlinePoints = !bursts && opts.untilAtStep === undefined;
    let pending = NO_PENDING;
    const stepAction = (c: Vcpu): number => action(c.id, ActionKind.Step);
    const pointOf = chooser.pointOf?.bind(chooser);
    /**
     * The point after `c`'s burst without listing it, when the strategy needs no list: the enabled
     * set is the last one but for `c`'s entries (left stale: `enabledStale` names `c`), so a
     * point with one action is `c`'s forced step, and else `pointOf` may pick. The kind taken
     * (Step or Drain), FORCED_REFUSED, or -1: list the point (decide).
     */
    const quickPoint = (c: Vcpu): number => {
      if (!incremental) return -1;
      const kinds = this.vcpuKinds(c.id, budget);
      // Has the strategy seen every point but for c's changes (SchedulingPoint.changed)?
      const fresh = changed === ASKED || changed === c.id;
      if (this.enabledCount - popCount(this.enabledKinds[c.id]!) + popCount(kinds) === 1) {
        changed = fresh ? c.id : -1;
        if (chooser.forced === undefined) {
          aloneCpu = c.id;
          aloneBuffered = c.storeBuffer.length > 0;
          return ActionKind.Step;
        }
        return chooser.forced(stepAction(c)) === false ? FORCED_REFUSED : ActionKind.Step;
      }
      if (!fresh) return -1;
      const kind = pointOf === undefined ? -1 : pointOf(c, kinds);
      if (kind >= 0) changed = ASKED;
      return kind;
    };
    // c's drain, taken at an inline point as the run loop takes one; false: `until` stops the run.
    const inlineDrain = (c: Vcpu): boolean => {
      this.record(action(c.id, ActionKind.Drain));
      drainOne(this.memory, c);
      this.step++;
      chooser.observe?.(c, ActionKind.Drain, CostClass.Drain);
      if (until !== undefined && until(this)) { untilHit = true; return false; }
      return true;
    };
    /**
     * The last quick point found c alone (its forced step, no `forced` to tell) with this store
     * buffer state: until c's enabled kinds change (only its Drain can, within a burst that
     * nothing made dirty), every point is that forced step again. -1: not known.
     */
    let aloneCpu = -1, aloneBuffered = false;
    // The burst's own step stays `burstAction` through inline points (a drain's record flushes
    // the steps before it), so an inline pick of c's step needs no flush.
    const inlinePoint = (c: Vcpu): boolean => {
      if (aloneCpu === c.id && (c.storeBuffer.length > 0) === aloneBuffered) return true;
      aloneCpu = -1;
      for (;;) {
        if (incremental) this.enabledStale = c.id;
        const quick = quickPoint(c);
        if (quick === FORCED_REFUSED) { pending = NO_DECISION; return false; }
        if (quick === ActionKind.Step) return true;
        if (quick === ActionKind.Drain) {
          if (!inlineDrain(c)) return false;
          continue;
        }
        const idx = decide();
        if (idx < 0) { pending = idx; return false; }
        const a = this.actions[idx]!;
        if (n === 1 && chooser.forced?.(a) === false) { pending = NO_DECISION; return false; }
        if (a === stepAction(c)) return true;
        if (a !== action(c.id, ActionKind.Drain)) { pending = idx; return false; }
        if (!inlineDrain(c)) return false;
      }
    };
    const hook: StepHook = (c, cost, last) => {
      // The step's count here, instruction by instruction: an inline point must see it.
      this.burstCount++;
      this.runInstructions++;
      this.step++;
      if (observes) chooser.observe!(c, ActionKind.Step, cost);
      // After the budget's last step the run loop asks (after `until` and the limit), as it does per step.
      if (last) { jitAsk = true; return false; }
      if (this.dirty || c.halted || c.preempted) { jitStop = true; return false; }
      if (bursts) {
        if ((c.storeBuffer.length > 0) !== burstBuffered || c.spinning !== burstSpinning) { jitStop = true; return false; }
        return true;
      }
      if (chooser.continueWith!(c)) return true;
      if (inlinePoints && inlinePoint(c)) return true;
      jitStop = true;
      return false;
    };
    try {
      outer: for (;;) {
        if (this.runInstructions >= maxInstructions) { reason = 'limit'; break; }
        let idx: number;
        if (pending !== NO_PENDING) { idx = pending; pending = NO_PENDING; }
        else idx = decide();
        if (idx === NOTHING_ENABLED) {
          // Nothing can happen now; a time-based strategy may advance time (host rotation, timers).
          if (chooser.idle !== undefined && chooser.idle(this.vcpus)) continue;
          reason = 'all-halted';
          break;
        }
        if (idx === NO_DECISION) { reason = 'misfit'; break; }
        const a = this.actions[idx]!;
        if (n === 1 && chooser.forced?.(a) === false) { reason = 'misfit'; break; }
        const c = this.vcpus[actionCpu(a)]!;
        const kind = actionKind(a);
        if (kind === ActionKind.Step) {
          // A burst: the same vCPU steps without a scheduling point while the chooser's decision
          // lasts (its burst length, or continueWith asked per step) and nothing it weighs changed
          // (Chooser.burst lists what ends a burst early).
          this.dirty = false;
          this.flushBurst();
          this.burstAction = a;
          aloneCpu = -1;
          const left = !bursts ? 1 : n === 1 ? Infinity : chooser.burst!(c);
          if (!(left >= 1)) throw new MachineConfigError(`chooser '${chooser.name}' asked for a burst of ${left} steps`);
          const buffered = c.storeBuffer.length > 0;
          const spinning = c.spinning;
          for (let k = 0; ;) {
            if (engine !== undefined) {
              // [jit] A compiled block: its instructions, each counted and observed as a step.
              jitStop = false;
              jitAsk = false;
              burstBuffered = buffered;
              burstSpinning = spinning;
              const watch = opts.untilAtStep;
              let room = maxInstructions - this.runInstructions;
              if (watch !== undefined && this.step < watch) room = Math.min(room, watch - this.step);
              if (bursts) room = Math.min(room, left - k);
              // The hook counts each instruction as a step (even in a block that faults).
              const got = engine.run(c, room, hook);
              if (got > 0) {
                k += got;
                if (untilHit || (until !== undefined && until(this))) { reason = 'until'; break outer; }
                if (this.runInstructions >= maxInstructions) { reason = 'limit'; break outer; }
                if (jitStop) break;
                if (bursts) {
                  if (k >= left || this.dirty || c.halted || c.preempted || (c.storeBuffer.length > 0) !== buffered || c.spinning !== spinning) break;
                } else if (jitAsk && (this.dirty || c.halted || c.preempted || !chooser.continueWith!(c))) break;
                continue;
              }
            }
            aloneCpu = -1;
            const stop = this.burstStep(c, chooser, until, maxInstructions);
            k++;
            if (stop !== undefined) { reason = stop; break outer; }
            if (this.dirty || c.halted || c.preempted) break;
            if (bursts) {
              if (k >= left || (c.storeBuffer.length > 0) !== buffered || c.spinning !== spinning) break;
            } else if (chooser.continueWith === undefined || !chooser.continueWith(c)) break;
          }
          // (An inline point's pick: it took the enabled set after the burst already.) A quick
          // point leaves `enabledStale` naming c: a change elsewhere must still rebuild all.
          if (pending === NO_PENDING) this.enabledStale = incremental && !this.dirty ? c.id : -1;
          continue;
        }
        this.record(a);
        if (this.tracing) (this.ring ??= new StepRing()).push(this.step, c.id, RING_KIND[kind]!, c.rip);
        if (kind === ActionKind.Drain) {
          this.dirty = false;
          drainOne(this.memory, c);
          if (this.tracing) this.traceStoreBuffer(c);
          if (incremental && !this.dirty) this.enabledStale = c.id;
        }
        else if (kind === ActionKind.Nmi) { budget.nmis--; raiseNmi(c); this.memory.footprint?.injected(c.id, Pseudo.NmiBudget); }
        else if (kind === ActionKind.Irq) { budget.irqs--; raiseIrq(c, budget.irqVector); this.memory.footprint?.injected(c.id, Pseudo.IrqBudget); }
        else {
          // Host preemption: changes whether the vCPU can step (its kick/run state) and the host's
          // state (the shared preemption budget, steal time), so it conflicts with both.
          if (kind === ActionKind.Preempt) budget.preemptions--;
          this.hostPreempt(c, kind === ActionKind.Preempt);
          this.memory.footprint?.interrupt(c.id, Pseudo.Kick);
          this.memory.footprint?.pseudoWrite(Pseudo.Host);
        }
        this.step++;
        chooser.observe?.(c, kind, kind === ActionKind.Drain ? CostClass.Drain : CostClass.Inject);
        if (until !== undefined && until(this)) { reason = 'until'; break; }
      }
    } catch (e) {
      this.flushBurst();
      if (e instanceof ChooserStopped) reason = 'misfit';
      else if (e instanceof Error && (e as { userFacing?: boolean }).userFacing === true) {
        reason = 'error';
        error = e;
      } else throw e;
    }
    this.flushBurst();
    return {
      reason,
      steps: this.step - stepsBefore,
      instructions: this.retired() - retiredBefore,
      hazards: this.hazards.slice(hazardsBefore),
      hazardSteps: this.hazardSteps.slice(hazardsBefore),
      ...(error ? { error } : {}),
      ...(reason === 'misfit' && chooser.stopped ? { misfit: chooser.stopped } : {}),
    };
  }

  /**
   * Record what each action touches into `recorder` (undefined: stop). The recorder belongs to this
   * machine's memory; a fork starts without one.
   */
  recordFootprints(recorder: FootprintRecorder | undefined): void {
    this.memory.footprint = recorder;
  }

  /** The last steps of a traced run, oldest first (none when the run was not traced). */
  recentSteps(): RecentStep[] {
    return this.ring?.entries() ?? [];
  }

  /** Tracing: emit `c`'s store-buffer depth when it changed. */
  private traceStoreBuffer(c: Vcpu): void {
    const depth = c.storeBuffer.length;
    if (this.tracedDepth[c.id] === depth) return;
    this.tracedDepth[c.id] = depth;
    this.emit({ type: 'store-buffer', step: this.step, cpu: c.id, depth });
  }

  retired(): number {
    let n = 0;
    for (const c of this.vcpus) n += c.retired;
    return n;
  }

  /**
   * A copy-on-write fork: same memory contents, vCPU states, IDT and hooks; empty trace and
   * decision log. Cost: O(pages + vCPUs), no page data copied. Services, probes and hooks are
   * shared closures; `bare` leaves them out, for a caller that re-registers each over its own
   * copies of the state they close over (Guest.fork).
   */
  fork(opts: { bare?: boolean } = {}): Machine {
    const m = new Machine({ vcpus: this.vcpus.length, tso: this.tso, stopOnHazard: this.stopOnHazard, maxEvents: this.maxEvents, tier: this.tier });
    m.tracing = this.tracing;
    const bare = opts.bare ?? false;
    if (!bare) for (const [addr, svc] of this.services) m.registerService(addr, svc.name, svc.factory);
    m.memory = this.memory.fork();
    for (let i = 0; i < this.vcpus.length; i++) m.vcpus[i]!.copyFrom(this.vcpus[i]!);
    m.descheduled.set(this.descheduled);
    for (const [k, v] of this.idt) m.idt.set(k, v);
    if (!bare) {
      m.hooks = this.hooks;
      if (this.probes) {
        // The same addresses: the bitmap (replaced, never changed, by probeMany) is shared.
        m.probes = new Map(this.probes);
        m.probeLo = this.probeLo;
        m.probeBits = this.probeBits;
        m.probeSpan = this.probeSpan;
      }
    }
    return m;
  }

  /** Addresses with a probe (Machine.probe), for a fork that must re-register every one. */
  probeAddresses(): number[] {
    return this.probes === undefined ? [] : [...this.probes.keys()];
  }
}
