/**
 * `npm run bench -- switch`: what switching the lock-op sites of a running guest costs, for v1
 * (stop_machine, src/patching/v1.ts), v2 (barriers, src/patching/v2.ts) and text_poke_bp
 * (src/patching/text-poke-bp.ts), on 4, 16 and 64 vCPUs and 10, 100 and 1,000 sites, timed
 * strategy (simulated time from src/sched/cost-model.ts).
 *
 * Every vCPU runs a light lock load (two task locks, 100 ns critical sections, 10 µs think time,
 * the IRQ lock every 4th iteration). At the first lockop_checkpoint() of vCPU 0 after REQUEST_AT
 * (a point where it holds no lock: where v2's trigger is picked up, and where stop_machine's caller
 * may sleep) the protocol starts; once it is done, each vCPU finishes its current iteration and the
 * guest settles, and the run is judged (hazards, lock counters, every site's final bytes).
 *
 * Sites: the image's live lock-op sites plus `extraSites` cold ones (src/kernel/image.ts) so the
 * totals are 10, 100 and 1,000. v1 and v2 switch the four lock ops native → PV. text_poke_bp cannot
 * switch the lock ops (the native unlock `movb $0,(%rdi)` cannot be emulated, and the ops would
 * change one at a time: test/patching/text-poke-bp.test.ts), so on a PV guest it rewrites the same
 * number of sites from one CALL to another: the live slowpath site to a second copy of the PV
 * slowpath, the other live sites to the CALL they hold (the batch costs the same whatever the
 * target), the cold sites to the native function of their op. Its batches hold TP_VEC_MAX sites
 * (256, as Linux 6.x: PAGE_SIZE / sizeof(struct text_poke_loc)), one batch after another.
 *
 * Stopped time is stop_machine's (V1Stats.stoppedCycles: a secondary from joining the stop to
 * PATCH_DONE, the primary its IRQs-off window); v2 and text_poke_bp have no such state and report
 * 0. What they do cost the other vCPUs is measured for all three alike: the time spent in the
 * protocol's INT3, sync-IPI and stop handlers, and the longest unbroken stretch there (`hold`).
 * No NMIs or IRQs are injected, so no v1 INT3 is ever met (only an NMI handler could reach one
 * while the others are stopped); v2's and text_poke_bp's are met by the running lock load.
 */
import cliProgress from 'cli-progress';
import { Guest } from '../src/kernel/guest.ts';
import { TimedChooser } from '../src/sched/timed.ts';
import { CYCLES_PER_NS } from '../src/sched/cost-model.ts';
import { SERVICE_BASE } from '../src/kernel/layout.ts';
import { PvOp, changingSites, directCall, patchBytes, type Flavor, type PatchSite } from '../src/kernel/pv-ops.ts';
import { PREPARE } from '../src/patching/prepare.ts';
import { pvSlowpath } from '../src/kernel/qspinlock-slowpath.ts';
import { StopMachineV1, STOP_MACHINE_SERVICE } from '../src/kernel/stop-machine.ts';
import { TextPokeBp, TEXT_POKE_SERVICE } from '../src/kernel/text-poke.ts';
import { TP_VEC_MAX, type TextPatch } from '../src/kernel/text-poke-loc.ts';
import { preemptibleCheck } from '../src/patching/v1.ts';
import { installLockopV2, judgeV2, runSettled } from '../src/patching/v2.ts';
import { runAndJudge } from '../src/patching/run-patcher.ts';
import type { ServiceContext, ServiceFactory } from '../src/machine/service.ts';
import { ActionKind, type CostClass } from '../src/machine/chooser.ts';
import type { Vcpu } from '../src/machine/vcpu.ts';
import { Reg } from '../src/x86/registers.ts';
import { Prng } from '../src/sched/prng.ts';
import { SERVICE, buildImage } from '../src/kernel/image.ts';
import { DEFAULT_SEEDS, cell, seedList, spread, type Spread } from './spread.ts';

export const describe = 'lock-op switch cost: v1, v2, text_poke_bp on 4/16/64 vCPUs × 10/100/1,000 sites (simulated latency, stopped time, INT3s, IPIs, retries)';

export type Protocol = 'v1' | 'v2' | 'text_poke_bp';
export const PROTOCOLS: readonly Protocol[] = ['v1', 'v2', 'text_poke_bp'];
const VCPUS = [4, 16, 64];
const SITES = [10, 100, 1000];
const QUICK = { vcpus: [4], sites: [10, 100] };

const FROM: Flavor = 'native';
const TO: Flavor = 'pv';
const PATCHER = 0;
/** The protocol starts at vCPU 0's first checkpoint after 20 µs (every vCPU is in its loop by then). */
const REQUEST_AT = 20_000 * CYCLES_PER_NS;
const US = 1000 * CYCLES_PER_NS;
const SEED = 1;
/** A second copy of __pv_queued_spin_lock_slowpath for text_poke_bp to retarget the live slowpath site to (as a livepatch would). */
const PV_SLOWPATH_COPY = SERVICE_BASE + 0x200;

/** The light lock load every vCPU runs through the switch (iterations: until told to stop). */
export const SWITCH_WORKLOAD = {
  iterations: 1e9, criticalLoops: 0, thinkLoops: 0, criticalCycles: 100 * CYCLES_PER_NS, thinkCycles: 10_000 * CYCLES_PER_NS,
  taskLocks: 2, irqLockEvery: 4, lockopCheckpoint: true,
} as const;

/** The handlers a protocol runs on the other vCPUs (service names): their time is what it costs them. */
const HANDLERS: Record<Protocol, readonly string[]> = {
  v1: ['multi_cpu_stop', 'poke_int3_native'],
  v2: ['lockop_int3_handler', 'do_sync_core'],
  text_poke_bp: ['poke_int3_handler', 'do_sync_core'],
};

export interface SwitchRow {
  protocol: Protocol;
  /** What the protocol did to the sites. */
  transformation: string;
  vcpus: number;
  /** Lock-op sites in the image, all of which the protocol rewrote. */
  sites: number;
  /** From the patcher starting the protocol to its end (simulated µs). */
  latency_us: number;
  /** Time each vCPU spent stopped (stop_machine: IRQs off, not running its own work): min, max and sum over vCPUs. */
  stopped_us_min: number;
  stopped_us_max: number;
  stopped_us_total: number;
  /** Time the other vCPUs spent in the protocol's handlers (INT3, sync IPI, stop loop), summed. */
  handler_us_total: number;
  /** The longest time one other vCPU spent without a break in those handlers. */
  hold_us_max: number;
  int3_hits: number;
  /** IPIs the protocol sent (one per target vCPU). */
  ipis: number;
  /** Times the patcher waited for every other vCPU: v1's stop + one acknowledgement per state, text_poke_sync() calls otherwise. */
  sync_rounds: number;
  /** text_poke_bp batches (TP_VEC_MAX sites each); 1 stop_machine for v1, 1 switch for v2. */
  batches: number;
  /** v2 barrier aborts that were retried (0 for the others). */
  retries: number;
  /** No hazard, every lock counter right, every task done, every site's final bytes right. */
  ok: boolean;
  /** Simulation steps and wall-clock seconds of the run. */
  steps: number;
  wall_s: number;
}

/** TimedChooser that also charges each step of another vCPU spent in the protocol's handlers. */
class HandlerClock extends TimedChooser {
  readonly cycles: number[];
  readonly longest: number[];
  private readonly since: number[];
  constructor(n: number, private readonly handlers: ReadonlySet<string>, private readonly patcher: number, seed: number) {
    super({ seed });
    this.cycles = Array(n).fill(0);
    this.longest = Array(n).fill(0);
    this.since = Array(n).fill(-1);
  }

  override observe(c: Vcpu, kind: ActionKind, cost: CostClass): void {
    const before = c.time;
    super.observe(c, kind, cost);
    if (kind !== ActionKind.Step || c.id === this.patcher) return;
    const frames = c.serviceFrames;
    const top = frames[frames.length - 1];
    const i = c.id;
    if (top !== undefined && this.handlers.has(top.name)) {
      this.cycles[i]! += c.time - before;
      if (this.since[i]! < 0) this.since[i] = before;
      this.longest[i] = Math.max(this.longest[i]!, c.time - this.since[i]!);
    } else this.since[i] = -1;
  }
}

/** IPIs sent to other vCPUs and broadcasts (text_poke_sync, the STOP IPI), counted at the sender's APIC. */
function countIpis(g: Guest): { ipis: number; broadcasts: number } {
  const m = g.machine, n = m.vcpus.length;
  const count = { ipis: 0, broadcasts: 0 };
  const send = m.sendIpi.bind(m);
  m.sendIpi = (from, icr, dest) => {
    const shorthand = (icr >>> 18) & 3; // SDM Vol. 3 11.6.1: 0 none, 1 self, 2 all, 3 all but self
    if (shorthand >= 2) { count.ipis += n - 1; count.broadcasts++; }
    else if (shorthand === 0 && dest !== from) count.ipis++;
    send(from, icr, dest);
  };
  return count;
}

/**
 * lockop_checkpoint() for the bench: on vCPU 0, the first time after REQUEST_AT, `start` runs the
 * protocol; once `done()`, every vCPU makes its current iteration its last (r13 = iterations left).
 */
function benchCheckpoint(g: Guest, start: (ctx: ServiceContext) => Generator<number, void, void>, done: () => boolean): void {
  const inner: ServiceFactory | undefined = g.lockopCheckpoint;
  let started = false;
  g.lockopCheckpoint = function* (ctx: ServiceContext) {
    const c = ctx.cpu;
    if (!started && c.id === PATCHER && c.time >= REQUEST_AT) {
      started = true;
      yield* start(ctx);
    }
    if (done() && c.getReg64(Reg.R13) > 1n) c.setReg64(Reg.R13, 1n);
    return yield* (inner ? inner(ctx) : ctx.work());
  };
}

/**
 * The guest's udelay() is one step, and interrupts land between steps: a 10 µs think time would
 * hold a sync or STOP IPI for up to 10 µs, which a real CPU (IRQs on while it works) takes within
 * its interrupt latency. The bench's guests run udelay() as UDELAY_CHUNK steps, same jitter rule.
 */
const UDELAY_CHUNK = 100 * CYCLES_PER_NS;
const UDELAY_JITTER = 0.5;

function interruptibleUdelay(g: Guest, seed: number): void {
  const rng = new Prng(seed);
  const udelay: ServiceFactory = function* (ctx) {
    let left = Math.round(ctx.arg(0) * (1 + UDELAY_JITTER * (2 * rng.float() - 1)));
    while (left > 0) {
      const d = Math.min(left, UDELAY_CHUNK);
      yield* ctx.delay(d);
      left -= d;
    }
  };
  g.machine.services.set(SERVICE.udelay, { name: 'udelay', factory: udelay });
}

function bootGuest(vcpus: number, sites: number, flavor: Flavor, seed: number): Guest {
  const base = buildImage(SWITCH_WORKLOAD, 'vmcall', 'linux', 'pv').sites.length; // the live sites
  if (sites < base) throw new Error(`the image has ${base} live lock-op sites; cannot measure ${sites}`);
  const g = new Guest({ vcpus, flavor, seed, delayJitter: UDELAY_JITTER, workload: { ...SWITCH_WORKLOAD, extraSites: sites - base } });
  interruptibleUdelay(g, seed);
  return g;
}

function sitesEqual(g: Guest, bytesOf: (s: PatchSite) => ArrayLike<number>): boolean {
  return g.image.sites.every((s) => {
    const want = bytesOf(s);
    const have = g.machine.memory.readBytes(s.address, want.length);
    return Array.from(have).every((b, i) => b === want[i]);
  });
}

interface Measured {
  latency: number;
  stopped: number[];
  int3Hits: number;
  ipis: number;
  syncRounds: number;
  batches: number;
  retries: number;
  ok: boolean;
  detail: string;
  steps: number;
}

const MAX_INSTRUCTIONS = 100_000_000;
/** v2's default: three more attempts after an abort (the last one's INT3s removed = -EAGAIN). */
const V2_MAX_RETRIES = 3;

function runV1(g: Guest, chooser: TimedChooser): Measured {
  const ipis = countIpis(g);
  const sm = new StopMachineV1(g.machine, { primaryCpu: PATCHER, preemptible: preemptibleCheck(g) });
  sm.queue({
    sites: changingSites(g.image.sites, g.flavor, TO, g.image.targets).map((s) => ({ address: s.address, bytes: patchBytes(s, TO, g.image.targets) })),
    prepare: (ctx) => PREPARE({ ctx, from: g.flavor, to: TO, hash: g.env.hash }),
    after: () => g.writePvOps(TO),
  });
  let t0 = 0, t1 = -1;
  benchCheckpoint(g, function* (ctx) {
    t0 = ctx.cpu.time;
    yield* ctx.call(STOP_MACHINE_SERVICE.primary); // stop_machine(): returns after PATCH_DONE
    t1 = ctx.cpu.time;
  }, () => t1 >= 0);
  const r = runAndJudge(g, () => sm.stats.done === 1, { chooser, record: false, maxInstructions: MAX_INSTRUCTIONS });
  const textOk = sitesEqual(g, (s) => patchBytes(s, TO, g.image.targets));
  if (ipis.ipis !== sm.stats.ipis) throw new Error(`v1: ${ipis.ipis} IPIs at the APIC, ${sm.stats.ipis} counted by stop_machine`);
  return {
    latency: t1 - t0, stopped: sm.stats.stoppedCycles, int3Hits: sm.stats.int3Hits, ipis: ipis.ipis,
    syncRounds: 1 + 4 * g.image.sites.length, batches: 1, retries: 0,
    ok: r.ok && textOk, detail: r.ok ? (textOk ? '' : 'a site does not hold its PV bytes') : `${r.reason} ${r.detail ?? ''}`, steps: r.run.steps,
  };
}

function runV2(g: Guest, chooser: TimedChooser): Measured {
  const ipis = countIpis(g);
  const sw = installLockopV2(g, { patcherCpu: PATCHER, maxRetries: V2_MAX_RETRIES });
  benchCheckpoint(g, function* (ctx) {
    sw.request(TO); // picked up by the switcher's checkpoint, which runs next on this vCPU
    yield* ctx.work();
  }, () => sw.switches[0]?.phases.some((p) => p.phase === 'done' || (p.phase === 'int3-removed' && p.attempt === V2_MAX_RETRIES)) ?? false);
  const run = runSettled(g, { chooser, record: false, maxInstructions: MAX_INSTRUCTIONS });
  const r = judgeV2(g, sw, run);
  const s = sw.switches[0];
  const at = (phase: string) => s?.phases.find((p) => p.phase === phase)?.time ?? NaN;
  const textOk = sitesEqual(g, (x) => patchBytes(x, TO, g.image.targets));
  return {
    latency: at('done') - at('start'), stopped: g.machine.vcpus.map(() => 0), int3Hits: r.int3Hits, ipis: ipis.ipis,
    syncRounds: ipis.broadcasts, batches: 1, retries: r.retries,
    ok: r.ok && r.flavor === TO && textOk, detail: r.ok ? (textOk ? '' : 'a site does not hold its PV bytes') : `${r.reason} ${r.detail ?? ''}`, steps: run.steps,
  };
}

/** text_poke_bp's CALL → CALL rewrite of every site of a PV guest (see the file comment). */
function callRewrite(g: Guest): TextPatch[] {
  const cold = g.image.symbols.get('cold_lock_sites') ?? Infinity;
  const { native, pv } = g.image.targets;
  return g.image.sites.map((s) => {
    const target = s.address >= cold ? native[s.type] : s.type === PvOp.QueuedSpinLockSlowpath ? PV_SLOWPATH_COPY : pv[s.type];
    return { address: s.address, bytes: directCall(s, target).subarray(0, 5) };
  });
}

function runTextPokeBp(g: Guest, chooser: TimedChooser): Measured {
  g.machine.registerService(PV_SLOWPATH_COPY, '__pv_queued_spin_lock_slowpath_copy', (ctx) => pvSlowpath(ctx, g.env));
  const ipis = countIpis(g);
  const tp = new TextPokeBp(g.machine);
  const patches = callRewrite(g);
  let batches = 0;
  for (let i = 0; i < patches.length; i += TP_VEC_MAX) {
    tp.queue(patches.slice(i, i + TP_VEC_MAX)); // text_poke_queue() flushes a full tp_vec
    batches++;
  }
  let t0 = 0, t1 = -1;
  benchCheckpoint(g, function* (ctx) {
    t0 = ctx.cpu.time;
    for (let b = 0; b < batches; b++) yield* ctx.call(TEXT_POKE_SERVICE.textPokeBpBatch);
    t1 = ctx.cpu.time;
  }, () => t1 >= 0);
  const r = runAndJudge(g, () => tp.stats.batchesDone === batches, { chooser, record: false, maxInstructions: MAX_INSTRUCTIONS });
  const want = new Map(patches.map((p) => [p.address, p.bytes]));
  const textOk = sitesEqual(g, (s) => want.get(s.address)!);
  if (ipis.ipis !== tp.stats.ipis) throw new Error(`text_poke_bp: ${ipis.ipis} IPIs at the APIC, ${tp.stats.ipis} counted by text_poke_sync`);
  return {
    latency: t1 - t0, stopped: g.machine.vcpus.map(() => 0), int3Hits: tp.stats.int3Hits, ipis: ipis.ipis,
    syncRounds: tp.stats.syncs, batches, retries: 0,
    ok: r.ok && textOk, detail: r.ok ? (textOk ? '' : 'a site does not hold its new CALL') : `${r.reason} ${r.detail ?? ''}`, steps: r.run.steps,
  };
}

const TRANSFORMATION: Record<Protocol, string> = {
  v1: `${FROM} → ${TO}, the four lock ops (vcpu_is_preempted stays)`,
  v2: `${FROM} → ${TO}, the four lock ops (vcpu_is_preempted stays)`,
  text_poke_bp: 'CALL → CALL on a PV guest (lock-op switch not applicable)',
};

const us = (cycles: number) => +(cycles / US).toFixed(2);

/** One protocol on one guest size; throws unless the run is clean. */
export function runOne(protocol: Protocol, vcpus: number, sites: number, seed = SEED): SwitchRow {
  const g = bootGuest(vcpus, sites, protocol === 'text_poke_bp' ? 'pv' : FROM, seed);
  const chooser = new HandlerClock(vcpus, new Set(HANDLERS[protocol]), PATCHER, seed);
  const t0 = performance.now();
  const m = protocol === 'v1' ? runV1(g, chooser) : protocol === 'v2' ? runV2(g, chooser) : runTextPokeBp(g, chooser);
  const wall = (performance.now() - t0) / 1000;
  const names = new Set([...g.machine.services.values()].map((x) => x.name));
  const unknown = HANDLERS[protocol].filter((h) => !names.has(h));
  if (unknown.length > 0) throw new Error(`${protocol}: no service named ${unknown.join(', ')}: its handler time would read 0`);
  if (!m.ok) throw new Error(`${protocol}, ${vcpus} vCPUs, ${sites} sites: not ok: ${m.detail}`);
  return {
    protocol, transformation: TRANSFORMATION[protocol], vcpus, sites: g.image.sites.length,
    latency_us: us(m.latency),
    stopped_us_min: us(Math.min(...m.stopped)), stopped_us_max: us(Math.max(...m.stopped)), stopped_us_total: us(m.stopped.reduce((a, b) => a + b, 0)),
    handler_us_total: us(chooser.cycles.reduce((a, b) => a + b, 0)), hold_us_max: us(Math.max(...chooser.longest)),
    int3_hits: m.int3Hits, ipis: m.ipis, sync_rounds: m.syncRounds, batches: m.batches, retries: m.retries,
    ok: m.ok, steps: m.steps, wall_s: +wall.toFixed(2),
  };
}

/** The figures a seed moves (the workload's udelay jitter and the timed chooser's), each as a spread. */
const SPREAD_FIELDS = ['latency_us', 'stopped_us_min', 'stopped_us_max', 'stopped_us_total', 'handler_us_total', 'hold_us_max', 'int3_hits', 'ipis', 'retries'] as const;
type SpreadField = (typeof SPREAD_FIELDS)[number];

/**
 * One point over every seed: the row's figures are the medians (so a reader of one number reads
 * the median), and `<field>_spread` holds median, min, max and each seed's value.
 */
export type SwitchPoint = SwitchRow & { seeds: number[] } & { [K in `${SpreadField}_spread`]: Spread };

function point(runs: SwitchRow[], seeds: number[]): SwitchPoint {
  const out: Record<string, unknown> = { ...runs[0]!, seeds, ok: runs.every((r) => r.ok), wall_s: +runs.reduce((a, r) => a + r.wall_s, 0).toFixed(2) };
  for (const f of SPREAD_FIELDS) {
    const sp = spread(runs.map((r) => r[f]), 2);
    out[f] = sp.median;
    out[`${f}_spread`] = sp;
  }
  return out as unknown as SwitchPoint;
}

export async function run(opts: { json: boolean; quick: boolean; seeds?: number }): Promise<Record<string, unknown>> {
  const seeds = seedList(opts.seeds ?? DEFAULT_SEEDS, SEED);
  const grid = opts.quick ? QUICK : { vcpus: VCPUS, sites: SITES };
  const jobs = grid.vcpus.flatMap((v) => grid.sites.flatMap((s) => PROTOCOLS.map((p) => [p, v, s] as const)));
  const bar = !opts.json && process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: 'switch {bar} {value}/{total} | {run}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic)
    : undefined;
  bar?.start(jobs.length, 0, { run: '' });
  const rows: SwitchPoint[] = [];
  const t0 = performance.now();
  try {
    for (const [p, v, s] of jobs) {
      bar?.update({ run: `${p} ${v} vCPUs ${s} sites` });
      rows.push(point(seeds.map((seed) => runOne(p, v, s, seed)), seeds));
      bar?.increment();
      if (!opts.json && !bar) process.stderr.write(`  ${p} ${v} vCPUs ${s} sites: done\n`);
    }
  } finally {
    bar?.stop();
  }
  return {
    bench: 'switch',
    quick: opts.quick,
    seeds,
    switch: { from: FROM, to: TO, patcher_cpu: PATCHER, request_at_us: us(REQUEST_AT), text_poke_bp_batch_max: TP_VEC_MAX },
    workload: { task_locks: SWITCH_WORKLOAD.taskLocks, critical_section_ns: 100, think_ns: 10_000, irq_lock_every: SWITCH_WORKLOAD.irqLockEvery },
    rows,
    wall_s: +((performance.now() - t0) / 1000).toFixed(1),
  };
}

export function table(r: Record<string, unknown>): string {
  const rows = r.rows as SwitchPoint[];
  const head = ['protocol', 'vCPUs', 'sites', 'latency µs median (min–max)', 'stopped µs max', 'stopped µs sum', 'handlers µs median (min–max)', 'hold µs', 'INT3 median (min–max)', 'IPIs', 'syncs', 'batches', 'retries (max)', 'ok', 'wall s'];
  const cells = rows.map((x) => [
    x.protocol, x.vcpus, x.sites, cell(x.latency_us_spread, 2), x.stopped_us_max, x.stopped_us_total, cell(x.handler_us_total_spread, 2), x.hold_us_max,
    cell(x.int3_hits_spread), x.ipis, x.sync_rounds, x.batches, `${x.retries} (${x.retries_spread.max})`, x.ok ? 'ok' : 'FAIL', x.wall_s,
  ].map((c) => (typeof c === 'number' ? c.toLocaleString('en-US') : c)));
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => (i === 0 ? s.padEnd(width[i]!) : s.padStart(width[i]!))).join('  ');
  const out = [line(head), line(width.map((w) => '-'.repeat(w))), ...cells.map(line)];
  out.push(
    '',
    `v1 and v2: ${TRANSFORMATION.v1}; text_poke_bp: ${TRANSFORMATION.text_poke_bp}, batches of ${TP_VEC_MAX} sites.`,
    'stopped: time in stop_machine with IRQs off (v2 and text_poke_bp have none); handlers: time the other vCPUs spent in the',
    "protocol's INT3, sync-IPI and stop handlers; hold: the longest such stretch on one vCPU; syncs: waits for every other vCPU.",
    `every figure over seeds ${(r.seeds as number[]).join(', ')} (medians; the *_spread fields of the JSON hold min, max and each seed's value); total wall time ${r.wall_s as number} s`,
  );
  return out.join('\n');
}
