/**
 * The host changes KVM_HINTS_REALTIME while the guest runs, and the guest answers with one of the
 * three patching protocols (seed 000's scenario; DESIGN.md §5). The hint handler
 * (src/patching/trigger.ts) only posts the wanted flavour; the patcher vCPU acts on it at its next
 * lockop_checkpoint(), where it holds no lock:
 *
 *  - v2: the barrier design (src/patching/v2.ts) switches the four ops kvm_spinlock_init sets
 *    (vcpu_is_preempted stays kvm_guest_init's: LOCK_FLAVOR_OPS);
 *  - v1: stop_machine (src/kernel/stop-machine.ts) walks every site of those four ops through
 *    PATCH_SYNC_0/1/2;
 *  - text-poke-bp: text_poke_bp cannot switch the lock ops (the native unlock is not emulatable
 *    and the ops would change one at a time: test/patching/text-poke-bp.test.ts), so it does what
 *    it can at the same moment under the same load: it retargets every slowpath CALL to a second
 *    copy of the running flavour's slowpath, as a livepatch of queued_spin_lock_slowpath would.
 *
 * Every run is judged the same way: machine hazards (the atomic-switch oracle's included), kernel
 * BUGs, the lock counters, the tasks, and whether each requested switch finished.
 */
import type { Guest, GuestComponent, GuestSnapshot, LockReport } from '../kernel/guest.ts';
import type { RunOptions, RunResult } from '../machine/machine.ts';
import type { ServiceContext } from '../machine/service.ts';
import type { Hazard } from '../machine/events.ts';
import { SERVICE_BASE } from '../kernel/layout.ts';
import { LOCKOP, flavorOf } from '../kernel/lockop-barrier.ts';
import { PvOp, changingSites, directCall, patchBytes, unexpectedSite, type Flavor, type PatchSite } from '../kernel/pv-ops.ts';
import { StopMachineV1, STOP_MACHINE_SERVICE, type V1Hooks, type V1Stats } from '../kernel/stop-machine.ts';
import type { TextPokeBpSteps } from '../kernel/text-poke-steps.ts';
import { STOCK_PROTOCOLS, prepareOf, textPokeBpSteps, v1Hooks, v2Hooks, type Protocol } from './protocol-api.ts';
import type { PrepareHook } from './prepare.ts';
import { TextPokeBp, TEXT_POKE_SERVICE, type TextPokeStats } from '../kernel/text-poke.ts';
import { nativeSlowpath, pvSlowpath } from '../kernel/qspinlock-slowpath.ts';
import { GuestConfigError } from '../kernel/errors.ts';
import { installLockopV2, judgeV2, runSettled, switchVerdict, type LockopSwitcher } from './v2.ts';
import { preemptibleCheck } from './v1.ts';
import { judgePatchRun, patchRunReason, verdictFields } from './run-patcher.ts';
import type { Verdict } from '../kernel/verdict.ts';
import { installHintTrigger } from './trigger.ts';

export { SWITCH_PROTOCOLS, type SwitchProtocol } from './switch-protocols.ts';
import type { SwitchProtocol } from './switch-protocols.ts';

/** The second copy of the slowpath text_poke_bp retargets to (livepatch-style). */
export const LIVEPATCHED_SLOWPATH = SERVICE_BASE + 0x300;

/** One requested switch, whatever the protocol. */
export interface SwitchRecord {
  from: Flavor;
  /** The flavour asked for (text-poke-bp: unchanged, it retargets the slowpath instead). */
  to: Flavor;
  ok: boolean;
  reason: 'switched' | 'retargeted' | 'eagain' | 'unexpected-bytes' | 'unfinished';
  detail?: string;
  retries: number;
  int3Hits: number;
  /** Phases with the machine step and the patcher's clock (cycles). */
  phases: { phase: string; attempt: number; step: number; time: number }[];
}

export interface HintSwitchResult {
  protocol: SwitchProtocol;
  /** What the checks said; `ok`, `reason`, `detail`, `hazard` and `step` are derived from it. */
  verdict: Verdict;
  ok: boolean;
  reason: string;
  detail?: string;
  hazard?: Hazard;
  /** The flavour the guest runs on at the end. */
  flavor: Flavor;
  switches: SwitchRecord[];
  int3Hits: number;
  ipis: number;
  retries: number;
  /** v1: steps each vCPU spent stopped (v2 and text_poke_bp stop none). */
  stoppedSteps: number[];
  /** The violating step: the hazard's, else the step where the run ended and the checks ran. */
  step: number;
  /** The guest's counters when the hint changed, when the first switch ended, and at the end. */
  timeline: { atHint?: GuestSnapshot; switched?: GuestSnapshot; end: GuestSnapshot };
  run: RunResult;
  locks: LockReport[];
}

export interface HintSwitchOptions {
  patcherCpu?: number;
  /** v2: attempts after the first before -EAGAIN. */
  maxRetries?: number;
  /** A protocol of `protocol`'s kind with hooks overridden (src/patching/protocol-api.ts; a user's --protocol-file). */
  custom?: Protocol;
}

/** A protocol installed on a guest, waiting for the hint (it forks with the guest: Guest.fork). */
export interface HintSwitch extends GuestComponent {
  readonly protocol: SwitchProtocol;
  /** Switches that finished so far (for callers that change the hint again after each). */
  completed(): number;
  judge(run: RunResult): Omit<HintSwitchResult, 'timeline'>;
}

/** Install `protocol` and the hint handler that triggers it. The guest needs lockop checkpoints. */
export function installHintSwitch(guest: Guest, protocol: SwitchProtocol, o: HintSwitchOptions = {}): HintSwitch {
  if (!guest.host) throw new GuestConfigError('a hint-triggered switch needs platform kvm');
  if (!guest.workload.lockopCheckpoint) throw new GuestConfigError('a hint-triggered switch needs workload.lockopCheckpoint (where the patcher picks the request up)');
  const patcherCpu = o.patcherCpu ?? 0;
  if (patcherCpu < 0 || patcherCpu >= guest.machine.vcpus.length) throw new GuestConfigError(`no vCPU ${patcherCpu} to run the switch`);
  const custom = o.custom ?? STOCK_PROTOCOLS[protocol];
  if (custom.kind !== protocol) throw new GuestConfigError(`the protocol '${custom.name}' is a ${custom.kind} protocol, not ${protocol}`);
  const prepare = prepareOf(custom);
  let sw: HintSwitch;
  if (custom.kind === 'v2') {
    const v2 = installLockopV2(guest, { patcherCpu, prepare, ...(o.maxRetries !== undefined ? { maxRetries: o.maxRetries } : {}), ...(o.custom ? { hooks: v2Hooks(custom) } : {}) });
    sw = new V2AtCheckpoint(guest, v2);
  } else {
    sw = custom.kind === 'v1' ? new V1AtCheckpoint(guest, patcherCpu, prepare, v1Hooks(custom)) : new TextPokeBpAtCheckpoint(guest, patcherCpu, prepare, textPokeBpSteps(custom));
  }
  installHintTrigger(guest);
  return sw;
}

/**
 * Run the guest with `sw` installed: at step `atStep` the host grants or revokes the hint; run
 * until every task finished and every vCPU is back in its idle loop; judge.
 */
export function runHintSwitch(guest: Guest, sw: HintSwitch, at: { atStep: number; hint: 'revoke' | 'grant' }, opts: RunOptions = {}): HintSwitchResult {
  const host = guest.host!;
  let atHint: GuestSnapshot | undefined, switched: GuestSnapshot | undefined;
  const outer = opts.until;
  const run = runSettled(guest, {
    ...opts,
    // Besides the step of the hint, what this watches changes only in kernel services (the
    // switcher) and at HLTs: compiled blocks may run between its checks.
    untilCoarse: opts.until === undefined || opts.untilCoarse === true,
    untilAtStep: at.atStep,
    until: (m) => {
      if (atHint === undefined && m.step >= at.atStep) {
        atHint = guest.snapshot();
        host.setRealtimeHint(at.hint === 'grant');
      }
      if (switched === undefined && sw.completed() > 0) switched = guest.snapshot();
      return outer?.(m) ?? false;
    },
  });
  return { ...sw.judge(run), timeline: { ...(atHint ? { atHint } : {}), ...(switched ? { switched } : {}), end: guest.snapshot() } };
}

/** v2 on request: the switcher takes the request at its own checkpoint (src/patching/v2.ts). */
class V2AtCheckpoint implements HintSwitch {
  readonly protocol = 'v2';

  constructor(private readonly guest: Guest, private readonly v2: LockopSwitcher) {
    guest.install(this);
  }

  forkInto(fork: Guest): V2AtCheckpoint {
    return new V2AtCheckpoint(fork, fork.counterpart(this.v2));
  }

  completed(): number {
    let n = 0;
    for (const s of this.v2.switches) if (s.ok) n++;
    return n;
  }

  judge(run: RunResult): Omit<HintSwitchResult, 'timeline'> {
    const guest = this.guest, v2 = this.v2;
    const r = judgeV2(guest, v2, run);
    const switches: SwitchRecord[] = r.switches.map((s) => ({
      from: s.from, to: s.to, ok: s.ok, reason: s.reason, ...(s.detail ? { detail: s.detail } : {}),
      retries: s.retries, int3Hits: s.int3Hits, phases: s.phases,
    }));
    return {
      protocol: 'v2', verdict: r.verdict, ok: r.ok, reason: r.reason, ...(r.detail ? { detail: r.detail } : {}),
      ...(run.hazards[0] ? { hazard: run.hazards[0] } : {}),
      flavor: r.flavor, switches, int3Hits: r.int3Hits, ipis: v2.ipis, retries: r.retries,
      stoppedSteps: guest.machine.vcpus.map(() => 0), step: r.step, run, locks: r.locks,
    };
  }
}

/** What v1 and text_poke_bp share: taking the request at the patcher's checkpoint, the verdict. */
abstract class CheckpointPatcher implements HintSwitch {
  abstract readonly protocol: SwitchProtocol;
  flavor: Flavor;
  readonly switches: SwitchRecord[] = [];
  private busy = false;

  constructor(protected readonly guest: Guest, protected readonly patcherCpu: number, protected readonly prepare: PrepareHook) {
    this.flavor = guest.flavor;
    guest.lockopCheckpoint = (ctx) => this.checkpoint(ctx);
    guest.install(this);
  }

  abstract forkInto(fork: Guest): CheckpointPatcher;

  /** A fork's copy takes over what this one recorded. */
  protected copyStateInto<T extends CheckpointPatcher>(copy: T): T {
    copy.flavor = this.flavor;
    copy.switches.push(...structuredClone(this.switches));
    copy.busy = this.busy;
    return copy;
  }

  completed(): number {
    let n = 0;
    for (const s of this.switches) if (s.ok) n++;
    return n;
  }

  private *checkpoint(ctx: ServiceContext): Generator<number, void, void> {
    if (ctx.cpu.id !== this.patcherCpu || this.busy) return yield* ctx.work();
    const p = yield* ctx.load(LOCKOP.pending, 4);
    if (p === 0 || (yield* ctx.cmpxchg(LOCKOP.pending, 4, p, 0)) !== p) return;
    const to = flavorOf(p);
    if (to === undefined) return;
    this.busy = true;
    try {
      yield* this.patch(ctx, to);
    } finally {
      this.busy = false;
    }
  }

  /** Act on a request for `to` from the patcher's checkpoint. */
  protected abstract patch(ctx: ServiceContext, to: Flavor): Generator<number, void, void>;
  protected abstract get stats(): { int3Hits: number; ipis: number; stoppedSteps?: number[] };

  protected record(ctx: ServiceContext, to: Flavor): { rec: SwitchRecord; mark: (phase: string) => void } {
    const rec: SwitchRecord = { from: this.flavor, to, ok: false, reason: 'unfinished', retries: 0, int3Hits: 0, phases: [] };
    this.switches.push(rec);
    return { rec, mark: (phase) => rec.phases.push({ phase, attempt: 0, step: ctx.exec.step, time: ctx.cpu.time }) };
  }

  /** A site that does not hold the running flavour's bytes: record the refusal (nothing is written). */
  protected refuses(ctx: ServiceContext, rec: SwitchRecord, sites: readonly PatchSite[]): boolean {
    const wrong = unexpectedSite(ctx.exec.memory, sites, this.flavor, this.guest.image.targets);
    if (wrong === undefined) return false;
    rec.reason = 'unexpected-bytes';
    rec.detail = wrong;
    return true;
  }

  judge(run: RunResult): Omit<HintSwitchResult, 'timeline'> {
    const unfinished = this.switches.find((s) => s.reason === 'unfinished');
    const r = judgePatchRun(this.guest, run, unfinished === undefined);
    const refused = this.switches.find((s) => s.reason === 'unexpected-bytes');
    const verdict = switchVerdict(r.verdict, refused);
    const st = this.stats;
    return {
      protocol: this.protocol, verdict, ...verdictFields(verdict), reason: patchRunReason(verdict),
      flavor: this.flavor, switches: this.switches, int3Hits: st.int3Hits, ipis: st.ipis, retries: 0,
      stoppedSteps: st.stoppedSteps ?? this.guest.machine.vcpus.map(() => 0), run, locks: r.locks,
    };
  }
}

/** v1 on request: one stop_machine per switch, called from the patcher's checkpoint. */
class V1AtCheckpoint extends CheckpointPatcher {
  readonly protocol = 'v1';
  private readonly sm: StopMachineV1;

  constructor(guest: Guest, patcherCpu: number, prepare: PrepareHook, private readonly hooks: V1Hooks) {
    super(guest, patcherCpu, prepare);
    this.sm = new StopMachineV1(guest.machine, { primaryCpu: patcherCpu, preemptible: preemptibleCheck(guest), hooks });
  }

  forkInto(fork: Guest): V1AtCheckpoint {
    const copy = this.copyStateInto(new V1AtCheckpoint(fork, this.patcherCpu, this.prepare, this.hooks));
    copy.sm.copyStateFrom(this.sm);
    return copy;
  }

  protected get stats(): V1Stats {
    return this.sm.stats;
  }

  protected *patch(ctx: ServiceContext, to: Flavor): Generator<number, void, void> {
    if (to === this.flavor) return yield* ctx.work();
    const { rec, mark } = this.record(ctx, to);
    const { sites, targets } = this.guest.image;
    mark('start');
    if (this.refuses(ctx, rec, sites)) return yield* ctx.work();
    const hits0 = this.sm.stats.int3Hits;
    const from = this.flavor, hash = this.guest.env.hash;
    const changing = changingSites(sites, from, to, targets); // vcpu_is_preempted stays
    this.sm.queue({
      sites: changing.map((s) => ({ address: s.address, bytes: patchBytes(s, to, targets) })),
      prepare: (c) => this.prepare({ ctx: c, from, to, hash }),
      after: () => this.guest.writePvOps(to),
    });
    yield* ctx.call(STOP_MACHINE_SERVICE.primary);
    mark('done');
    rec.int3Hits = this.sm.stats.int3Hits - hits0;
    rec.ok = true;
    rec.reason = 'switched';
    this.flavor = to;
  }
}

/** text_poke_bp on request: retarget every slowpath CALL to the second slowpath copy. */
class TextPokeBpAtCheckpoint extends CheckpointPatcher {
  readonly protocol = 'text-poke-bp';
  private readonly tp: TextPokeBp;

  constructor(guest: Guest, patcherCpu: number, prepare: PrepareHook, private readonly steps: TextPokeBpSteps) {
    super(guest, patcherCpu, prepare);
    this.tp = new TextPokeBp(guest.machine, steps);
    const env = guest.env;
    const flavor = this.flavor;
    guest.machine.registerService(LIVEPATCHED_SLOWPATH, 'queued_spin_lock_slowpath_livepatched', (ctx) => (flavor === 'pv' ? pvSlowpath(ctx, env) : nativeSlowpath(ctx, env)));
  }

  forkInto(fork: Guest): TextPokeBpAtCheckpoint {
    const copy = this.copyStateInto(new TextPokeBpAtCheckpoint(fork, this.patcherCpu, this.prepare, this.steps));
    copy.tp.copyStateFrom(this.tp);
    copy.asked = this.asked;
    return copy;
  }

  protected get stats(): TextPokeStats {
    return this.tp.stats;
  }

  /** The flavour the last request asked for: every vCPU's hint handler posts the same request. */
  private asked: Flavor | undefined;

  protected *patch(ctx: ServiceContext, to: Flavor): Generator<number, void, void> {
    if (to === this.asked) return yield* ctx.work();
    this.asked = to;
    const { rec, mark } = this.record(ctx, to);
    const sites = this.guest.image.sites.filter((s) => s.type === PvOp.QueuedSpinLockSlowpath);
    mark('start');
    if (this.refuses(ctx, rec, sites)) return yield* ctx.work();
    // The retargeted CALLs reach a copy of the running flavour: that is what must be ready.
    yield* this.prepare({ ctx, from: this.flavor, to: this.flavor, hash: this.guest.env.hash });
    const hits0 = this.tp.stats.int3Hits;
    // One instruction per text_poke_loc: the CALL; the site's NOP padding stays.
    this.tp.queue(sites.map((s) => ({ address: s.address, bytes: directCall(s, LIVEPATCHED_SLOWPATH).subarray(0, 5) })));
    yield* ctx.call(TEXT_POKE_SERVICE.textPokeBpBatch);
    mark('done');
    rec.int3Hits = this.tp.stats.int3Hits - hits0;
    rec.ok = true;
    rec.reason = 'retargeted';
    rec.detail = `text_poke_bp cannot switch the lock ops; it retargeted ${sites.length} slowpath CALL${sites.length === 1 ? '' : 's'} to a second ${this.flavor} slowpath`;
  }
}
