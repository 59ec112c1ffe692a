/**
 * Kernel services written in TypeScript that run on a vCPU as coroutines (DESIGN.md §4): the
 * parts of the guest kernel that no patch site calls or returns into (qspinlock slowpath
 * internals, stop_machine bookkeeping). A service lives at an address; a vCPU that reaches that
 * address (by CALL) runs the service one step per scheduling step. Every step performs exactly one
 * access to shared state through the same x86-TSO memory as guest code, so the explorer can
 * interleave services like instructions. A service may call out to real x86 code (a patch site)
 * and resumes when that code returns; interrupts and NMIs land between steps and nest.
 */
import { Reg, Flag } from '../x86/registers.ts';
import { load, store, commit, drainAll, serialize } from './access.ts';
import { push64, pop64, recordReturn, iret, checkReturn } from './interrupts.ts';
import { CostClass } from './chooser.ts';
import type { ExecContext } from './context.ts';
import type { Vcpu } from './vcpu.ts';
import type { Hazard } from './events.ts';

/** A service body: yields a CostClass per step; may return a value for RAX. */
export type ServiceBody = Generator<number, number | bigint | void, void>;
export type ServiceFactory = (ctx: ServiceContext) => ServiceBody;

/** A running service on a vCPU's stack. */
export interface ServiceFrame {
  /** RSP when the service was entered (just after the CALL pushed its return address). */
  rsp: number;
  address: number;
  body: ServiceBody;
  name: string;
}

const ARG_REGS = [Reg.RDI, Reg.RSI, Reg.RDX, Reg.RCX, Reg.R8, Reg.R9];

/** What a service may do; every generator method is one scheduling step. */
export class ServiceContext {
  constructor(
    readonly exec: ExecContext,
    readonly cpu: Vcpu,
    /** The service's own address (where call-outs return to). */
    readonly address: number,
  ) {}

  /** Argument `i` (System V order: rdi, rsi, rdx, rcx, r8, r9) as a canonical number. */
  arg(i: number): number {
    return this.cpu.getAddr(ARG_REGS[i]!);
  }

  /** Argument `i` as a full 64-bit value. */
  arg64(i: number): bigint {
    return this.cpu.getReg64(ARG_REGS[i]!);
  }

  private value(size: number): number {
    const t = this.cpu.opB;
    return size === 8 ? (t.hi | 0) * 4294967296 + t.lo : t.lo;
  }

  /** READ_ONCE: a load (sees this vCPU's buffered stores first). */
  *load(addr: number, size: 1 | 2 | 4 | 8): Generator<number, number, void> {
    load(this.exec.memory, this.cpu, addr, size, this.cpu.opB);
    const v = this.value(size);
    yield CostClass.Load;
    return v;
  }

  /** WRITE_ONCE / smp_store_release (a plain store under TSO). */
  *store(addr: number, size: 1 | 2 | 4 | 8, v: number): Generator<number, void, void> {
    store(this.exec.memory, this.cpu, this.exec.tso, addr, size, v >>> 0, size === 8 ? Math.floor(v / 4294967296) >>> 0 : 0);
    yield CostClass.Store;
  }

  /** A locked read-modify-write: drain, read, compute, commit; returns the old value. */
  private *rmw(addr: number, size: 1 | 2 | 4 | 8, f: (old: number) => number | undefined): Generator<number, number, void> {
    const m = this.exec.memory, c = this.cpu;
    drainAll(m, c);
    load(m, c, addr, size, c.opB);
    const old = this.value(size);
    const nv = f(old);
    if (nv !== undefined) commit(m, c.id, c.rip, addr, size, nv >>> 0, size === 8 ? Math.floor(nv / 4294967296) >>> 0 : 0);
    yield CostClass.Locked;
    return old;
  }

  /** cmpxchg: returns the old value (== expected on success). */
  cmpxchg(addr: number, size: 1 | 2 | 4 | 8, expected: number, desired: number): Generator<number, number, void> {
    const mask = size === 8 ? -1 : size === 4 ? 0xffffffff : (1 << (size * 8)) - 1;
    return this.rmw(addr, size, (old) => (old === (size === 8 ? expected : expected & mask) ? desired : undefined));
  }

  xchg(addr: number, size: 1 | 2 | 4 | 8, v: number): Generator<number, number, void> {
    return this.rmw(addr, size, () => v);
  }

  fetchAdd(addr: number, size: 4 | 8, v: number): Generator<number, number, void> {
    return this.rmw(addr, size, (old) => (size === 4 ? (old + v) >>> 0 : old + v));
  }

  fetchOr(addr: number, size: 1 | 2 | 4, v: number): Generator<number, number, void> {
    return this.rmw(addr, size, (old) => (old | v) >>> 0);
  }

  fetchAnd(addr: number, size: 1 | 2 | 4, v: number): Generator<number, number, void> {
    return this.rmw(addr, size, (old) => (old & v) >>> 0);
  }

  /** cpu_relax(). */
  *pause(): Generator<number, void, void> {
    this.cpu.lastPause = this.cpu.retired;
    yield CostClass.Pause;
  }

  /** A step with no shared access (local work that still costs time). */
  *work(cost: CostClass = CostClass.Plain): Generator<number, void, void> {
    yield cost;
  }

  /**
   * udelay(): busy-wait `cycles` on this vCPU in one step (no shared access). The vCPU's clock
   * moves forward directly, so timed runs need not interpret every iteration of a delay loop.
   */
  *delay(cycles: number): Generator<number, void, void> {
    this.cpu.time += cycles;
    yield CostClass.Plain;
  }

  /** native_safe_halt(): `sti; hlt` — halt with interrupts enabled, resumed by an interrupt or a kick. */
  *safeHalt(): Generator<number, void, void> {
    const c = this.cpu;
    c.flags |= Flag.IF;
    if (c.pvUnhalted) {
      c.pvUnhalted = false;
      yield CostClass.Halt;
      return;
    }
    c.halted = true;
    this.exec.emit({ type: 'halt', step: this.exec.step, cpu: c.id, rip: this.address });
    yield CostClass.Halt;
  }

  /** local_irq_save/restore around a service section. */
  irqsDisabled(): boolean {
    return (this.cpu.flags & Flag.IF) === 0;
  }

  /**
   * A serializing instruction (SERIALIZE, CPUID, IRET-to-self: Linux's sync_core()): drains the
   * store buffer and synchronizes this vCPU with every text write so far (SDM 8.1.3).
   */
  *serialize(): Generator<number, void, void> {
    serialize(this.exec.memory, this.cpu);
    yield CostClass.Serializing;
  }

  /**
   * Leave an interrupt or exception handler service by IRETQ (the frame at RSP), instead of the
   * RET every other service ends with; this generator never resumes. `emulate` finishes an
   * instruction the INT3 handler emulates after the frame is popped, on the interrupted stack:
   * `push` a return address (int3_emulate_call) or `pop` one into RIP (int3_emulate_ret). Linux
   * shifts the frame to make room for the push; popping it first is the same state in one step.
   * `keepNmiBlocked` leaves NMIs as blocked as they were in the handler (see below).
   */
  *iret(emulate: { push?: number; pop?: boolean; keepNmiBlocked?: boolean } = {}): Generator<number, void, void> {
    const c = this.cpu;
    const frames = c.serviceFrames;
    if (frames[frames.length - 1]?.address === this.address) frames.pop();
    const nmiBlocked = c.nmiBlocked;
    let hazard = iret(this.exec, c);
    // keepNmiBlocked: the IRET of a #BP taken inside an NMI handler re-opens NMIs in hardware;
    // Linux's nested-NMI entry code defers a second NMI until the first one returns.
    if (emulate.keepNmiBlocked === true) c.nmiBlocked = nmiBlocked;
    if (!hazard && emulate.push !== undefined) {
      push64(this.exec, c, emulate.push);
      recordReturn(this.exec, c, c.getAddr(Reg.RSP), emulate.push);
    } else if (!hazard && emulate.pop === true) {
      const slot = c.getAddr(Reg.RSP);
      c.rip = pop64(this.exec, c);
      hazard = checkReturn(this.exec, c, slot, c.rip);
    }
    yield hazard ? -1 : CostClass.Serializing;
  }

  /**
   * Report a hazard an oracle above the machine found (undefined: none). The run stops here when
   * the machine stops on hazards.
   */
  *report(h: Hazard | undefined): Generator<number, void, void> {
    if (h !== undefined && this.exec.hazard(h)) yield -1;
  }

  /**
   * Call real x86 code at `target` with arguments in rdi, rsi, ...; resumes when it returns and
   * yields its RAX. The callee may be a patch site: this is how a service reaches a pv-op.
   */
  *call(target: number, ...args: number[]): Generator<number, number, void> {
    const c = this.cpu;
    args.forEach((a, i) => c.setAddr(ARG_REGS[i]!, a));
    push64(this.exec, c, this.address);
    recordReturn(this.exec, c, c.getAddr(Reg.RSP), this.address);
    c.rip = target;
    yield CostClass.Branch;
    return c.getAddr(Reg.RAX);
  }
}
