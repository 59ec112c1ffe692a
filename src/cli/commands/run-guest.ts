/**
 * `pvpatch run` on a guest scenario: boot the pvpatch guest kernel on its host, show the patched
 * sites (--show-sites), run the lock workload, and report the locks' checks and statistics.
 */
import { variantKind, variantProtocol, type StockVariant } from '../../patching/variants.ts';
import type { Protocol } from '../../patching/protocol-api.ts';
import { Guest, type FlavorChoice, type GuestOptions, type Platform } from '../../kernel/guest.ts';
import { GuestSubject, type GuestExecution } from '../../check/guest-subject.ts';
import type { Chooser } from '../../machine/chooser.ts';
import { explore, type SeededStrategy } from '../../check/explore.ts';
import { PV_OP_NAMES } from '../../kernel/pv-ops.ts';
import { VECTOR } from '../../kernel/layout.ts';
import { TimedChooser } from '../../sched/timed.ts';
import { CYCLES_PER_NS } from '../../sched/cost-model.ts';
import { ScheduleError, recordedSchedule, type Schedule } from '../../sched/schedule.ts';
import { disassemble, hexAddress, hexBytes } from '../../x86/format.ts';
import { describeHazard } from '../hazard-text.ts';
import { makeChooser, type Strategy } from '../scenario/build-machine.ts';
import { ScenarioError } from '../scenario/errors.ts';
import type { HintSwitchResult, SwitchProtocol } from '../../patching/hint-switch.ts';
import type { RunResult, Tier } from '../../machine/machine.ts';
import type { HostScheduler } from '../../host/scheduler.ts';
import type { GuestSnapshot, LockReport } from '../../kernel/guest.ts';
import { writeAtomically } from '../write-file.ts';
import { stopText } from '../stop-text.ts';
import { SweepTally, sweepProgress } from '../sweep-summary.ts';
import { phaseTracks, runTimeline, violationRecord, writeReport, writeTrace } from '../run-artifacts.ts';
import { traceLocks } from '../../kernel/lock-trace.ts';
import type { Timeline } from '../../trace/timeline.ts';
import { foreignEncoding } from '../../patching/broken.ts';
import { GuestConfigError } from '../../kernel/errors.ts';
import type { GuestScenario } from '../scenario/guest-schema.ts';
import type { CheckKind, Verdict } from '../../check/verdict.ts';
import { hazardName } from '../../machine/events.ts';
import { guestCodeNames, injectionOptions } from '../scenario/injection-plan.ts';
import type { ProtocolModule } from '../protocol-file.ts';

export interface GuestRunFlags {
  strategy?: Strategy;
  seed: number;
  /** A schedule to replay (--schedule's string, or --schedule-file's parsed Schedule). */
  schedule?: string | Schedule;
  maxInstructions?: number;
  json?: boolean;
  showSites?: boolean;
  /** Override the scenario's switch protocol. */
  protocol?: SwitchProtocol;
  /** A user's protocol module (--protocol-file): its kind is the switch protocol. */
  protocolFile?: ProtocolModule;
  /** A stock broken variant (--variant; else the scenario's switch.variant): its kind is the switch protocol. */
  variant?: StockVariant;
  /** Rewrite this site's NOP padding before the run (a site the patcher does not expect). */
  corruptSite?: number;
  /** Write the run's schedule string / Chrome trace here (single runs only). */
  scheduleOut?: string;
  traceOut?: string;
  /** Write the run's HTML report here (single runs only). */
  report?: string;
  /** Execution tier (--tier; default the machine's, compiled). */
  tier?: Tier;
}

/** Whether a run records its timeline: for a trace, a report, or `--json` (which carries it). */
function wantsTrace(flags: GuestRunFlags): boolean {
  return Boolean(flags.traceOut || flags.report || flags.json);
}

/** The guest a scenario describes, with the workload seeded by `seed`. */
export function guestOptions(s: GuestScenario, seed = 1): GuestOptions {
  return {
    seed,
    vcpus: s.guest.vcpus,
    platform: (s.guest.platform ?? 'kvm') as Platform,
    flavor: (s.guest.flavor ?? 'auto') as FlavorChoice,
    nopvspin: s.guest.nopvspin ?? false,
    ...(s.guest.hypercall ? { hypercall: s.guest.hypercall } : {}),
    ...(s.guest.spinThreshold ? { spinThreshold: s.guest.spinThreshold } : {}),
    tso: s.guest.tso ?? true,
    host: { vendor: s.host?.vendor ?? 'intel', pvUnhalt: s.host?.pvUnhalt ?? true, realtime: s.host?.realtime ?? false },
    workload: { ...(s.workload ?? {}), ...(s.switch ? { lockopCheckpoint: true } : {}) },
  };
}

export function bootGuest(s: GuestScenario, seed = 1): Guest {
  return new Guest(guestOptions(s, seed));
}

/** The switch section of the report: each switch's phases, with the steps between them. */
function switchLines(v: HintSwitchResult): string[] {
  const out = ['', `pv_lock_ops switch (${v.protocol}): ${v.ok ? 'ok' : `FAILED: ${v.reason}${v.detail ? ` (${v.detail})` : ''}`}, now ${v.flavor}`];
  if (v.switches.length === 0) out.push('  no switch was requested');
  for (const sw of v.switches) {
    out.push(`  ${sw.from} → ${sw.to}: ${sw.reason}, ${sw.retries} retries, ${sw.int3Hits} INT3 hits${sw.detail ? `; ${sw.detail}` : ''}`);
    let prev: number | undefined;
    for (const p of sw.phases) {
      out.push(`    step ${String(p.step).padStart(8)}${prev === undefined ? '' : ` (+${p.step - prev})`.padEnd(10)}  ${p.phase}${p.attempt > 0 ? ` (attempt ${p.attempt + 1})` : ''}`);
      prev = p.step;
    }
  }
  const stopped = v.stoppedSteps.some((x) => x > 0) ? `steps stopped per vCPU ${v.stoppedSteps.join('/')}` : 'no vCPU stopped';
  out.push(`  INT3 hits ${v.int3Hits}, IPIs ${v.ipis}, ${stopped}`);
  out.push(...timelineLines(v.timeline));
  return out;
}

/** The workload before the hint, while the switch ran, and after it: acquisitions and slowpaths per 1,000 steps. */
function timelineLines(t: HintSwitchResult['timeline']): string[] {
  const zero: GuestSnapshot = { step: 0, time: 0, acquisitions: 0, slowpaths: 0, spins: 0, waits: 0, kicks: 0 };
  const spans: [string, GuestSnapshot, GuestSnapshot][] = [];
  if (t.atHint) spans.push(['until the hint', zero, t.atHint]);
  if (t.atHint && t.switched) spans.push(['hint → switched', t.atHint, t.switched]);
  if (t.switched) spans.push(['after the switch', t.switched, t.end]);
  else if (t.atHint) spans.push(['after the hint', t.atHint, t.end]);
  if (spans.length === 0) return [];
  const out = ['  workload              steps              acquisitions  per 1k steps  slowpaths  kicks'];
  for (const [name, a, b] of spans) {
    const steps = b.step - a.step, acq = b.acquisitions - a.acquisitions;
    const rate = steps > 0 ? ((1000 * acq) / steps).toFixed(1) : '-';
    out.push(`  ${name.padEnd(20)}  ${`${a.step}..${b.step}`.padEnd(17)}  ${String(acq).padStart(12)}  ${rate.padStart(12)}  ${String(b.slowpaths - a.slowpaths).padStart(9)}  ${String(b.kicks - a.kicks).padStart(5)}`);
  }
  return out;
}

/** The header's declared deviations from Linux 6.1 (Guest.deviations), one indented line each. */
function deviationLines(g: Guest): string[] {
  return g.deviations().map((d) => `  deviation from Linux 6.1: ${d}`);
}

function sitesTable(g: Guest): string[] {
  const out = ['', `patched sites (${g.image.sites.length}, flavor ${g.flavor}):`];
  for (const s of g.image.sites) {
    const bytes = g.machine.memory.readBytes(s.address, s.len);
    const text = disassemble(bytes, s.address).map((l) => l.text).join('; ');
    out.push(`  ${hexAddress(s.address)}  ${PV_OP_NAMES[s.type].padEnd(25)} len ${s.len}  ${hexBytes(bytes).padEnd(21)}  ${text}`);
  }
  return out;
}

/** One run of a guest scenario: the guest, the run, the switch verdict, and the report's data. */
interface GuestOutcome {
  g: Guest;
  r: RunResult;
  hs: HintSwitchResult | undefined;
  sched: HostScheduler | undefined;
  strategy: Strategy;
  /** The checks' verdict (src/kernel/judge.ts; with a switch, the protocol's). */
  verdict: Verdict;
  failed: boolean;
  lostWakeup: boolean;
  summary: Record<string, unknown> & { simulatedMicroseconds: number; locks: LockReport[]; stats: Record<string, number>; finalState: string; timeline?: Timeline };
}

function protocolOf(file: string, s: GuestScenario, flags: GuestRunFlags): SwitchProtocol | undefined {
  if (flags.protocol !== undefined && !s.switch) throw new ScenarioError(`${file}: --protocol needs a switch section in the scenario (what triggers the switch)`);
  if (flags.corruptSite !== undefined && !s.switch) throw new ScenarioError(`${file}: --corrupt-site needs a switch section in the scenario (a switch to refuse the site)`);
  if (s.switch?.back === true) throw new ScenarioError(`${file}: /switch/back (a round trip) is the real-kernel guest's (guest.kernel: debian-6.1); the imitation switches once`);
  const pf = flags.protocolFile;
  const variant = variantOf(file, s, flags);
  if (variant !== undefined) {
    const kind = variantKind(variant);
    const asked = flags.protocol ?? s.switch?.protocol;
    if (asked !== undefined && asked !== kind) throw new ScenarioError(`${file}: the variant ${variant} is a ${kind} variant, but the protocol is ${asked}`);
    return kind;
  }
  if (pf !== undefined) {
    if (!s.switch) throw new ScenarioError(`${file}: --protocol-file needs a switch section in the scenario (what triggers the switch)`);
    if (flags.protocol !== undefined && flags.protocol !== pf.protocol.kind) throw new ScenarioError(`${pf.path}: a ${pf.protocol.kind} protocol, but --protocol says ${flags.protocol}`);
    return pf.protocol.kind;
  }
  return s.switch ? flags.protocol ?? s.switch.protocol ?? 'v2' : undefined;
}

/** The stock broken variant a run uses: --variant's, else the scenario's switch.variant. */
function variantOf(file: string, s: GuestScenario, flags: GuestRunFlags): StockVariant | undefined {
  const v = flags.variant ?? s.switch?.variant;
  if (v === undefined) return undefined;
  if (!s.switch) throw new ScenarioError(`${file}: --variant needs a switch section in the scenario (what triggers the switch)`);
  if (flags.protocolFile !== undefined) throw new ScenarioError(`${file}: give --protocol-file or a variant, not both`);
  return v;
}

/** The protocol the switch installs in place of the stock one: a user's module or a stock variant. */
function customOf(file: string, s: GuestScenario, flags: GuestRunFlags): Protocol | undefined {
  if (flags.protocolFile) return flags.protocolFile.protocol;
  const v = variantOf(file, s, flags);
  return v === undefined ? undefined : variantProtocol(v, s.guest.vcpus, s.switch?.patcherCpu ?? 0);
}

/** The strategy a run uses: the flag's, replay for a schedule, else the scenario's, else timed. */
function strategyOf(s: GuestScenario, flags: GuestRunFlags): Strategy {
  return flags.strategy ?? (flags.schedule ? 'replay' : s.schedule?.strategy ?? 'timed');
}

/**
 * The subject of a guest scenario under the CLI's flags: the guest boots once with the switch
 * installed (and --corrupt-site applied); every run is a fork of that boot (src/check/guest-subject.ts).
 */
export function subjectOf(file: string, s: GuestScenario, flags: GuestRunFlags): GuestSubject {
  const strategy = strategyOf(s, flags);
  const wantsHost = s.host?.pcpus !== undefined || s.host?.overcommit !== undefined;
  if (wantsHost && strategy !== 'timed') throw new ScenarioError(`${file}: host over-commit (host.pcpus/overcommit) needs the timed strategy, not ${strategy}`);
  const us = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 1000 * CYCLES_PER_NS));
  const protocol = protocolOf(file, s, flags);
  const custom = customOf(file, s, flags);
  const sw = s.switch;
  if (sw?.patcherCpu !== undefined && sw.patcherCpu >= s.guest.vcpus) throw new ScenarioError(`${file}: /switch/patcherCpu: there is no vCPU ${sw.patcherCpu}`);
  if (sw && (s.guest.platform ?? 'kvm') !== 'kvm') throw new ScenarioError(`${file}: a hint-triggered switch needs platform kvm`);
  return new GuestSubject({
    name: file,
    guest: { ...guestOptions(s, flags.seed), ...(flags.tier ? { tier: flags.tier } : {}) },
    ...(sw && protocol ? { switch: {
      protocol, hint: sw.hint, atStep: sw.atStep, patcherCpu: sw.patcherCpu ?? 0,
      ...(sw.maxRetries !== undefined ? { maxRetries: sw.maxRetries } : {}),
      ...(custom !== undefined ? { custom } : {}),
    } } : {}),
    ...(flags.corruptSite !== undefined ? { prepare: (g: Guest) => corruptSite(file, g, flags.corruptSite!) } : {}),
    ...(wantsHost ? {
      overcommit: {
        ...(s.host?.pcpus !== undefined ? { pcpus: s.host.pcpus } : {}),
        ...(s.host?.overcommit !== undefined ? { overcommit: s.host.overcommit } : {}),
        ...(us(s.host?.sliceUs) !== undefined ? { sliceCycles: us(s.host?.sliceUs)! } : {}),
        ...(us(s.host?.switchUs) !== undefined ? { switchCycles: us(s.host?.switchUs)! } : {}),
        ...(us(s.host?.wakeUs) !== undefined ? { wakeCycles: us(s.host?.wakeUs)! } : {}),
        ...(s.host?.ple !== undefined ? { ple: s.host.ple } : {}),
      },
    } : {}),
    limits: {
      maxInstructions: flags.maxInstructions ?? s.run?.maxInstructions ?? 50_000_000,
      inject: { nmis: s.inject?.nmis ?? 0, irqs: s.inject?.irqs ?? 0, irqVector: VECTOR.LOCK_IRQ, ...(s.inject?.preemptions ? { preemptions: s.inject.preemptions } : {}) },
    },
  });
}

/** The chooser of one execution under the run's strategy: the timed one drives the execution's host scheduler. */
function guestChooser(file: string, s: GuestScenario, flags: GuestRunFlags, exec: GuestExecution, seed: number): Chooser {
  const strategy = strategyOf(s, flags);
  if (s.inject?.preemptions && strategy === 'timed') throw new ScenarioError(`${file}: /inject/preemptions: the timed strategy preempts through host.pcpus or host.overcommit; preemption decisions are for random and pct`);
  const g = exec.guest;
  // Injection plans may name the installed protocol's services (the #BP handler): the fork has them.
  return strategy === 'timed'
    ? new TimedChooser({ seed, ...(exec.scheduler ? { host: exec.scheduler } : {}) })
    : makeChooser(strategy, seed, g.machine.vcpus.length, flags.schedule ?? s.schedule?.replay, injectionOptions(s.inject ?? {}, guestCodeNames(g), g.machine.vcpus.length, `${file}: /inject`));
}

/** One run of a guest scenario: a fork of the subject's boot, its workload and strategy seeded by `seed`. */
function runGuestOnce(file: string, s: GuestScenario, flags: GuestRunFlags, subject: GuestSubject, seed: number, tracing: boolean): GuestOutcome {
  const strategy = strategyOf(s, flags);
  const exec = subject.start(seed);
  const g = exec.guest;
  if (tracing) {
    g.machine.tracing = true;
    traceLocks(g);
  }
  const sched = exec.scheduler;
  const result = exec.run(guestChooser(file, s, flags, exec, seed));
  const r = result.run;
  const hs = exec.switchResult;
  const verdict = result.verdict;
  const locks = g.checkLocks();
  const simCycles = Math.max(...g.machine.vcpus.map((c) => c.time));
  const lostWakeup = r.reason === 'all-halted' && !g.tasksDone;
  const summary = {
    scenario: file,
    decision: g.decision,
    deviations: g.deviations(),
    strategy,
    seed,
    reason: r.reason,
    // A schedule that stopped fitting is bad input: `error` says so, like every other exit-2 JSON.
    error: r.error?.message ?? r.misfit?.message,
    ...(r.misfit ? { misfit: r.misfit } : {}),
    tasksDone: g.stats.tasksDone,
    lostWakeup,
    instructions: r.instructions,
    simulatedMicroseconds: +(simCycles / CYCLES_PER_NS / 1000).toFixed(3),
    locks,
    stats: {
      acquisitions: locks.reduce((a, l) => a + l.acquisitions, 0),
      slowpaths: g.stats.slowpaths,
      spins: g.stats.spins,
      halts: g.haltsInKvmWait(),
      kicks: g.host?.stats.kicks ?? 0,
      waitP50Cycles: g.waitPercentile(50),
      waitP99Cycles: g.waitPercentile(99),
      ...(sched ? { pcpus: sched.opts.pcpus, preemptions: sched.stats.preemptions, pleYields: sched.stats.pleYields } : {}),
    },
    hazards: r.hazards,
    ...(hs ? { switch: { protocol: hs.protocol, ok: hs.ok, reason: hs.reason, detail: hs.detail, flavor: hs.flavor, switches: hs.switches, int3Hits: hs.int3Hits, ipis: hs.ipis, retries: hs.retries, stoppedSteps: hs.stoppedSteps, timeline: hs.timeline } } : {}),
    sites: g.image.sites.map((site) => ({ address: hexAddress(site.address), op: PV_OP_NAMES[site.type], len: site.len, bytes: hexBytes(g.machine.memory.readBytes(site.address, site.len)) })),
    finalState: result.finalState,
    // Formatted only when shown (JSON.stringify reads the getter): a sweep throws summaries away.
    get schedule(): string | undefined {
      return strategy === 'timed' ? undefined : recordedSchedule(g.machine).toString();
    },
  };
  const failed = !verdict.ok;
  // --json carries the timeline of a failing run (what `pvpatch report` draws); a clean run's
  // would be megabytes, and --report/--trace-out draw it from memory.
  if (tracing) Object.assign(summary, traceRecord(g, r, hs, failed || Boolean(flags.report || flags.traceOut)));
  return { g, r, hs, sched, strategy, verdict, failed, lostWakeup, summary };
}

/** The timeline (vCPU lanes and the switch's phases) and the violating step with its instructions. */
function traceRecord(g: Guest, r: RunResult, hs: HintSwitchResult | undefined, withTimeline: boolean) {
  const m = g.machine;
  const read = (a: number, n: number) => { try { return m.memory.readBytes(a, n); } catch { return undefined; } };
  const starts = [...g.image.symbols.values(), ...g.image.sites.flatMap((s) => [s.address, s.address + s.len])];
  const h = r.hazards[0];
  return {
    ...(withTimeline ? { timeline: runTimeline(m, phaseTracks(hs, m.step)) } : {}),
    violation: h ? violationRecord(h, r.hazardSteps[0]!, read, starts) : null,
  };
}

/** --corrupt-site N: another patcher's NOPs in site N's padding (src/patching/broken.ts). */
function corruptSite(file: string, g: Guest, index: number): void {
  try {
    foreignEncoding(g, index);
  } catch (e) {
    if (e instanceof GuestConfigError) throw new ScenarioError(`${file}: --corrupt-site ${index}: ${e.message}`);
    throw e;
  }
}

export function runGuestScenario(file: string, s: GuestScenario, flags: GuestRunFlags): number {
  if (flags.scheduleOut && strategyOf(s, flags) === 'timed') throw new ScenarioError('--schedule-out needs a replayable strategy (random, pct, first); the timed strategy replays from its seed');
  const o = runGuestOnce(file, s, flags, subjectOf(file, s, flags), flags.seed, wantsTrace(flags));
  const { g, r, hs, sched, strategy, failed, lostWakeup, summary } = o;
  if (flags.scheduleOut) writeAtomically(flags.scheduleOut, recordedSchedule(g.machine).toString() + '\n', '--schedule-out');
  if (flags.traceOut) writeTrace(flags.traceOut, summary.timeline!, file);
  if (flags.report) writeReport(flags.report, summary, file);
  // A run that stopped on an error is bad input (or, without userFacing, a bug): one stderr line either way.
  if (r.reason === 'error' && r.error && (!flags.json || r.error.userFacing !== true)) throw r.error;
  if (r.reason === 'error' && r.error) process.stderr.write(`pvpatch: ${r.error.message.split('\n')[0]}\n`);
  const misfit = r.misfit?.message ?? 'the schedule does not fit the run';
  if (r.reason === 'misfit' && !flags.json) throw new ScheduleError(misfit);
  if (r.reason === 'misfit') process.stderr.write(`pvpatch: ${misfit}\n`);
  if (flags.json) {
    process.stdout.write(JSON.stringify(summary) + '\n');
    return r.reason === 'error' || r.reason === 'misfit' ? 2 : failed ? 1 : 0;
  }
  const locks = summary.locks;
  const out: string[] = [];
  out.push(`${file}: ${g.machine.vcpus.length} vCPUs${sched ? ` on ${sched.opts.pcpus} pCPUs` : ''}, ${g.decision.reason} → ${g.flavor} pv_lock_ops`);
  out.push(...deviationLines(g));
  if (flags.showSites) out.push(...sitesTable(g));
  const simulated = summary.simulatedMicroseconds > 0 ? `, ${summary.simulatedMicroseconds} µs simulated` : '';
  const why = g.tasksDone && (r.reason === 'until' || r.reason === 'all-halted') ? 'every task finished, every vCPU idle' : stopText(r, { maxInstructions: flags.maxInstructions ?? s.run?.maxInstructions ?? 50_000_000 });
  out.push('', `stopped after ${r.instructions.toLocaleString('en-US')} instructions${simulated} (strategy ${strategy}, seed ${flags.seed}): ${why}`);
  out.push('', 'lock   role  counter  acquisitions  mutual exclusion');
  for (const l of locks) out.push(`${String(l.index).padStart(4)}   ${l.role.padEnd(4)}  ${String(l.counter).padStart(7)}  ${String(l.acquisitions).padStart(12)}  ${l.ok ? 'ok' : 'BROKEN'}`);
  const st = summary.stats;
  out.push('', `slowpaths ${st.slowpaths}, spins ${st.spins}, halts in kvm_wait ${st.halts}, kicks ${st.kicks}, wait p50 ${st.waitP50Cycles} / p99 ${st.waitP99Cycles} cycles${sched ? `, host preemptions ${sched.stats.preemptions}, PLE yields ${sched.stats.pleYields}` : ''}`);
  if (hs) out.push(...switchLines(hs), '');
  out.push(lostWakeup ? 'lost wake-up: every vCPU halted before all tasks finished' : `tasks finished: ${g.stats.tasksDone}/${g.machine.vcpus.length}`);
  out.push(r.hazards.length === 0 ? 'hazards: none (CMC, return into rewritten code, atomic switch)' : r.hazards.map((h, i) => `step ${r.hazardSteps[i]}: ${describeHazard(h)}`).join('\n'));
  process.stdout.write(out.join('\n') + '\n');
  return failed ? 1 : 0;
}

/** The command that replays one seed of a sweep exactly: every flag that changes the run. */
function replayCommand(file: string, s: GuestScenario, flags: GuestRunFlags, seed: number): string {
  const protocol = s.switch ? protocolOf(file, s, flags) : undefined;
  return [
    `pvpatch run ${file} --seed ${seed}`,
    ...(flags.protocolFile ? [`--protocol-file ${flags.protocolFile.path}`] : protocol ? [`--protocol ${protocol}`] : []),
    ...(flags.variant !== undefined ? [`--variant ${flags.variant}`] : []),
    `--strategy ${strategyOf(s, flags)}`,
    ...(flags.corruptSite !== undefined ? [`--corrupt-site ${flags.corruptSite}`] : []),
    ...(flags.maxInstructions !== undefined ? [`--max-instructions ${flags.maxInstructions}`] : []),
  ].join(' ');
}

/**
 * --seeds N on a guest scenario: boot it once and run a fork per seed (the strategy's and the
 * workload's seed), with a progress bar; report every failing seed with its check and the
 * command that replays it, and every seed's final state.
 */
export function sweepGuestScenario(file: string, s: GuestScenario, flags: GuestRunFlags, seeds: number): number {
  if (flags.schedule) throw new ScenarioError('--seeds sweeps seeds; it cannot be combined with a replay schedule');
  if (flags.scheduleOut || flags.traceOut || flags.report) throw new ScenarioError('--schedule-out, --trace-out and --report write one run; replay a failing seed with --seed to get them');
  const protocol = protocolOf(file, s, flags);
  const subject = subjectOf(file, s, flags);
  const progress = sweepProgress(!flags.json, seeds, 'failing');
  const failing: { seed: number; check: CheckKind; reason: string; step: number; detail?: string; replay: string }[] = [];
  const runs: { seed: number; verdict: 'ok' | CheckKind; finalState: string }[] = [];
  const totals = { acquisitions: 0, int3Hits: 0, ipis: 0, retries: 0, switched: 0 };
  const tally = new SweepTally();
  const strategy: SeededStrategy<GuestExecution> = { kind: 'seeded', name: strategyOf(s, flags), chooser: (seed, _vcpus, exec) => guestChooser(file, s, flags, exec, seed) };
  explore(subject, strategy, {
    budget: { kind: 'executions', executions: seeds },
    seed: flags.seed,
    onExecution: (rec, exec, result) => {
      const g = exec.guest, r = result.run, hs = exec.switchResult, seed = rec.seed!;
      const lostWakeup = r.reason === 'all-halted' && !g.tasksDone;
      const finished = g.tasksDone && (r.reason === 'until' || r.reason === 'all-halted');
      const ended = finished ? 'every task finished' : lostWakeup ? 'every vCPU halted before the tasks finished' : r.reason === 'limit' ? 'the instruction limit was reached' : r.reason === 'hazard' ? 'a hazard was found' : r.reason === 'error' ? 'an error' : stopText(r);
      totals.acquisitions += g.checkLocks().reduce((a, l) => a + l.acquisitions, 0);
      if (hs) {
        totals.int3Hits += hs.int3Hits;
        totals.ipis += hs.ipis;
        totals.retries += hs.retries;
        if (hs.ok && hs.switches.length > 0 && hs.switches.every((x) => x.ok)) totals.switched++;
      }
      const v = rec.violation?.verdict;
      runs.push({ seed, verdict: v === undefined ? 'ok' : v.check, finalState: rec.state! });
      let found: string | undefined;
      if (v !== undefined) {
        found = v.hazard ? hazardName(v.hazard) : v.check;
        const detail = v.hazard ? describeHazard(v.hazard).split('\n')[0]!.replace(/^[a-z-]+: /, '') : v.message;
        failing.push({ seed, check: v.check, reason: found, step: v.step, ...(detail ? { detail } : {}), replay: replayCommand(file, s, flags, seed) });
      }
      tally.add(ended, found);
      progress.tick(failing.length);
    },
  });
  progress.stop();
  const range = `${flags.seed}..${flags.seed + seeds - 1}`;
  if (flags.json) {
    process.stdout.write(JSON.stringify({ scenario: file, protocol: protocol ?? null, ...(flags.protocolFile ? { protocolFile: { path: flags.protocolFile.path, name: flags.protocolFile.protocol.name } } : {}), strategy: strategyOf(s, flags), seeds: { from: flags.seed, count: seeds }, ...tally.json(), failing, totals, runs }) + '\n');
  } else {
    const out = [`${file}: ${seeds} seeds (${range}), one boot, a fork and a run per seed${protocol ? `, switch protocol ${protocol}` : ''}${flags.protocolFile ? ` (${flags.protocolFile.protocol.name}, ${flags.protocolFile.path})` : ''}: ${failing.length} failing`, ...deviationLines(subject.boot), ...tally.lines()];
    out.push(`  acquisitions ${totals.acquisitions}${protocol ? `, switches completed ${totals.switched}/${seeds}, INT3 hits ${totals.int3Hits}, IPIs ${totals.ipis}, v2 retries ${totals.retries}` : ''}`);
    for (const f of failing.slice(0, 20)) out.push(`  seed ${f.seed}: ${f.reason} at step ${f.step}${f.detail ? ` — ${f.detail}` : ''}\n    replay: ${f.replay}`);
    if (failing.length > 20) out.push(`  … and ${failing.length - 20} more (--json lists them all)`);
    process.stdout.write(out.join('\n') + '\n');
  }
  return failing.length > 0 ? 1 : 0;
}
