/**
 * The guest-kernel half of the v2 lock-op switch (seed 001, "so now v2"; DESIGN.md §5): the
 * site-local barrier's INT3 handler, which emulates the *current* lock ops at every lock-op site
 * (the native unlock's `movb $0,(%rdi)` included: a lock-op emulation, not text_poke_bp's generic
 * CALL/JMP/RET one), and the global barrier each vCPU passes at lockop_checkpoint() — a point of
 * the task loop (and of the idle loop) where the CPU holds no lock — after which its INT3 handler
 * counts active slowpath lock-ops.
 *
 * The count and the switch share one word, LOCKOP.word = count | FLIPPED: a counting handler takes
 * its count with one fetch-add and the old word says, atomically with the increment, which ops it
 * must run; the patcher switches with cmpxchg(word, 0, FLIPPED), which only succeeds when every
 * counted lock-op is over. A slowpath trap adds 1 and records the lock in this CPU's slowpath map;
 * the matching unlock trap (the lock is in the map) drops it; an unlock of a lock taken by the
 * cmpxchg fast path is not in the map and drops nothing. An unlock also holds 1 while it runs its
 * emulated store, so a native unlock cannot race with the switch to PV (a PV waiter's _Q_SLOW_VAL
 * overwritten by a late `movb $0`).
 */
import { EmulationOracle } from './emulation-oracle.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { Reg } from '../x86/registers.ts';
import { hexAddress } from '../x86/format.ts';
import { KernelBug } from './errors.ts';
import { DATA_BASE, PERCPU, SERVICE_BASE, percpuBase } from './layout.ts';
import { PvOp, patchBytes, type Flavor, type OpTargets, type PatchSite } from './pv-ops.ts';
import { isNativeUnlock } from './atomic-switch.ts';
import type { Hazard } from '../machine/events.ts';

/** The v2 services (after text_poke_bp's at +0x100..). */
export const LOCKOP_SERVICE = {
  int3Handler: SERVICE_BASE + 0x140,
  hintHandler: SERVICE_BASE + 0x150,
} as const;

/** Shared v2 state in guest data (after text_poke_bp's at DATA_BASE + 0x8000), one line each. */
const LOCKOP_DATA = DATA_BASE + 0x9000;
export const LOCKOP = {
  /** count of active counted lock-ops | FLIPPED once the new ops are in force. */
  word: LOCKOP_DATA,
  /** The barrier's generation (0 = no barrier open: handlers do not count). */
  epoch: LOCKOP_DATA + 0x40,
  /** vCPUs that passed the barrier of the current epoch. */
  passed: LOCKOP_DATA + 0x80,
  /** In-flight INT3 handlers + 1 while the INT3s are published (bp_desc.refs). */
  refs: LOCKOP_DATA + 0xc0,
  /** The old and the new flavour (FLAVOR_CODE). */
  from: LOCKOP_DATA + 0x100,
  to: LOCKOP_DATA + 0x104,
  /** The trigger: the flavour the hint handler asks for (0 = nothing pending). */
  pending: LOCKOP_DATA + 0x140,
} as const;
export const FLIPPED = 1 << 30;
/** Per-CPU: the barrier epoch this CPU passed (it counts when it equals LOCKOP.epoch). */
export const PERCPU_LOCKOP_EPOCH = PERCPU.done + 0x10;

export const FLAVOR_CODE: Record<Flavor, number> = { native: 1, pv: 2 };
export function flavorOf(code: number): Flavor | undefined {
  return code === 1 ? 'native' : code === 2 ? 'pv' : undefined;
}

export interface LockopStats {
  int3Hits: number;
  /** Slowpath entries the handler counted, and unlocks that dropped one. */
  counted: number;
  uncounted: number;
}

/** The handler's view of the guest: the lock-op sites and where each op's code lives. */
export class LockopBarrier {
  readonly stats: LockopStats = { int3Hits: 0, counted: 0, uncounted: 0 };
  /** The emulation oracle: the patcher records each site's old and new bytes while its INT3 is up. */
  readonly emulation = new EmulationOracle();
  private readonly sites = new Map<number, PatchSite>();
  /** Per-CPU map of locks this CPU took through a counted slowpath (a multiset). */
  readonly slowLocks: number[][];

  /**
   * `broken: 'no-map'` (a negative control): every unlock on a counting CPU drops a count, as if
   * there were no per-CPU map to tell a fast-path unlock from a slowpath one.
   */
  constructor(
    sites: readonly PatchSite[],
    private readonly targets: OpTargets,
    nCpus: number,
    private readonly broken?: 'no-map',
    /** Told of every native unlock the handler emulates (the atomic-switch oracle); a hazard stops the run. */
    private readonly onNativeUnlock?: (cpu: number, lock: number, address: number) => Hazard | undefined,
  ) {
    for (const s of sites) this.sites.set(s.address, s);
    this.slowLocks = Array.from({ length: nCpus }, () => []);
  }

  /** Take over `o`'s counters and slowpath maps (a fork of the guest it runs on). */
  copyStateFrom(o: LockopBarrier): void {
    Object.assign(this.stats, o.stats);
    o.slowLocks.forEach((locks, cpu) => { this.slowLocks[cpu] = [...locks]; });
  }

  /**
   * lockop_checkpoint()'s barrier part: called where this CPU holds no lock. If a barrier is open
   * that this CPU has not passed, forget its slowpath map (nothing it records is in progress now)
   * and start counting.
   */
  *pass(ctx: ServiceContext): Generator<number, void, void> {
    const epoch = yield* ctx.load(LOCKOP.epoch, 4);
    if (epoch === 0) return;
    const mine = percpuBase(ctx.cpu.id) + PERCPU_LOCKOP_EPOCH;
    if ((yield* ctx.load(mine, 4)) === epoch) return;
    this.slowLocks[ctx.cpu.id]!.length = 0;
    yield* ctx.store(mine, 4, epoch);
    yield* ctx.fetchAdd(LOCKOP.passed, 4, 1);
  }

  /** The #BP handler while the lock-op INT3s are in place. */
  *handler(ctx: ServiceContext): ServiceBody {
    const c = ctx.cpu;
    // in_nmi(): a #BP inside an NMI handler must not let a second NMI nest when it IRETs (Linux's
    // nested-NMI logic): it would take the NMI lock its own outer NMI holds.
    const keepNmiBlocked = c.nmiBlocked;
    const frame = c.getAddr(Reg.RSP);
    const ip = (yield* ctx.load(frame, 8)) - 1;
    // atomic_inc_not_zero(&refs): the patcher still has its INT3s published.
    for (;;) {
      const refs = yield* ctx.load(LOCKOP.refs, 4);
      if (refs === 0) throw new KernelBug(`vCPU ${c.id}: int3 at ${hexAddress(ip)} with no lock-op switch in progress`);
      if ((yield* ctx.cmpxchg(LOCKOP.refs, 4, refs, refs + 1)) === refs) break;
    }
    const site = this.sites.get(ip);
    if (site === undefined) {
      yield* ctx.fetchAdd(LOCKOP.refs, 4, -1);
      throw new KernelBug(`vCPU ${c.id}: int3 at ${hexAddress(ip)}, which is not a lock-op site`);
    }
    const from = flavorOf(yield* ctx.load(LOCKOP.from, 4));
    const to = flavorOf(yield* ctx.load(LOCKOP.to, 4));
    if (from === undefined || to === undefined) throw new KernelBug(`vCPU ${c.id}: lock-op int3 with no flavours published`);
    const epoch = yield* ctx.load(LOCKOP.epoch, 4);
    const counting = epoch !== 0 && (yield* ctx.load(percpuBase(c.id) + PERCPU_LOCKOP_EPOCH, 4)) === epoch;
    const lock = ctx.arg(0);
    this.stats.int3Hits++;

    let flipped: boolean;
    let release = 0;
    if (counting && (site.type === PvOp.QueuedSpinLockSlowpath || site.type === PvOp.QueuedSpinUnlock)) {
      flipped = ((yield* ctx.fetchAdd(LOCKOP.word, 4, 1)) & FLIPPED) !== 0;
      if (site.type === PvOp.QueuedSpinLockSlowpath) {
        this.slowLocks[c.id]!.push(lock); // per-CPU: no other CPU touches it
        this.stats.counted++;
        yield* ctx.work();
      } else {
        const map = this.slowLocks[c.id]!;
        const at = map.lastIndexOf(lock);
        release = 1;
        if (at >= 0) {
          map.splice(at, 1);
          release = 2;
          this.stats.uncounted++;
        }
        yield* ctx.work();
      }
    } else {
      flipped = ((yield* ctx.load(LOCKOP.word, 4)) & FLIPPED) !== 0;
    }

    // Emulate the op in force: the old one until the switch, the new one after.
    const bytes = patchBytes(site, flipped ? to : from, this.targets);
    this.emulation.checkBytes(c.id, site.address, bytes);
    const next = site.address + site.len;
    const noMap = this.broken === 'no-map' && release === 1;
    const put = function* (): Generator<number, void, void> {
      if (noMap) {
        // atomic_dec_if_positive() on someone else's count (ours, the +1, is in the word too).
        for (;;) {
          const w = yield* ctx.load(LOCKOP.word, 4);
          if ((w & (FLIPPED - 1)) <= 1 || (yield* ctx.cmpxchg(LOCKOP.word, 4, w, w - 1)) === w) break;
        }
      }
      if (release > 0) yield* ctx.fetchAdd(LOCKOP.word, 4, -release);
      yield* ctx.fetchAdd(LOCKOP.refs, 4, -1);
    };
    if (bytes[0] === 0xe8) {
      // int3_emulate_call(); the return address skips the site's NOP padding, so no vCPU ever
      // returns into the middle of a site whose tail is being rewritten.
      const disp = (bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16) | (bytes[4]! << 24)) | 0;
      yield* ctx.store(frame, 8, site.address + 5 + disp);
      yield* put();
      return yield* ctx.iret({ push: next, keepNmiBlocked });
    }
    if (isNativeUnlock(bytes)) {
      yield* ctx.report(this.onNativeUnlock?.(c.id, lock, site.address));
      yield* ctx.store(lock, 1, 0); // native_queued_spin_unlock: movb $0,(%rdi)
    } else if (bytes[0] === 0x48 && bytes[1] === 0x31 && bytes[2] === 0xc0) {
      c.setReg64(Reg.RAX, 0n); // native vcpu_is_preempted: xor %rax,%rax
      yield* ctx.work();
    } // else NOPs (native wait, kick): skip
    yield* ctx.store(frame, 8, next);
    yield* put();
    return yield* ctx.iret({ keepNmiBlocked });
  }
}
