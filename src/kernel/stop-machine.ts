/**
 * v1 runtime paravirt patching (RFC PATCH 15–19, seed 002): stop_machine() with the primary vCPU
 * poking every site through PATCH_SYNC_0 (INT3), PATCH_SYNC_1 (the tail), PATCH_SYNC_2 (the first
 * byte), PATCH_SYNC_DONE, and PATCH_DONE at the end. Each state is published with release
 * semantics and every secondary acknowledges it after a serializing instruction.
 *
 * The model, step by step:
 *  - stop_machine: the primary disables interrupts and sends a STOP IPI to every other vCPU. The
 *    IPI handler (multi_cpu_stop) stops the vCPU only at a preemptible point — Linux's stopper
 *    thread runs at a scheduling point, never inside a lock op or a critical section (preemption is
 *    off there); elsewhere the handler re-raises the IPI to itself and returns, which is the
 *    "check point". A stopped vCPU has interrupts off (the interrupt gate cleared IF), counts
 *    itself in, and spins acknowledging states until PATCH_DONE.
 *  - NMIs are not masked: an NMI handler that takes a lock may meet a site's 0xCC. The #BP handler
 *    then drives the state machine instead of emulating: on the primary it performs the remaining
 *    states of that site itself; on a secondary it serializes and acknowledges each new state on
 *    behalf of the stop loop it interrupted, until the site's first byte is final; then it returns
 *    to the site's address and executes the new instruction.
 *  - Nested NMIs (seeds 000, 002): an IRET re-opens NMIs (SDM 6.7.1), so an INT3 taken inside an
 *    NMI handler that returns with IRET lets a second NMI in, whose handler spins on the NMI lock
 *    the first one holds. The v1 handler returns from an INT3 taken in NMI context without IRET
 *    (the RFC's sync_one() serializes with CPUID there), keeping NMIs blocked (V1_HOOKS.bpEmulation;
 *    src/patching/broken.ts derives the IRET form by overriding that hook).
 *
 * Each state is a sequence number s in one word: 0 is the start (PATCH_SYNC_DONE of no site),
 * s = 4k + 1 + j is site k in state PATCH_SYNC_j (j = 3: PATCH_SYNC_DONE), and 4N + 1 is PATCH_DONE.
 * Acknowledgements are per-vCPU words holding the last s seen, so none can be lost or stale.
 */
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import type { Memory } from '../machine/memory.ts';
import { CostClass } from '../machine/chooser.ts';
import { iret } from '../machine/interrupts.ts';
import { Flag, Reg } from '../x86/registers.ts';
import { hexAddress } from '../x86/format.ts';
import { DATA_BASE, SERVICE_BASE, VECTOR } from './layout.ts';
import { Opcode } from './text-poke-loc.ts';
import { KernelBug } from './errors.ts';
import { lockWordDisagreement, type LockWordModel } from './lock-word.ts';
import { inNmi as inNmiOf } from './preempt-count.ts';
import { V1_HOOKS, type V1Hooks } from './stop-machine-hooks.ts';

export { V1_HOOKS, type V1Hooks, type V1Int3 } from './stop-machine-hooks.ts';

export const STOP_MACHINE_SERVICE = {
  primary: SERVICE_BASE + 0x480,
  multiCpuStop: SERVICE_BASE + 0x490,
  pokeInt3: SERVICE_BASE + 0x4a0,
} as const;

/** The stop_machine IPI vector (below text_poke's SYNC at 0xf0). */
export const STOP_VECTOR = 0xf2;

/**
 * struct text_poke_state per stop_machine generation, in guest data clear of text_poke_bp's and
 * v2's: a ring of GEN_SLOTS blocks. A block is reused GEN_SLOTS generations later, zeroed before
 * its generation is published; every vCPU left it long before (each later generation stopped it).
 */
const V1_DATA = DATA_BASE + 0xc000;
const GEN = V1_DATA;
const GEN_BLOCK = 0x400;
const GEN_SLOTS = 8;
function block(gen: number) {
  const b = V1_DATA + 0x100 + (gen % GEN_SLOTS) * GEN_BLOCK;
  return { state: b, stopped: b + 0x40, ack: (cpu: number) => b + 0x80 + 8 * cpu };
}

export const PatchState = { SYNC_0: 4, SYNC_1: 5, SYNC_2: 6, SYNC_DONE: 7, DONE: 8 } as const;

/** The state name of sequence number `s` for `nSites` sites (for messages and tests). */
export function stateName(s: number, nSites: number): string {
  if (s === 0) return 'PATCH_SYNC_DONE (start)';
  if (s === 4 * nSites + 1) return 'PATCH_DONE';
  const k = Math.floor((s - 1) / 4), j = (s - 1) % 4;
  return `site ${k} ${['PATCH_SYNC_0', 'PATCH_SYNC_1', 'PATCH_SYNC_2', 'PATCH_SYNC_DONE'][j]}`;
}

export interface V1Site {
  address: number;
  bytes: Uint8Array;
}

/** One stop_machine: the sites and the bytes they get. */
export interface V1Generation {
  sites: V1Site[];
  /**
   * Run by the primary before it stops the machine: what the new ops need before any of them can
   * run (src/patching/prepare.ts: the PV lock hash on native -> PV).
   */
  prepare?: (ctx: ServiceContext) => Generator<number, void, void>;
  /** Data stores to make at PATCH_DONE (the pv_ops table), address -> 8-byte value. */
  after?: () => void;
  /**
   * The lock implementation the sites switch to, when it is not the guest's qspinlock, and the
   * locks to look at: with every vCPU stopped, before the first site is touched, the primary
   * checks that both implementations mean the same by the lock word (src/kernel/lock-word.ts) and
   * refuses the switch when they do not.
   */
  lockWords?: { from: LockWordModel; to: LockWordModel; locks: readonly number[] };
}

export interface V1Options {
  primaryCpu: number;
  /** Is the vCPU at a preemptible point (no lock held, not inside a lock op)? */
  preemptible: (c: Vcpu) => boolean;
  /** The steps' hooks (default V1_HOOKS; the broken variants override one). */
  hooks?: V1Hooks;
  /** in_nmi() of a vCPU as it sees its own preempt_count (default: this guest's per-CPU layout; the real kernel's lies elsewhere). */
  inNmi?: (mem: Memory, c: Vcpu) => boolean;
}

export interface V1Stats {
  /** Generations (stop_machines) finished. */
  done: number;
  int3Hits: number;
  int3InNmi: number;
  /** INT3s whose handler drove the state machine on the primary. */
  primaryDrives: number;
  /**
   * Times such a nested driver found the state not yet acknowledged by every secondary and waited
   * (before the fix of issue 9's first bug it moved on at once: cmc-unsynchronized).
   */
  nestedAckWaits: number;
  ipis: number;
  /** STOP IPIs that found the vCPU not preemptible and were re-raised. */
  deferred: number;
  /** Steps each vCPU spent stopped (interrupts off in stop_machine), summed over generations. */
  stoppedSteps: number[];
  /** Steps from the primary's local_irq_disable to PATCH_DONE, per generation. */
  windowSteps: number[];
  /** The same two in simulated cycles (each vCPU's own clock, `Vcpu.time`; 0 under untimed strategies). */
  stoppedCycles: number[];
  windowCycles: number[];
  /** Why a stop_machine refused to switch (the lock-word check), if one did; later ones do not run. */
  refused?: string;
}

/** Statistics of no stop_machine yet, for `n` vCPUs. */
export function newV1Stats(n: number): V1Stats {
  return { done: 0, int3Hits: 0, int3InNmi: 0, primaryDrives: 0, nestedAckWaits: 0, ipis: 0, deferred: 0, stoppedSteps: Array(n).fill(0), windowSteps: [], stoppedCycles: Array(n).fill(0), windowCycles: [] };
}

/** text_poke() writing only the bytes that differ (a byte rewritten with its own value changes nothing any CPU can fetch). */
function* poke(ctx: ServiceContext, address: number, bytes: ArrayLike<number>): Generator<number, void, void> {
  const mem = ctx.exec.memory;
  const now = mem.readBytes(address, bytes.length);
  for (let i = 0; i < bytes.length; i++) if (now[i] !== bytes[i]) mem.poke(address + i, [bytes[i]!], ctx.cpu.id);
  yield CostClass.Store;
}

/** IRETQ from a handler service; `keepNmiBlocked` pops the frame but leaves NMIs blocked. */
function* leave(ctx: ServiceContext, keepNmiBlocked: boolean): Generator<number, void, void> {
  const c = ctx.cpu;
  const frames = c.serviceFrames;
  if (frames[frames.length - 1]?.address === ctx.address) frames.pop();
  const blocked = c.nmiBlocked;
  const hazard = iret(ctx.exec, c);
  if (keepNmiBlocked) c.nmiBlocked = blocked;
  yield hazard ? -1 : CostClass.Serializing;
}

export class StopMachineV1 {
  readonly stats: V1Stats;
  private gen = -1;
  private readonly gens: V1Generation[] = [];
  private windowStart = 0;
  private readonly hooks: V1Hooks;

  constructor(private readonly machine: { vcpus: Vcpu[]; registerService: (a: number, n: string, f: (ctx: ServiceContext) => ServiceBody) => void; setIdt: (v: number, h: number) => void; step: number }, private readonly o: V1Options) {
    const n = machine.vcpus.length;
    this.stats = newV1Stats(n);
    this.hooks = o.hooks ?? V1_HOOKS;
    machine.registerService(STOP_MACHINE_SERVICE.primary, 'text_poke_late', (ctx) => this.primary(ctx));
    machine.registerService(STOP_MACHINE_SERVICE.multiCpuStop, 'multi_cpu_stop', (ctx) => this.secondary(ctx));
    machine.registerService(STOP_MACHINE_SERVICE.pokeInt3, 'poke_int3_native', (ctx) => this.int3(ctx));
    machine.setIdt(STOP_VECTOR, STOP_MACHINE_SERVICE.multiCpuStop);
    machine.setIdt(VECTOR.BP, STOP_MACHINE_SERVICE.pokeInt3);
  }

  /** Take over `o`'s generations, position and counters (a fork of the guest it runs on). */
  copyStateFrom(o: StopMachineV1): void {
    // A queued generation's `after` closes over the parent's guest: only finished ones carry over.
    if (o.gens.length > o.stats.done) throw new KernelBug('cannot fork a stop_machine with a generation still queued');
    const st = o.stats;
    Object.assign(this.stats, { ...st, stoppedSteps: [...st.stoppedSteps], windowSteps: [...st.windowSteps], stoppedCycles: [...st.stoppedCycles], windowCycles: [...st.windowCycles] });
    this.gen = o.gen;
    this.gens.length = 0;
    this.gens.push(...o.gens);
    this.windowStart = o.windowStart;
  }

  /** Queue one stop_machine; the primary service runs them in order. */
  queue(g: V1Generation): void {
    this.gens.push(g);
  }

  get generations(): number {
    return this.gens.length;
  }

  private last(g: number): number {
    return 4 * this.gens[g]!.sites.length + 1;
  }

  /** The primary: every queued generation, one stop_machine each. */
  private *primary(ctx: ServiceContext): ServiceBody {
    const c = ctx.cpu, n = this.machine.vcpus.length;
    for (let g = this.stats.done; g < this.gens.length; g++) {
      const prepare = this.gens[g]!.prepare;
      if (prepare) yield* prepare(ctx);
      const b = block(g);
      // A fresh text_poke_state (the ring slot's last use ended GEN_SLOTS generations ago).
      const mem = ctx.exec.memory;
      mem.writeBytes(b.state, [0, 0, 0, 0]);
      mem.writeBytes(b.stopped, [0, 0, 0, 0]);
      for (let i = 0; i < n; i++) mem.writeBytes(b.ack(i), [0, 0, 0, 0]);
      const savedIf = c.flags & Flag.IF;
      c.flags &= ~Flag.IF; // local_irq_save
      yield* ctx.work();
      this.windowStart = this.machine.step;
      const t0 = this.machine.step, c0 = c.time;
      // A locked op: the fence before the ICR write (weak_wrmsr_fence), so a vCPU taking the IPI sees this generation.
      yield* ctx.xchg(GEN, 4, g);
      this.gen = g;
      ctx.exec.sendIpi(c.id, STOP_VECTOR | (3 << 18), 0);
      this.stats.ipis += n - 1;
      yield* ctx.work(CostClass.Serializing);
      while ((yield* ctx.load(b.stopped, 4)) < n - 1) yield* ctx.pause();
      // Every other vCPU is stopped with interrupts off. Before the flip: do both lock
      // implementations read the lock words the same way? If not, release the secondaries
      // (PATCH_DONE with no site touched) and switch nothing.
      const refused = yield* this.lockWordCheck(ctx, this.gens[g]!);
      if (refused !== undefined) {
        this.stats.refused = refused;
        yield* ctx.xchg(b.state, 4, this.last(g));
        c.flags |= savedIf;
        yield* ctx.work();
        return;
      }
      // Walk the sites.
      yield* this.advance(ctx, g, this.last(g) - 1);
      this.gens[g]!.after?.();
      yield* this.advance(ctx, g, this.last(g)); // smp_store_release(&tps->state, PATCH_DONE)
      this.stats.windowSteps.push(this.machine.step - this.windowStart);
      this.stats.windowCycles.push(c.time - c0);
      this.stats.stoppedSteps[c.id]! += this.machine.step - t0;
      this.stats.stoppedCycles[c.id]! += c.time - c0;
      this.stats.done++;
      c.flags |= savedIf; // local_irq_restore
      yield* ctx.work();
    }
  }

  /** The lock-word agreement check of a generation that switches lock implementation (one load per lock). */
  private *lockWordCheck(ctx: ServiceContext, gen: V1Generation): Generator<number, string | undefined, void> {
    const lw = gen.lockWords;
    if (lw === undefined || lw.from === lw.to) return undefined; // one implementation: nothing to compare
    const words = new Map<number, number>();
    for (const lock of lw.locks) words.set(lock, yield* ctx.load(lock, 4));
    return lockWordDisagreement(lw.from, lw.to, words);
  }

  /**
   * Drive generation `g` to state `target` (primary only, possibly nested in its own #BP handler
   * inside an NMI). Each turn of the loop:
   *  1. reads the published state s;
   *  2. waits until every other vCPU has acknowledged s (serialized after seeing it);
   *  3. returns if s is the target, else writes the bytes of state s + 1 and publishes it by
   *     cmpxchg (so a nested driver's progress is never undone), and serializes itself.
   * The wait belongs to the state, not to the driver that published it: a driver nested in an NMI
   * may find a state its interrupted driver published but whose acknowledgements it had not yet
   * seen, and must not move past it either (seed 002, text_poke_site(): "Poke the INT3 and wait
   * until all CPUs are known to have observed PATCH_SYNC_0"; "All transitions but the last
   * iteration need to be globally observed"). The RFC's poke_sync() publishes a state and then
   * waits for sync_ack_map within the same call (patch 15 stubs it); a nested poke_sync() would
   * start from a state whose wait it had not done, so the order here (wait before moving on) is
   * what the RFC's design requires of any driver, nested or not.
   */
  private *advance(ctx: ServiceContext, g: number, target: number, nested = false): Generator<number, void, void> {
    const b = block(g);
    const sites = this.gens[g]!.sites, last = this.last(g);
    for (;;) {
      const s = yield* ctx.load(b.state, 4);
      if (s === last) return; // PATCH_DONE: the secondaries leave on their own
      if (!(yield* this.allAcked(ctx, b, s, nested))) continue; // a nested driver moved on meanwhile
      if (s >= target) return;
      const next = s + 1;
      if (next < last) {
        const site = sites[Math.floor((next - 1) / 4)]!;
        const j = (next - 1) % 4;
        if (j === 0) yield* poke(ctx, site.address, [Opcode.INT3]); // PATCH_SYNC_0
        else if (j === 1 && site.bytes.length > 1) yield* poke(ctx, site.address + 1, site.bytes.subarray(1)); // PATCH_SYNC_1
        else if (j === 2) yield* poke(ctx, site.address, site.bytes.subarray(0, 1)); // PATCH_SYNC_2
      }
      if ((yield* ctx.cmpxchg(b.state, 4, s, next)) !== s) continue; // a nested driver got there first
      yield* ctx.serialize();
    }
  }

  /**
   * Wait until every vCPU but the primary has acknowledged state `s`; false if the state moved
   * on meanwhile (a driver nested in the primary's #BP handler did the waiting and more).
   */
  private *allAcked(ctx: ServiceContext, b: ReturnType<typeof block>, s: number, nested: boolean): Generator<number, boolean, void> {
    const n = this.machine.vcpus.length, me = ctx.cpu.id;
    const secondaries = Array.from({ length: n }, (_, cpu) => cpu).filter((cpu) => cpu !== me);
    let waited = false;
    for (const cpu of this.hooks.ackOrder(secondaries)) {
      for (;;) {
        if ((yield* ctx.load(b.ack(cpu), 4)) >= s) break;
        if ((yield* ctx.load(b.state, 4)) !== s) return false;
        if (nested && !waited) this.stats.nestedAckWaits++;
        waited = true;
        yield* ctx.pause();
      }
    }
    return true;
  }

  /** Serialize and acknowledge state `s` if it is newer than `acked`; returns the new `acked`. */
  private *ack(ctx: ServiceContext, g: number, s: number, acked: number): Generator<number, number, void> {
    if (s <= acked) return acked;
    yield* ctx.serialize(); // sync_one(): sync_core(), or CPUID in NMI context
    yield* ctx.store(block(g).ack(ctx.cpu.id), 4, s);
    return s;
  }

  /** multi_cpu_stop() on a secondary, entered by the STOP IPI (interrupts already off). */
  private *secondary(ctx: ServiceContext): ServiceBody {
    const c = ctx.cpu;
    if (!this.o.preemptible(c)) {
      // Not a scheduling point: the stopper thread runs later. Ask again at the next boundary.
      this.stats.deferred++;
      // The re-raised IPI waits one instruction (an interrupt shadow), so the vCPU moves on.
      ctx.exec.sendIpi(c.id, STOP_VECTOR, c.id);
      const frames = c.serviceFrames;
      if (frames[frames.length - 1]?.address === ctx.address) frames.pop();
      const hazard = iret(ctx.exec, c);
      c.interruptShadow = true;
      yield hazard ? -1 : CostClass.Serializing;
      return;
    }
    const g = yield* ctx.load(GEN, 4);
    const b = block(g), last = this.last(g);
    const t0 = this.machine.step, c0 = c.time;
    yield* ctx.fetchAdd(b.stopped, 4, 1);
    let acked = -1;
    for (;;) {
      const s = yield* ctx.load(b.state, 4);
      if (s === last) break;
      acked = yield* this.ack(ctx, g, s, acked);
      yield* ctx.pause();
    }
    yield* ctx.serialize();
    this.stats.stoppedSteps[c.id]! += this.machine.step - t0;
    this.stats.stoppedCycles[c.id]! += c.time - c0;
    return yield* leave(ctx, false);
  }

  /** The #BP handler: drive the state machine for the site whose INT3 was hit. */
  private *int3(ctx: ServiceContext): ServiceBody {
    const c = ctx.cpu;
    // in_nmi(): this CPU's preempt_count (only it writes the word), not the CPU's NMI blocking.
    const inNmi = (this.o.inNmi ?? inNmiOf)(ctx.exec.memory, c);
    const frame = c.getAddr(Reg.RSP);
    const ip = (yield* ctx.load(frame, 8)) - 1;
    const g = this.gen;
    const k = g < 0 ? -1 : this.gens[g]!.sites.findIndex((s) => s.address === ip);
    if (k < 0) throw new KernelBug(`vCPU ${c.id}: int3 at ${hexAddress(ip)}, which v1 is not patching`);
    this.stats.int3Hits++;
    if (inNmi) this.stats.int3InNmi++;
    const sm = this;
    yield* this.hooks.bpEmulation({
      ctx, ip, site: k, inNmi,
      drive: () => sm.driveSite(ctx, g, k),
      *resume(keepNmiBlocked) {
        yield* ctx.store(frame, 8, ip); // execute the new instruction: back to the site's first byte
        yield* leave(ctx, keepNmiBlocked);
      },
    });
  }

  /** The stock #BP handler's work: until site k's first byte is final (PATCH_SYNC_2). */
  private *driveSite(ctx: ServiceContext, g: number, k: number): Generator<number, void, void> {
    const siteDone = 4 * k + 3; // PATCH_SYNC_2 of site k: its first byte is final
    if (ctx.cpu.id === this.o.primaryCpu) {
      this.stats.primaryDrives++;
      yield* this.advance(ctx, g, 4 * k + 4, true);
      return;
    }
    const b = block(g);
    let acked = -1;
    for (;;) {
      const s = yield* ctx.load(b.state, 4);
      acked = yield* this.ack(ctx, g, s, acked);
      if (s >= siteDone) break;
      yield* ctx.pause();
    }
  }
}
