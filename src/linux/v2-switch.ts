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
 * (__pv_init_lock_hash is __init: a native boot never allocated it). Steps 1-5 and the handler are
 * src/kernel/lockop-barrier.ts's LockopBarrierCore, the one the imitation's v2 runs too; this file
 * gives it the real sites, their bytes, the pv_ops slots and the real-code oracle.
 */
import type { RunOptions, RunResult } from '../machine/machine.ts';
import type { ServiceContext } from '../machine/service.ts';
import { VECTOR } from '../kernel/layout.ts';
import { TextPokeBp, textPoke, textPokeSync } from '../kernel/text-poke.ts';
import { LOCKOP, LOCKOP_SERVICE, LockopBarrierCore, type LockopSiteView } from '../kernel/lockop-barrier.ts';
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
  readonly atomic: LinuxAtomicSwitch;
  /** The barrier the imitation's v2 uses too (src/kernel/lockop-barrier.ts): counting, emulation, attempts. */
  readonly barrier: LockopBarrierCore;
  private readonly sync = { syncs: 0, ipis: 0 };
  private readonly hooks: V2Hooks;
  private readonly patcherCpu: number;
  /** The plan whose INT3s may be up (the handler's table of old and new bytes). */
  private current: { plan: LockOpSwitchPlan; sites: Map<number, LockOpSitePatch> } | undefined;
  private next = 0;
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
    this.atomic = new LinuxAtomicSwitch(guest);
    this.barrier = new LockopBarrierCore(m.vcpus.length, lockopEpochAddress, (cpu, lock, address) => this.atomic.oracle.nativeUnlock(cpu, lock, address));
    new TextPokeBp(m); // do_sync_core on the SYNC vector (text_poke_sync's IPI)
    m.registerService(LOCKOP_SERVICE.int3Handler, 'lockop_int3_handler', (ctx) => this.barrier.handler(ctx, (_c, ip) => this.site(ip)));
    m.setIdt(VECTOR.BP, LOCKOP_SERVICE.int3Handler);
    guest.lockopCheckpoint = (ctx) => this.checkpoint(ctx);
  }

  /** The host changed the hint: the patcher switches at its next checkpoint. */
  request(): void {
    this.guest.machine.memory.writeBytes(LOCKOP.pending, [1, 0, 0, 0]);
  }

  get stats(): LinuxV2Stats {
    return this.barrier.stats;
  }

  /** The emulation oracle (the barrier's). */
  get emulation(): LockopBarrierCore['emulation'] {
    return this.barrier.emulation;
  }

  /** The site of the switch in progress at `ip`, as the barrier's handler sees it (no guest state to load). */
  private *site(ip: number): Generator<number, LockopSiteView | undefined, void> {
    const site = this.current?.sites.get(ip);
    if (site === undefined) return undefined;
    const kind = site.slot === SLOWPATH ? 'slowpath' : site.slot === UNLOCK ? 'unlock' : 'other';
    return { address: site.address, len: site.from.length, kind, bytes: (flipped) => (flipped ? site.to : site.from) };
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
    yield* this.hooks.barrierPoint(ctx, () => this.barrier.pass(ctx));
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
    const flipped = yield* this.barrier.attempts(ctx, {
      sites: plan.sites.map((s) => ({ address: s.address, old: s.from, new: s.to })),
      sync: () => textPokeSync(ctx, n, this.sync),
      poke: (address, bytes) => textPoke(ctx, address, bytes),
      flipCondition: () => this.hooks.flipCondition({ ctx, nCpus: n }),
      *writeSlots() {
        for (const s of plan.slots) yield* ctx.store(s.address, 8, s.value);
      },
      maxWaitSpins: this.o.maxWaitSpins ?? 20000, maxRetries: this.o.maxRetries ?? 3, retryDelay: this.o.retryDelay ?? 5000,
    }, rec);
    if (!flipped) return false;
    this.guest.flavor = plan.to;
    rec.ok = true;
    rec.reason = 'switched';
    return true;
  }
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
