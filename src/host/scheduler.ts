/**
 * The host's CPU scheduler: N vCPUs time-sliced over P physical CPUs (seed 000: KVM_HINTS_REALTIME
 * goes stale when the host starts over-committing). A running vCPU keeps its pCPU for a slice; when
 * the slice ends and another vCPU is waiting, the host deschedules it (its steal-time `preempted`
 * byte is set and it does not advance) and runs the next. A vCPU that halts blocks and gives its
 * pCPU away (KVM's halt exit); an interrupt or a kick makes it runnable again.
 * The host may add or take away physical CPUs while the guest runs (setPcpus): that is how it
 * moves between under- and over-commit. Driven by the timed strategy, which owns time
 * (src/sched/timed.ts).
 */
import type { Vcpu } from '../machine/vcpu.ts';
import { canWake } from '../machine/interrupts.ts';
import { drainAll } from '../machine/access.ts';
import type { Memory } from '../machine/memory.ts';
import { MachineConfigError } from '../machine/errors.ts';
import { cfsSliceCycles } from './costs.ts';

export interface HostSchedulerOptions {
  pcpus: number;
  /** Time slice in cycles. */
  sliceCycles: number;
  /** Cost of a host context switch between vCPUs, in cycles. */
  switchCycles: number;
  /**
   * Pause-loop exiting (Intel PLE, AMD pause filter): a vCPU that spins in a PAUSE loop for
   * `window` cycles (PAUSEs at most `gap` cycles apart) exits, and KVM's kvm_vcpu_on_spin() yields
   * its pCPU to a descheduled vCPU of the guest (a directed yield, most often to the preempted
   * lock holder). Undefined: no PLE.
   */
  ple?: { window: number; gap: number };
  /** Latency from a wake-up (kick, interrupt) to the vCPU running, when a pCPU is free. */
  wakeCycles: number;
}

type State = 'running' | 'queued' | 'blocked';

export interface SchedulerStats {
  preemptions: number;
  /** PAUSE-loop exits that yielded the pCPU to a descheduled vCPU. */
  pleYields: number;
  blocks: number;
  wakeups: number;
  /** Cycles each vCPU spent runnable but descheduled (steal time). */
  steal: number[];
}

export class HostScheduler {
  private readonly state: State[];
  private readonly pcpuOf: number[];
  private readonly running: (number | null)[];
  private readonly sliceEnd: number[];
  /** When each pCPU's current vCPU was picked: its slice is measured from there. */
  private readonly sliceStart: number[];
  private readonly queue: number[] = [];
  private readonly queuedAt: number[];
  readonly stats: SchedulerStats;
  /** The current configuration (a copy: setPcpus changes pcpus and sliceCycles). */
  readonly opts: HostSchedulerOptions;

  constructor(
    opts: HostSchedulerOptions,
    private readonly vcpus: readonly Vcpu[],
    private readonly memory: Memory,
    /** Called when a vCPU is descheduled (true) or scheduled (false): steal time's preempted byte. */
    private onPreempt: (cpu: number, preempted: boolean) => void,
  ) {
    if (!Number.isInteger(opts.pcpus) || opts.pcpus < 1) throw new MachineConfigError(`the host needs at least one physical CPU, not ${opts.pcpus}`);
    if (!(opts.sliceCycles > 0)) throw new MachineConfigError('the host time slice must be positive');
    this.opts = { ...opts };
    const n = vcpus.length;
    this.state = new Array<State>(n).fill('queued');
    this.pcpuOf = new Array<number>(n).fill(-1);
    this.running = new Array<number | null>(opts.pcpus).fill(null);
    this.sliceEnd = new Array<number>(opts.pcpus).fill(0);
    this.sliceStart = new Array<number>(opts.pcpus).fill(0);
    this.queuedAt = new Array<number>(n).fill(0);
    this.spinFrom = new Array<number>(n).fill(-1);
    this.lastPauseEnd = new Array<number>(n).fill(-Infinity);
    this.stats = { preemptions: 0, pleYields: 0, blocks: 0, wakeups: 0, steal: new Array<number>(n).fill(0) };
    for (const c of vcpus) {
      c.preempted = true;
      this.queue.push(c.id);
    }
    this.fill(0);
  }

  /**
   * The same host scheduler for a fork of the guest (its vCPUs and memory): every queue, slice and
   * counter copied, nothing re-initialised (the forked vCPUs already carry their `preempted` state).
   */
  fork(vcpus: readonly Vcpu[], memory: Memory, onPreempt: (cpu: number, preempted: boolean) => void): HostScheduler {
    const saved = vcpus.map((c) => [c.preempted, c.time] as const);
    // The constructor seats vCPUs as at boot; silence it, then overwrite what it set with our state.
    const h = new HostScheduler(this.opts, vcpus, memory, () => {});
    h.onPreempt = onPreempt;
    vcpus.forEach((c, i) => { c.preempted = saved[i]![0]; c.time = saved[i]![1]; });
    const copy = <T>(to: T[], from: readonly T[]) => { to.length = 0; to.push(...from); };
    copy(h.state, this.state);
    copy(h.pcpuOf, this.pcpuOf);
    copy(h.running, this.running);
    copy(h.sliceEnd, this.sliceEnd);
    copy(h.sliceStart, this.sliceStart);
    copy(h.queue, this.queue);
    copy(h.queuedAt, this.queuedAt);
    copy(h.spinFrom, this.spinFrom);
    copy(h.lastPauseEnd, this.lastPauseEnd);
    Object.assign(h.stats, { ...this.stats, steal: [...this.stats.steal] });
    Object.assign(h.opts, this.opts);
    return h;
  }

  get overcommitRatio(): number {
    return this.vcpus.length / this.opts.pcpus;
  }

  /** Put queued vCPUs on free pCPUs at time `now`. */
  private fill(now: number): void {
    for (let p = 0; p < this.running.length && this.queue.length > 0; p++) {
      if (this.running[p] !== null) continue;
      this.run(this.queue.shift()!, p, now);
    }
  }

  private run(id: number, p: number, now: number): void {
    const c = this.vcpus[id]!;
    this.running[p] = id;
    this.pcpuOf[id] = p;
    this.state[id] = 'running';
    this.stats.steal[id]! += Math.max(0, now - this.queuedAt[id]!);
    c.time = Math.max(c.time, now);
    this.sliceStart[p] = c.time;
    this.sliceEnd[p] = c.time + this.opts.sliceCycles;
    c.preempted = false;
    this.onPreempt(id, false);
  }

  private vacate(id: number): number {
    const p = this.pcpuOf[id]!;
    this.running[p] = null;
    this.pcpuOf[id] = -1;
    return p;
  }

  /**
   * Change the number of physical CPUs at time `now` (the host starts or stops over-committing).
   * The vCPUs on removed pCPUs are descheduled at `now` (a VM exit: steal time's preempted byte
   * set, store buffer drained) and queue for the remaining ones; added pCPUs take queued vCPUs
   * after a context switch. The slice becomes `sliceCycles` (default: CFS's for the new count,
   * cfsSliceCycles) and applies to the running vCPUs too, measured from when each was picked, as
   * CFS's check_preempt_tick compares the runtime so far with the current sched_slice.
   */
  setPcpus(pcpus: number, now: number, sliceCycles?: number): void {
    if (!Number.isInteger(pcpus) || pcpus < 1) throw new MachineConfigError(`the host needs at least one physical CPU, not ${pcpus}`);
    const slice = sliceCycles ?? cfsSliceCycles(pcpus, Math.ceil(this.vcpus.length / pcpus));
    if (!(slice > 0)) throw new MachineConfigError('the host time slice must be positive');
    for (let p = this.running.length - 1; p >= pcpus; p--) {
      const id = this.running[p];
      if (id !== null && id !== undefined) this.deschedule(id, now);
    }
    const old = this.running.length;
    this.running.length = this.sliceEnd.length = this.sliceStart.length = pcpus;
    for (let p = old; p < pcpus; p++) { this.running[p] = null; this.sliceEnd[p] = 0; this.sliceStart[p] = 0; }
    this.opts.pcpus = pcpus;
    this.opts.sliceCycles = slice;
    for (let p = 0; p < pcpus; p++) if (this.running[p] !== null) this.sliceEnd[p] = this.sliceStart[p]! + slice;
    this.fill(now + this.opts.switchCycles);
  }

  /** Take a running vCPU off its pCPU at `at` and queue it (a VM exit drains the store buffer). */
  private deschedule(id: number, at: number): void {
    const c = this.vcpus[id]!;
    this.stats.preemptions++;
    drainAll(this.memory, c);
    this.vacate(id);
    this.state[id] = 'queued';
    this.queuedAt[id] = at;
    c.preempted = true;
    this.onPreempt(id, true);
    this.queue.push(id);
  }

  /** Bring the host up to date with the vCPUs at time `now`: halts, wake-ups, expired slices. */
  sync(now: number): void {
    for (const c of this.vcpus) {
      const id = c.id;
      const st = this.state[id]!;
      const blocked = c.halted && !canWake(c);
      if (st === 'running' && blocked) {
        // HLT exit: the vCPU blocks and its pCPU runs someone else.
        this.stats.blocks++;
        this.vacate(id);
        this.state[id] = 'blocked';
        c.preempted = true;
      } else if (st === 'blocked' && !blocked) {
        this.stats.wakeups++;
        this.state[id] = 'queued';
        this.queuedAt[id] = now;
        c.time = Math.max(c.time, now + this.opts.wakeCycles);
        this.queue.push(id);
      }
    }
    this.fill(now + this.opts.wakeCycles);
    for (let p = 0; p < this.running.length; p++) {
      const id = this.running[p];
      if (id === null || id === undefined || this.queue.length === 0) continue;
      const c = this.vcpus[id]!;
      if (c.time < this.sliceEnd[p]!) continue;
      // The slice is over and someone is waiting: deschedule.
      this.deschedule(id, this.sliceEnd[p]!);
      this.run(this.queue.shift()!, p, this.sliceEnd[p]! + this.opts.switchCycles);
    }
  }

  /** Per vCPU: start of its current PAUSE loop (-1: none), and the end of its last PAUSE. */
  private readonly spinFrom: number[];
  private readonly lastPauseEnd: number[];

  /**
   * vCPU `cpu` executed a PAUSE over [start, end). With PLE on, a loop of PAUSEs lasting the
   * window exits to the host, which yields this pCPU to the longest-waiting descheduled vCPU.
   * Returns true when it did (the vCPU is descheduled).
   */
  pause(cpu: number, start: number, end: number): boolean {
    const ple = this.opts.ple;
    if (ple === undefined) return false;
    if (this.spinFrom[cpu]! < 0 || start - this.lastPauseEnd[cpu]! > ple.gap) this.spinFrom[cpu] = start;
    this.lastPauseEnd[cpu] = end;
    if (end - this.spinFrom[cpu]! < ple.window) return false;
    this.spinFrom[cpu] = -1;
    const p = this.pcpuOf[cpu]!;
    if (p < 0 || this.queue.length === 0) return false;
    this.stats.pleYields++;
    this.deschedule(cpu, end);
    this.run(this.queue.shift()!, p, end + this.opts.switchCycles);
    return true;
  }

  /** Has vCPU `cpu` used up its slice while others wait? (cheap check before a full sync) */
  sliceOver(cpu: number, time: number): boolean {
    const p = this.pcpuOf[cpu]!;
    return p >= 0 && this.queue.length > 0 && time >= this.sliceEnd[p]!;
  }

  /** The earliest time at which the host will act on its own (a slice ending with a queue). */
  nextEvent(): number {
    if (this.queue.length === 0) return Infinity;
    let t = Infinity;
    for (let p = 0; p < this.running.length; p++) if (this.running[p] !== null) t = Math.min(t, this.sliceEnd[p]!);
    return t;
  }

  /** Is every vCPU blocked (nothing runnable and nothing queued)? */
  allBlocked(): boolean {
    return this.state.every((s) => s === 'blocked');
  }

  isRunning(cpu: number): boolean {
    return this.state[cpu] === 'running';
  }
}
