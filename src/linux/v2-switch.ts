/**
 * v2 (seed 001 "so now v2"; DESIGN.md §5; the imitation's src/patching/v2.ts and
 * src/kernel/lockop-barrier.ts) switching the real kernel's `.parainstructions` lock-op sites
 * under load, with no stop_machine:
 *  1. site-local barrier: an INT3 on the first byte of every site that changes, sync; the INT3
 *     handler emulates the op in force at that site (the plan's old bytes until the switch, the
 *     new ones after: a direct CALL, the native unlock `movb $0,(%rdi)`, or NOPs);
 *  2. global barrier: every vCPU passes lockop_checkpoint() (the workload's task loop and idle
 *     loop, where it holds no lock) and starts counting;
 *  3. counted slowpath lock-ops: a counting CPU's INT3 at a lock.queued_spin_lock_slowpath site
 *     adds one and records the lock in its per-CPU map; its unlock of that lock drops it (an
 *     unlock also holds one while its emulated store runs);
 *  4. every vCPU passed and the count is zero: cmpxchg(word, 0, FLIPPED); the pv_ops lock slots,
 *     the tails, sync, the first bytes, sync, wait for in-flight handlers;
 *  5. the barrier stays open past a budget: put the old first bytes back and retry later.
 * Before step 1 the patcher prepares what the target needs: the PV hash on native → PV
 * (__pv_init_lock_hash is __init: a native boot never allocated it).
 */
import type { RunOptions, RunResult } from '../machine/machine.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { Reg } from '../x86/registers.ts';
import { hexAddress } from '../x86/format.ts';
import { VECTOR } from '../kernel/layout.ts';
import { KernelBug } from '../kernel/errors.ts';
import { TextPokeBp, textPoke, textPokeSync } from '../kernel/text-poke.ts';
import { FLIPPED, LOCKOP, LOCKOP_SERVICE } from '../kernel/lockop-barrier.ts';
import { isNativeUnlock } from '../kernel/atomic-switch.ts';
import { EmulationOracle } from '../kernel/emulation-oracle.ts';
import { V2_HOOKS, type V2Hooks } from '../patching/v2-hooks.ts';
import type { LinuxGuest, LinuxLockReport } from './guest.ts';
import type { LockOpSitePatch, LockOpSwitchPlan } from './lock-op-switch.ts';
import { pvInitLockHash } from './memory-map.ts';
import { lockopEpochAddress } from './layout.ts';
import { LinuxAtomicSwitch } from './switch-oracle.ts';
import { LinuxGuestError } from './errors.ts';

export interface LinuxV2Options {
  readonly patcherCpu?: number;
  /** Barrier budget per attempt, in cpu_relax() iterations of the patcher (default 20000). */
  readonly maxWaitSpins?: number;
  /** Attempts after the first before giving up (default 3), and the udelay() between (default 5000 cycles). */
  readonly maxRetries?: number;
  readonly retryDelay?: number;
  /** The steps' hooks (default V2_HOOKS; src/patching/broken.ts v2NoBarrierHooks is a negative control). */
  readonly hooks?: V2Hooks;
  /** Allocate the PV hash before native → PV (default true). */
  readonly prepare?: boolean;
  /** The host revokes (or grants) the hint at this step (default 0: before the run). */
  readonly atStep?: number;
  readonly run?: RunOptions;
}

export interface LinuxV2Switch {
  readonly from: string;
  readonly to: string;
  ok: boolean;
  reason: 'switched' | 'eagain' | 'unexpected-bytes';
  retries: number;
  /** The patcher's spins waiting on the barrier, per attempt. */
  readonly waits: number[];
}

export interface LinuxV2Stats {
  int3Hits: number;
  int3InNmi: number;
  counted: number;
  uncounted: number;
}

const SLOWPATH = 'lock.queued_spin_lock_slowpath';
const UNLOCK = 'lock.queued_spin_unlock';

/** The v2 switcher of one real-kernel guest: the INT3 handler, the checkpoint, the patcher. */
export class LinuxLockopV2 {
  readonly switches: LinuxV2Switch[] = [];
  readonly stats: LinuxV2Stats = { int3Hits: 0, int3InNmi: 0, counted: 0, uncounted: 0 };
  readonly atomic: LinuxAtomicSwitch;
  readonly emulation = new EmulationOracle();
  private readonly sync = { syncs: 0, ipis: 0 };
  private readonly slowLocks: number[][];
  private readonly hooks: V2Hooks;
  private readonly patcherCpu: number;
  /** The plan whose INT3s may be up (the handler's table of old and new bytes). */
  private current: { plan: LockOpSwitchPlan; sites: Map<number, LockOpSitePatch> } | undefined;
  private next = 0;
  private epoch = 0;
  private busy = false;

  constructor(readonly guest: LinuxGuest, readonly plans: readonly LockOpSwitchPlan[], private readonly o: LinuxV2Options = {}) {
    if (guest.options.lockopCheckpoint !== true) throw new LinuxGuestError('v2 needs a guest built with lockopCheckpoint (its global barrier)');
    const m = guest.machine;
    this.patcherCpu = o.patcherCpu ?? 0;
    if (this.patcherCpu < 0 || this.patcherCpu >= m.vcpus.length) throw new LinuxGuestError(`no vCPU ${this.patcherCpu} to run the switch`);
    plans.forEach((plan, i) => {
      const from = i === 0 ? guest.flavor : plans[i - 1]!.to;
      if (from !== plan.from) throw new LinuxGuestError(`switch ${i + 1} starts from ${plan.from}, but the guest runs ${from} locks by then`);
    });
    this.hooks = o.hooks ?? V2_HOOKS;
    this.slowLocks = m.vcpus.map(() => []);
    this.atomic = new LinuxAtomicSwitch(guest);
    new TextPokeBp(m); // do_sync_core on the SYNC vector (text_poke_sync's IPI)
    m.registerService(LOCKOP_SERVICE.int3Handler, 'lockop_int3_handler', (ctx) => this.handler(ctx));
    m.setIdt(VECTOR.BP, LOCKOP_SERVICE.int3Handler);
    guest.lockopCheckpoint = (ctx) => this.checkpoint(ctx);
  }

  /** The host changed the hint: the patcher switches at its next checkpoint. */
  request(): void {
    this.guest.machine.memory.writeBytes(LOCKOP.pending, [1, 0, 0, 0]);
  }

  get done(): number {
    return this.switches.filter((s) => s.ok).length;
  }

  private *checkpoint(ctx: ServiceContext): Generator<number, void, void> {
    if (ctx.cpu.id === this.patcherCpu && !this.busy && this.next < this.plans.length) {
      const p = yield* ctx.load(LOCKOP.pending, 4);
      if (p !== 0 && (yield* ctx.cmpxchg(LOCKOP.pending, 4, p, 0)) === p) {
        this.busy = true;
        try {
          const plan = this.plans[this.next]!;
          if ((yield* this.switchTo(ctx, plan)) && ++this.next < this.plans.length) yield* ctx.store(LOCKOP.pending, 4, 1);
        } finally {
          this.busy = false;
        }
      }
    }
    yield* this.hooks.barrierPoint(ctx, () => this.pass(ctx));
  }

  /** The global barrier: if one is open that this CPU has not passed, forget its map and count. */
  private *pass(ctx: ServiceContext): Generator<number, void, void> {
    const epoch = yield* ctx.load(LOCKOP.epoch, 4);
    if (epoch === 0) return;
    const mine = lockopEpochAddress(ctx.cpu.id);
    if ((yield* ctx.load(mine, 4)) === epoch) return;
    this.slowLocks[ctx.cpu.id]!.length = 0;
    yield* ctx.store(mine, 4, epoch);
    yield* ctx.fetchAdd(LOCKOP.passed, 4, 1);
  }

  private *switchTo(ctx: ServiceContext, plan: LockOpSwitchPlan): Generator<number, boolean, void> {
    const m = this.guest.machine;
    const n = m.vcpus.length;
    const rec: LinuxV2Switch = { from: plan.from, to: plan.to, ok: false, reason: 'eagain', retries: 0, waits: [] };
    this.switches.push(rec);
    const wrong = plan.sites.find((s) => !m.memory.readBytes(s.address, s.from.length).every((b, i) => b === s.from[i]));
    if (wrong !== undefined) {
      rec.reason = 'unexpected-bytes';
      yield* ctx.work();
      return false;
    }
    // kmalloc the PV hash before any vCPU can reach the PV slowpath (the table __pv_init_lock_hash sizes).
    if (plan.to === 'pv' && this.guest.pvHash === undefined && (this.o.prepare ?? true)) {
      this.guest.pvHash = pvInitLockHash(m.memory, plan.target, n);
      yield* ctx.work();
    }
    this.current = { plan, sites: new Map(plan.sites.map((s) => [s.address, s])) };
    const sync = () => textPokeSync(ctx, n, this.sync);
    const dropRefs = function* (): Generator<number, void, void> {
      if ((yield* ctx.fetchAdd(LOCKOP.refs, 4, -1)) !== 1) {
        while ((yield* ctx.load(LOCKOP.refs, 4)) !== 0) yield* ctx.pause();
      }
    };
    const maxWait = this.o.maxWaitSpins ?? 20000, maxRetries = this.o.maxRetries ?? 3;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      yield* ctx.store(LOCKOP.word, 4, 0);
      yield* ctx.store(LOCKOP.passed, 4, 0);
      // A locked op: every store above is visible before the first 0xCC (text_poke writes at once).
      yield* ctx.xchg(LOCKOP.refs, 4, 1);
      for (const s of plan.sites) this.emulation.expect(s.address, s.from, s.to);
      for (const s of plan.sites) yield* textPoke(ctx, s.address, [0xcc]);
      yield* sync();
      yield* ctx.store(LOCKOP.epoch, 4, ++this.epoch);
      yield* this.pass(ctx);
      yield* sync();
      let flipped = false, spins = 0;
      for (; spins < maxWait; spins++) {
        if ((yield* this.hooks.flipCondition({ ctx, nCpus: n })) && (yield* ctx.cmpxchg(LOCKOP.word, 4, 0, FLIPPED)) === 0) {
          flipped = true;
          break;
        }
        yield* ctx.pause();
      }
      rec.waits.push(spins);
      if (flipped) {
        for (const s of plan.slots) yield* ctx.store(s.address, 8, s.value);
        for (const s of plan.sites) yield* textPoke(ctx, s.address + 1, s.to.subarray(1));
        yield* sync();
        for (const s of plan.sites) yield* textPoke(ctx, s.address, s.to.subarray(0, 1));
        yield* sync();
        yield* ctx.store(LOCKOP.epoch, 4, 0);
        yield* dropRefs();
        for (const s of plan.sites) this.emulation.forget(s.address);
        this.guest.flavor = plan.to;
        rec.ok = true;
        rec.reason = 'switched';
        return true;
      }
      yield* ctx.store(LOCKOP.epoch, 4, 0);
      for (const s of plan.sites) yield* textPoke(ctx, s.address, s.from.subarray(0, 1));
      yield* sync();
      yield* dropRefs();
      for (const s of plan.sites) this.emulation.forget(s.address);
      if (attempt < maxRetries) {
        rec.retries++;
        yield* ctx.delay(this.o.retryDelay ?? 5000);
      }
    }
    return false;
  }

  /** The #BP handler while the lock-op INT3s are up. */
  private *handler(ctx: ServiceContext): ServiceBody {
    const c = ctx.cpu;
    const keepNmiBlocked = c.nmiBlocked; // a #BP in an NMI must not re-open NMIs with its IRET
    const frame = c.getAddr(Reg.RSP);
    const ip = (yield* ctx.load(frame, 8)) - 1;
    for (;;) { // atomic_inc_not_zero(&refs)
      const refs = yield* ctx.load(LOCKOP.refs, 4);
      if (refs === 0) throw new KernelBug(`vCPU ${c.id}: int3 at ${hexAddress(ip)} with no lock-op switch in progress`);
      if ((yield* ctx.cmpxchg(LOCKOP.refs, 4, refs, refs + 1)) === refs) break;
    }
    const site = this.current?.sites.get(ip);
    if (site === undefined) {
      yield* ctx.fetchAdd(LOCKOP.refs, 4, -1);
      throw new KernelBug(`vCPU ${c.id}: int3 at ${hexAddress(ip)}, which is not a lock-op site of the switch`);
    }
    this.stats.int3Hits++;
    if (keepNmiBlocked) this.stats.int3InNmi++;
    const epoch = yield* ctx.load(LOCKOP.epoch, 4);
    const counting = epoch !== 0 && (yield* ctx.load(lockopEpochAddress(c.id), 4)) === epoch;
    const lock = ctx.arg(0);
    let flipped: boolean, release = 0;
    if (counting && (site.slot === SLOWPATH || site.slot === UNLOCK)) {
      flipped = ((yield* ctx.fetchAdd(LOCKOP.word, 4, 1)) & FLIPPED) !== 0;
      const map = this.slowLocks[c.id]!;
      if (site.slot === SLOWPATH) {
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
    const bytes = flipped ? site.to : site.from;
    this.emulation.checkBytes(c.id, site.address, bytes);
    const next = site.address + bytes.length;
    const put = function* (): Generator<number, void, void> {
      if (release > 0) yield* ctx.fetchAdd(LOCKOP.word, 4, -release);
      yield* ctx.fetchAdd(LOCKOP.refs, 4, -1);
    };
    if (bytes[0] === 0xe8) {
      // int3_emulate_call(), returning past the site's NOP padding.
      const disp = bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16) | (bytes[4]! << 24);
      yield* ctx.store(frame, 8, site.address + 5 + disp);
      yield* put();
      return yield* ctx.iret({ push: next, keepNmiBlocked });
    }
    if (isNativeUnlock(bytes)) {
      yield* ctx.report(this.atomic.oracle.nativeUnlock(c.id, lock, site.address));
      yield* ctx.store(lock, 1, 0); // native_queued_spin_unlock: movb $0,(%rdi)
    } else if (!isNop(bytes)) {
      throw new KernelBug(`vCPU ${c.id}: no emulation for ${site.slot} bytes at ${hexAddress(site.address)}`);
    }
    yield* ctx.store(frame, 8, next);
    yield* put();
    return yield* ctx.iret({ keepNmiBlocked });
  }
}

/** The NOPs a paravirt_nop site holds (the 6-byte `nopw 0x0(%rax,%rax,1)`, or single-byte NOPs). */
function isNop(b: Uint8Array): boolean {
  const six = [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00];
  return (b.length === 6 && b.every((x, i) => x === six[i])) || b.every((x) => x === 0x90);
}

export interface LinuxV2Result {
  readonly ok: boolean;
  /** Every plan switched. */
  readonly switched: boolean;
  readonly run: RunResult;
  readonly locks: LinuxLockReport[];
  readonly lostWakeups: number[];
  readonly switches: readonly LinuxV2Switch[];
  readonly stats: LinuxV2Stats;
}

/** Switch along `plans` with v2 (native → PV → native is two), the hint changed at `atStep`. */
export function switchLinuxLockOpsV2(guest: LinuxGuest, plans: readonly LockOpSwitchPlan[], o: LinuxV2Options = {}): LinuxV2Result {
  const sw = new LinuxLockopV2(guest, plans, o);
  const m = guest.machine;
  let first: RunResult | undefined;
  if ((o.atStep ?? 0) > 0) {
    first = guest.run({ ...o.run, until: () => m.step >= o.atStep! });
    if (first.reason !== 'until' || first.hazards.length > 0 || m.step < o.atStep!) {
      return { ok: false, switched: false, run: first, locks: guest.checkLocks(), lostWakeups: [], switches: sw.switches, stats: sw.stats };
    }
  }
  sw.request();
  const rest = guest.run(o.run);
  const run = first === undefined ? rest : { ...rest, steps: rest.steps + first.steps, instructions: rest.instructions + first.instructions };
  const locks = guest.checkLocks();
  const lostWakeups = run.reason === 'all-halted' ? guest.lostWakeups() : [];
  const switched = sw.done === plans.length;
  const ok = switched && run.reason === 'until' && run.hazards.length === 0 && locks.every((l) => l.ok) && lostWakeups.length === 0;
  return { ok, switched, run, locks, lostWakeups, switches: sw.switches, stats: sw.stats };
}
