/**
 * The v2 runtime switch of the four pv_lock_ops kvm_spinlock_init sets (LOCK_FLAVOR_OPS) (seed 001 "so now v2"; DESIGN.md §5), with no
 * stop_machine, while every vCPU keeps taking locks:
 *
 *  0. prepare what the new ops need (src/patching/prepare.ts: the PV lock hash on native -> PV);
 *  1. site-local barrier: an INT3 on the first byte of every `.parainstructions` site, sync; the
 *     INT3 handler (src/kernel/lockop-barrier.ts) emulates the OLD ops;
 *  2. global barrier: every vCPU passes lockop_checkpoint() — the task loop between iterations, or
 *     the idle loop — where it holds no lock, and starts counting (we chose a check point of the
 *     workload over an IPI: an IPI handler may land while its CPU holds a lock, and a Linux worker
 *     on each CPU is what the talk proposes);
 *  3. counted slowpath lock-ops: the handler adds one per slowpath entered and drops it at the
 *     matching unlock (a per-CPU map tells it from a fast-path unlock);
 *  4. when every vCPU passed and the count is zero, cmpxchg(word, 0, FLIPPED): from then on the
 *     handler emulates the NEW ops; write the new tails, sync, the new first bytes, sync, wait for
 *     in-flight handlers;
 *  5. when load keeps the barrier open past a budget, abort (-EAGAIN): put the old first bytes
 *     back, sync, wait for the handlers, and retry later, up to `maxRetries` times.
 *
 * The switch runs on `patcherCpu` from its own lockop_checkpoint(), when the trigger
 * (LOCKOP.pending: src/patching/trigger.ts's hint handler, or `request`) asks for a flavour.
 */
import type { Guest, GuestComponent, LockReport } from '../kernel/guest.ts';
import type { RunOptions, RunResult } from '../machine/machine.ts';
import type { ServiceContext } from '../machine/service.ts';
import { DATA, DATA_BASE, VECTOR, stackTop } from '../kernel/layout.ts';
import { Reg } from '../x86/registers.ts';
import { TextPokeBp, textPoke, textPokeSync } from '../kernel/text-poke.ts';
import { FLAVOR_CODE, LOCKOP, LOCKOP_SERVICE, LockopBarrier, flavorOf, type LockopPhase } from '../kernel/lockop-barrier.ts';
import { PV_OPS, changingSites, patchBytes, unexpectedSite, type Flavor } from '../kernel/pv-ops.ts';
import { pvOpsTable } from '../kernel/paravirt.ts';
import { GuestConfigError } from '../kernel/errors.ts';
import { judgeGuestRun } from '../kernel/judge.ts';
import { violation, type Verdict } from '../kernel/verdict.ts';
import { hazardName } from '../machine/events.ts';
import { v2NoBarrierHooks } from './broken.ts';
import { V2_HOOKS, type V2Hooks } from './v2-hooks.ts';
import { PREPARE, type PrepareHook } from './prepare.ts';

export { V2_HOOKS, type V2Flip, type V2Hooks } from './v2-hooks.ts';

export interface V2Options {
  /** The vCPU that runs the switch from its checkpoint (default 0). */
  patcherCpu?: number;
  /** Barrier budget per attempt, in cpu_relax() iterations of the patcher (default 20000). */
  maxWaitSpins?: number;
  /** Attempts after the first one before giving up with -EAGAIN (default 3). */
  maxRetries?: number;
  /** udelay() cycles between an abort and the next attempt (default 5000). */
  retryDelay?: number;
  /**
   * Negative controls (DESIGN.md §5 broken variants): 'no-map' drops a count at every unlock
   * (no per-CPU slowpath map); 'no-barrier' switches on a zero count without waiting for every
   * vCPU to pass the global barrier.
   */
  broken?: 'no-map' | 'no-barrier';
  /** The steps' hooks (default V2_HOOKS; 'no-barrier' overrides flipCondition). */
  hooks?: V2Hooks;
  /** Run before the first INT3 of a switch (default PREPARE: the PV lock hash for a switch to PV). */
  prepare?: PrepareHook;
}

export type V2PhaseName = LockopPhase;

export interface V2Phase {
  phase: V2PhaseName;
  attempt: number;
  /** Machine step and the patcher's clock when the phase was reached. */
  step: number;
  time: number;
}

/** One requested switch: its attempts, and how it ended. */
export interface V2Switch {
  from: Flavor;
  to: Flavor;
  ok: boolean;
  /**
   * switched; eagain (every attempt aborted under load: the guest stays on `from`); or
   * unexpected-bytes (a site did not hold `from`'s bytes: nothing was written, see `detail`).
   */
  reason: 'switched' | 'eagain' | 'unexpected-bytes';
  detail?: string;
  retries: number;
  int3Hits: number;
  /** The patcher's spins waiting on the barrier, per attempt. */
  waits: number[];
  phases: V2Phase[];
}

const EAGAIN = -11;
const EINVAL = -22;

/** The v2 switcher of one guest: the INT3 handler, the checkpoint, the patcher. */
export class LockopSwitcher implements GuestComponent {
  flavor: Flavor;
  readonly switches: V2Switch[] = [];
  private readonly tp: TextPokeBp;
  readonly barrier: LockopBarrier;
  readonly patcherCpu: number;
  private readonly maxWaitSpins: number;
  private readonly maxRetries: number;
  private readonly retryDelay: number;
  private readonly sync = { syncs: 0, ipis: 0 };
  private busy = false;
  private readonly hooks: V2Hooks;

  constructor(readonly guest: Guest, private readonly opts: V2Options = {}) {
    if (!guest.workload.lockopCheckpoint) throw new GuestConfigError('the v2 lock-op switch needs workload.lockopCheckpoint (its global barrier)');
    const m = guest.machine;
    this.flavor = guest.flavor;
    this.patcherCpu = opts.patcherCpu ?? 0;
    if (this.patcherCpu < 0 || this.patcherCpu >= m.vcpus.length) throw new GuestConfigError(`no vCPU ${this.patcherCpu} to run the switch`);
    this.maxWaitSpins = opts.maxWaitSpins ?? 20000;
    this.maxRetries = opts.maxRetries ?? 3;
    this.retryDelay = opts.retryDelay ?? 5000;
    this.hooks = opts.broken === 'no-barrier' ? v2NoBarrierHooks() : opts.hooks ?? V2_HOOKS;
    this.barrier = new LockopBarrier(guest.image.sites, guest.image.targets, m.vcpus.length, opts.broken === 'no-map' ? 'no-map' : undefined,
      (cpu, lock, address) => guest.atomicSwitch.nativeUnlock(cpu, lock, address));
    this.tp = new TextPokeBp(m); // do_sync_core on the SYNC vector (text_poke_sync's IPI)
    m.registerService(LOCKOP_SERVICE.int3Handler, 'lockop_int3_handler', (ctx) => this.barrier.handler(ctx));
    m.setIdt(VECTOR.BP, LOCKOP_SERVICE.int3Handler);
    guest.lockopCheckpoint = (ctx) => this.checkpoint(ctx);
    guest.install(this);
  }

  forkInto(fork: Guest): LockopSwitcher {
    const sw = new LockopSwitcher(fork, this.opts);
    sw.flavor = this.flavor;
    sw.switches.push(...structuredClone(this.switches));
    sw.barrier.copyStateFrom(this.barrier);
    sw.tp.copyStateFrom(this.tp);
    Object.assign(sw.sync, this.sync);
    sw.busy = this.busy;
    return sw;
  }

  /** Ask for `to` from outside the guest (what the hint handler does from inside). */
  request(to: Flavor): void {
    this.guest.machine.memory.writeBytes(LOCKOP.pending, [FLAVOR_CODE[to], 0, 0, 0]);
  }

  /** SYNC IPIs sent by every switch so far (one per other vCPU per text_poke_sync). */
  get ipis(): number {
    return this.sync.ipis;
  }

  /** Switches that ended, and INT3 hits and retries over all of them. */
  get int3Hits(): number {
    return this.barrier.stats.int3Hits;
  }

  /** lockop_checkpoint(): this CPU holds no lock here. */
  private *checkpoint(ctx: ServiceContext): Generator<number, void, void> {
    if (ctx.cpu.id === this.patcherCpu && !this.busy) {
      const p = yield* ctx.load(LOCKOP.pending, 4);
      if (p !== 0 && (yield* ctx.cmpxchg(LOCKOP.pending, 4, p, 0)) === p) {
        const to = flavorOf(p);
        if (to !== undefined && to !== this.flavor) {
          this.busy = true;
          try {
            yield* this.switchTo(ctx, to);
          } finally {
            this.busy = false;
          }
        }
      }
    }
    yield* this.hooks.barrierPoint(ctx, () => this.barrier.pass(ctx));
  }

  private *switchTo(ctx: ServiceContext, to: Flavor): Generator<number, number, void> {
    const from = this.flavor;
    const n = this.guest.machine.vcpus.length;
    const { targets } = this.guest.image;
    // Only the sites of ops that change (vcpu_is_preempted stays: LOCK_FLAVOR_OPS); the refusal
    // below still checks every site.
    const sites = changingSites(this.guest.image.sites, from, to, targets);
    const oldBytes = sites.map((s) => patchBytes(s, from, targets));
    const newBytes = sites.map((s) => patchBytes(s, to, targets));
    const hits0 = this.barrier.stats.int3Hits;
    const rec: V2Switch = { from, to, ok: false, reason: 'eagain', retries: 0, int3Hits: 0, waits: [], phases: [] };
    this.switches.push(rec);
    let attempt = 0;
    const mark = (phase: V2PhaseName) => rec.phases.push({ phase, attempt, step: ctx.exec.step, time: ctx.cpu.time });
    // Refuse a site that does not hold the old bytes (another patcher was there): write nothing.
    const wrong = unexpectedSite(ctx.exec.memory, this.guest.image.sites, from, targets);
    if (wrong !== undefined) {
      mark('start');
      rec.reason = 'unexpected-bytes';
      rec.detail = wrong;
      yield* ctx.work();
      return EINVAL;
    }
    // What the new ops need before any can run (the PV lock hash: src/patching/prepare.ts).
    yield* (this.opts.prepare ?? PREPARE)({ ctx, from, to, hash: this.guest.env.hash });
    const table = pvOpsTable(to, targets), before = pvOpsTable(from, targets);
    const flipped = yield* this.barrier.attempts(ctx, {
      sites: sites.map((s, i) => ({ address: s.address, old: oldBytes[i]!, new: newBytes[i]! })),
      sync: () => textPokeSync(ctx, n, this.sync),
      poke: (address, bytes) => textPoke(ctx, address, bytes),
      flipCondition: () => this.hooks.flipCondition({ ctx, nCpus: n }),
      // The flavours the handler emulates (LockopBarrier reads them at every INT3).
      *publish() {
        yield* ctx.store(LOCKOP.from, 4, FLAVOR_CODE[from]);
        yield* ctx.store(LOCKOP.to, 4, FLAVOR_CODE[to]);
      },
      *writeSlots() {
        for (const op of PV_OPS) if (table.get(op) !== before.get(op)) yield* ctx.store(DATA_BASE + DATA.pvOps + 8 * op, 8, table.get(op)!);
      },
      maxWaitSpins: this.maxWaitSpins, maxRetries: this.maxRetries, retryDelay: this.retryDelay,
      mark: (phase, at) => {
        attempt = at;
        mark(phase);
      },
    }, rec);
    rec.int3Hits = this.barrier.stats.int3Hits - hits0;
    if (!flipped) return EAGAIN;
    this.flavor = to;
    rec.ok = true;
    rec.reason = 'switched';
    return 0;
  }
}

/** Install the v2 switcher on a booted guest (once per guest). */
export function installLockopV2(guest: Guest, opts: V2Options = {}): LockopSwitcher {
  return new LockopSwitcher(guest, opts);
}

export type V2Reason = 'ok' | 'eagain' | 'unexpected-bytes' | 'hazard' | 'kernel-bug' | 'broken-lock' | 'all-halted' | 'unfinished';

export interface V2Result {
  /** What the checks said; `ok`, `reason`, `detail` and `step` are derived from it. */
  verdict: Verdict;
  ok: boolean;
  reason: V2Reason;
  detail?: string;
  /** The flavour the guest runs on at the end. */
  flavor: Flavor;
  switches: V2Switch[];
  int3Hits: number;
  /** Slowpath entries the INT3 handler counted (barrier passed) and their matching unlocks. */
  counted: number;
  uncounted: number;
  retries: number;
  /** The violating step: the hazard's, else the step where the run ended and the checks ran. */
  step: number;
  run: RunResult;
  locks: LockReport[];
}

/** A v2 run's reason for its Verdict (the names V2Result has always used). */
export function v2Reason(v: Verdict): V2Reason {
  if (v.ok) return 'ok';
  switch (v.check) {
    case 'hazard': return 'hazard';
    case 'int3-bug':
    case 'kernel-bug': return 'kernel-bug';
    case 'broken-lock': return 'broken-lock';
    case 'lost-wakeup': return 'all-halted';
    case 'unexpected-bytes': return 'unexpected-bytes';
    case 'switch-aborted': return 'eagain';
    default: return 'unfinished';
  }
}

/** The guest's verdict, then the last requested switch's: refused, or given up under load. */
export function switchVerdict(v: Verdict, last: { ok: boolean; reason: string; from: Flavor; to: Flavor; detail?: string; retries: number } | undefined): Verdict {
  if (!v.ok || last === undefined || last.ok) return v;
  return last.reason === 'unexpected-bytes'
    ? violation('unexpected-bytes', v.step, `${last.from} -> ${last.to} refused: ${last.detail}`)
    : violation('switch-aborted', v.step, `${last.from} -> ${last.to}: ${last.retries} retries, the barrier stayed open under load`);
}

/** Judge a run of a guest with a switcher: the guest's checks (src/kernel/judge.ts), then the switch. */
export function judgeV2(guest: Guest, sw: LockopSwitcher, run: RunResult): V2Result {
  const j = judgeGuestRun(guest, run);
  const verdict = switchVerdict(j.verdict, sw.switches[sw.switches.length - 1]);
  return {
    verdict, ok: verdict.ok, reason: v2Reason(verdict), ...(verdict.ok ? {} : { detail: verdict.hazard ? hazardName(verdict.hazard) : verdict.message }),
    flavor: sw.flavor, switches: sw.switches, int3Hits: sw.int3Hits,
    counted: sw.barrier.stats.counted, uncounted: sw.barrier.stats.uncounted,
    retries: sw.switches.reduce((a, s) => a + s.retries, 0), run, locks: j.locks, step: verdict.step,
  };
}

/**
 * Run the guest until every task finishes, then on until every vCPU is back in its idle HLT
 * (stack empty): the run may end with a vCPU inside an IRQ or NMI handler's critical section,
 * whose counter is already incremented but not yet its per-CPU acquisition count.
 */
export function runSettled(guest: Guest, opts: RunOptions = {}): RunResult {
  const run = guest.run(opts);
  if (!guest.tasksDone || run.reason === 'hazard' || run.error !== undefined) return run;
  const idle = (m: Guest['machine']) => m.vcpus.every((c) => c.halted && c.getAddr(Reg.RSP) === stackTop(c.id));
  if (idle(guest.machine)) return run;
  const rest = guest.machine.run({ ...(opts.chooser ? { chooser: opts.chooser } : {}), maxInstructions: 1_000_000, until: idle, untilCoarse: true });
  if (rest.reason === 'hazard' || rest.error !== undefined) return rest;
  return run;
}

/**
 * switchLockOpsV2(): install the switcher, ask for `to` and run the guest until every task
 * finishes; the switch happens on `patcherCpu` while every vCPU takes locks.
 */
export function switchLockOpsV2(guest: Guest, to: Flavor, opts: V2Options & { run?: RunOptions } = {}): V2Result {
  const sw = installLockopV2(guest, opts);
  sw.request(to);
  const run = runSettled(guest, opts.run ?? {});
  return judgeV2(guest, sw, run);
}
