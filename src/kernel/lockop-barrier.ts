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
 *
 * LockopBarrierCore is all of it that does not depend on which guest runs it — the counting, the
 * handler's emulation, the patcher's attempts (publish, INT3s, barrier, flip or abort) — and both
 * guests use it: the imitation through LockopBarrier (its sites and flavours, src/patching/v2.ts)
 * and the real kernel through src/linux/v2-switch.ts (the real `.parainstructions` sites).
 */
import { EmulationOracle } from './emulation-oracle.ts';
import { nopPadding } from '../x86/nops.ts';
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

/** What the barrier counted: INT3 hits (and those in NMI context), slowpath entries and the unlocks that dropped one. */
export interface LockopStats {
  int3Hits: number;
  int3InNmi: number;
  counted: number;
  uncounted: number;
}

/** What a lock-op site is to the counting: a slowpath entry, an unlock, or another op. */
export type LockopSiteKind = 'slowpath' | 'unlock' | 'other';

/** A site the handler found at the INT3's address: its length, its kind and the bytes of each side of the flip. */
export interface LockopSiteView {
  readonly address: number;
  readonly len: number;
  readonly kind: LockopSiteKind;
  /** The op's bytes before the switch (flipped false) or after it. */
  bytes(flipped: boolean): Uint8Array;
}

/** The guest's part of the #BP handler: find the site at `ip` (it may load the guest's own state). */
export type LockopSiteLookup = (ctx: ServiceContext, ip: number) => Generator<number, LockopSiteView | undefined, void>;

/** One site of a switch attempt: its bytes now and what it will hold. */
export interface LockopSwitchSite {
  readonly address: number;
  readonly old: Uint8Array;
  readonly new: Uint8Array;
}

export type LockopPhase = 'start' | 'int3' | 'barrier-open' | 'flip' | 'tails' | 'first-bytes' | 'done' | 'abort' | 'int3-removed';

/** How a switch's attempts run: the guest's sites and steps around the shared core. */
export interface LockopAttempts {
  readonly sites: readonly LockopSwitchSite[];
  /** text_poke_sync(): serialize every vCPU. */
  sync(): Generator<number, void, void>;
  /** text_poke(): write bytes at once, tracked as cross-modified code. */
  poke(address: number, bytes: ArrayLike<number>): Generator<number, void, void>;
  /** Step 4's precondition (V2Hooks.flipCondition: every vCPU passed the barrier). */
  flipCondition(): Generator<number, boolean, void>;
  /** After the fresh count, before refs opens: what the guest's handler reads (the imitation's flavours). */
  publish?(): Generator<number, void, void>;
  /** After the flip, before the tails: the pv_ops lock slots. */
  writeSlots(): Generator<number, void, void>;
  /** Barrier budget per attempt (cpu_relax() iterations), attempts after the first, udelay() between. */
  readonly maxWaitSpins: number;
  readonly maxRetries: number;
  readonly retryDelay: number;
  /** Told of each phase as the patcher reaches it. */
  mark?(phase: LockopPhase, attempt: number): void;
}

/** What the attempts did: whether the flip happened, the patcher's spins per attempt, the retries. */
export interface LockopAttemptRecord {
  readonly waits: number[];
  retries: number;
}

/** The v2 barrier both guests share: the counting, the handler's emulation, the patcher's attempts. */
export class LockopBarrierCore {
  readonly stats: LockopStats = { int3Hits: 0, int3InNmi: 0, counted: 0, uncounted: 0 };
  /** The emulation oracle: the patcher records each site's old and new bytes while its INT3 is up. */
  readonly emulation = new EmulationOracle();
  /** Per-CPU map of locks this CPU took through a counted slowpath (a multiset). */
  readonly slowLocks: number[][];
  /** The barrier's generation: the last epoch the patcher opened. */
  private epoch = 0;

  /**
   * `epochAddress(cpu)`: where CPU `cpu` keeps the epoch it passed (per-CPU data). `broken: 'no-map'`
   * (a negative control): every unlock on a counting CPU drops a count, as if there were no per-CPU
   * map to tell a fast-path unlock from a slowpath one.
   */
  constructor(
    nCpus: number,
    private readonly epochAddress: (cpu: number) => number,
    /** Told of every native unlock the handler emulates (the atomic-switch oracle); a hazard stops the run. */
    private readonly onNativeUnlock: (cpu: number, lock: number, address: number) => Hazard | undefined,
    private readonly broken?: 'no-map',
  ) {
    this.slowLocks = Array.from({ length: nCpus }, () => []);
  }

  /** Take over `o`'s counters, slowpath maps and epoch (a fork of the guest it runs on). */
  copyStateFrom(o: LockopBarrierCore): void {
    Object.assign(this.stats, o.stats);
    o.slowLocks.forEach((locks, cpu) => { this.slowLocks[cpu] = [...locks]; });
    this.epoch = o.epoch;
  }

  /**
   * lockop_checkpoint()'s barrier part: called where this CPU holds no lock. If a barrier is open
   * that this CPU has not passed, forget its slowpath map (nothing it records is in progress now)
   * and start counting.
   */
  *pass(ctx: ServiceContext): Generator<number, void, void> {
    const epoch = yield* ctx.load(LOCKOP.epoch, 4);
    if (epoch === 0) return;
    const mine = this.epochAddress(ctx.cpu.id);
    if ((yield* ctx.load(mine, 4)) === epoch) return;
    this.slowLocks[ctx.cpu.id]!.length = 0;
    yield* ctx.store(mine, 4, epoch);
    yield* ctx.fetchAdd(LOCKOP.passed, 4, 1);
  }

  /** The #BP handler while the lock-op INT3s are in place; `lookup` finds the guest's site. */
  *handler(ctx: ServiceContext, lookup: LockopSiteLookup): ServiceBody {
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
    const site = yield* lookup(ctx, ip);
    if (site === undefined) {
      yield* ctx.fetchAdd(LOCKOP.refs, 4, -1);
      throw new KernelBug(`vCPU ${c.id}: int3 at ${hexAddress(ip)}, which is not a lock-op site of the switch`);
    }
    this.stats.int3Hits++;
    if (keepNmiBlocked) this.stats.int3InNmi++;
    const epoch = yield* ctx.load(LOCKOP.epoch, 4);
    const counting = epoch !== 0 && (yield* ctx.load(this.epochAddress(c.id), 4)) === epoch;
    const lock = ctx.arg(0);

    let flipped: boolean;
    let release = 0;
    if (counting && site.kind !== 'other') {
      flipped = ((yield* ctx.fetchAdd(LOCKOP.word, 4, 1)) & FLIPPED) !== 0;
      const map = this.slowLocks[c.id]!; // per-CPU: no other CPU touches it
      if (site.kind === 'slowpath') {
        map.push(lock);
        this.stats.counted++;
      } else {
        const at = map.lastIndexOf(lock);
        release = 1;
        if (at >= 0) {
          map.splice(at, 1);
          release = 2;
          this.stats.uncounted++;
        }
      }
      yield* ctx.work();
    } else {
      flipped = ((yield* ctx.load(LOCKOP.word, 4)) & FLIPPED) !== 0;
    }

    // Emulate the op in force: the old one until the switch, the new one after.
    const bytes = site.bytes(flipped);
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
      const disp = bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16) | (bytes[4]! << 24);
      yield* ctx.store(frame, 8, site.address + 5 + disp);
      yield* put();
      return yield* ctx.iret({ push: next, keepNmiBlocked });
    }
    if (isNativeUnlock(bytes)) {
      yield* ctx.report(this.onNativeUnlock(c.id, lock, site.address));
      yield* ctx.store(lock, 1, 0); // native_queued_spin_unlock: movb $0,(%rdi)
    } else if (bytes[0] === 0x48 && bytes[1] === 0x31 && bytes[2] === 0xc0) {
      c.setReg64(Reg.RAX, 0n); // native vcpu_is_preempted: xor %rax,%rax
      yield* ctx.work();
    } else if (!isNops(bytes)) {
      throw new KernelBug(`vCPU ${c.id}: no emulation for the bytes at lock-op site ${hexAddress(site.address)}`);
    } // NOPs (native wait, kick): skip
    yield* ctx.store(frame, 8, next);
    yield* put();
    return yield* ctx.iret({ keepNmiBlocked });
  }

  /**
   * The patcher's attempts (steps 1-5, src/patching/v2.ts): a fresh count, INT3 on every site,
   * sync; open the barrier and pass it, sync; spin until the flip condition holds and the
   * cmpxchg(word, 0, FLIPPED) succeeds; then the slots, the tails, sync, the first bytes, sync,
   * close the barrier and wait for in-flight handlers. Past the budget: close the barrier, put the
   * old first bytes back, sync, wait for the handlers, and retry after a delay. True when flipped.
   */
  *attempts(ctx: ServiceContext, a: LockopAttempts, rec: LockopAttemptRecord): Generator<number, boolean, void> {
    const dropRefs = function* (): Generator<number, void, void> {
      if ((yield* ctx.fetchAdd(LOCKOP.refs, 4, -1)) !== 1) {
        while ((yield* ctx.load(LOCKOP.refs, 4)) !== 0) yield* ctx.pause();
      }
    };
    for (let attempt = 0; attempt <= a.maxRetries; attempt++) {
      const mark = (phase: LockopPhase) => a.mark?.(phase, attempt);
      mark('start');
      // Publish: a fresh count, what the handler reads, refs = 1 (handlers may run from here on).
      yield* ctx.store(LOCKOP.word, 4, 0);
      yield* ctx.store(LOCKOP.passed, 4, 0);
      if (a.publish) yield* a.publish();
      // A locked op: text_poke writes the text at once, so every store above must be visible
      // before the first 0xCC is (a plain store could still sit in our store buffer).
      yield* ctx.xchg(LOCKOP.refs, 4, 1);
      // 1. Site-local barrier (the emulation oracle records what each site holds and will hold).
      for (const s of a.sites) this.emulation.expect(s.address, s.old, s.new);
      for (const s of a.sites) yield* a.poke(s.address, [0xcc]);
      yield* a.sync();
      mark('int3');
      // 2. Global barrier: open it, pass it ourselves (no lock held here), wake the idle.
      yield* ctx.store(LOCKOP.epoch, 4, ++this.epoch);
      yield* this.pass(ctx);
      yield* a.sync();
      mark('barrier-open');
      // 3./4. Wait for every CPU and a zero count; the cmpxchg is the switch.
      let flipped = false, spins = 0;
      for (; spins < a.maxWaitSpins; spins++) {
        if ((yield* a.flipCondition()) && (yield* ctx.cmpxchg(LOCKOP.word, 4, 0, FLIPPED)) === 0) {
          flipped = true;
          break;
        }
        yield* ctx.pause();
      }
      rec.waits.push(spins);
      if (flipped) {
        mark('flip');
        yield* a.writeSlots();
        let tails = false;
        for (const s of a.sites) {
          if (s.new.length <= 1) continue;
          yield* a.poke(s.address + 1, s.new.subarray(1));
          tails = true;
        }
        if (tails) yield* a.sync();
        mark('tails');
        for (const s of a.sites) yield* a.poke(s.address, s.new.subarray(0, 1));
        yield* a.sync();
        mark('first-bytes');
        yield* ctx.store(LOCKOP.epoch, 4, 0);
        yield* dropRefs();
        for (const s of a.sites) this.emulation.forget(s.address);
        mark('done');
        return true;
      }
      // 5. Abort: stop counting, put the old first bytes back, wait for the handlers.
      mark('abort');
      yield* ctx.store(LOCKOP.epoch, 4, 0);
      for (const s of a.sites) yield* a.poke(s.address, s.old.subarray(0, 1));
      yield* a.sync();
      yield* dropRefs();
      for (const s of a.sites) this.emulation.forget(s.address);
      mark('int3-removed');
      if (attempt < a.maxRetries) {
        rec.retries++;
        yield* ctx.delay(a.retryDelay);
      }
    }
    return false;
  }
}

/** NOPs as Linux pads a site (x86_nops, src/x86/nops.ts), or single-byte NOPs. */
function isNops(b: Uint8Array): boolean {
  const pad = nopPadding(b.length);
  return b.every((x, i) => x === pad[i]) || b.every((x) => x === 0x90);
}

/** The imitation's view of the barrier: its sites and the flavours the patcher published (LOCKOP.from/to). */
export class LockopBarrier extends LockopBarrierCore {
  private readonly sites = new Map<number, PatchSite>();

  constructor(
    sites: readonly PatchSite[],
    private readonly targets: OpTargets,
    nCpus: number,
    broken?: 'no-map',
    onNativeUnlock?: (cpu: number, lock: number, address: number) => Hazard | undefined,
  ) {
    super(nCpus, (cpu) => percpuBase(cpu) + PERCPU_LOCKOP_EPOCH, (cpu, lock, address) => onNativeUnlock?.(cpu, lock, address), broken);
    for (const s of sites) this.sites.set(s.address, s);
  }

  /** The #BP handler over the imitation's sites: the bytes of the flavours in LOCKOP.from/to. */
  override handler(ctx: ServiceContext): ServiceBody {
    const sites = this.sites, targets = this.targets;
    return super.handler(ctx, function* (c, ip) {
      const site = sites.get(ip);
      if (site === undefined) return undefined;
      const from = flavorOf(yield* c.load(LOCKOP.from, 4));
      const to = flavorOf(yield* c.load(LOCKOP.to, 4));
      if (from === undefined || to === undefined) throw new KernelBug(`vCPU ${c.cpu.id}: lock-op int3 with no flavours published`);
      const kind: LockopSiteKind = site.type === PvOp.QueuedSpinLockSlowpath ? 'slowpath' : site.type === PvOp.QueuedSpinUnlock ? 'unlock' : 'other';
      return { address: site.address, len: site.len, kind, bytes: (flipped: boolean) => patchBytes(site, flipped ? to : from, targets) };
    });
  }
}
