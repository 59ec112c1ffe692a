/**
 * `pvpatch run` on a scenario with `guest.kernel: debian-6.1`: boot the real Linux 6.1 kernel
 * (src/linux/) for the scenario's platform, run the workload on its own lock functions, and
 * report the locks' checks, how often each real lock function ran, the halts in kvm_wait and the
 * kicks, and every deviation from the real kernel (the speed knob).
 */
import { LinuxGuest, lockFlavorOf, type LinuxLockReport } from '../../linux/guest.ts';
import { loadLinuxKernel, bootLinux, type LinuxBootOptions, type LinuxKernel } from '../../linux/kernel.ts';
import { pvOpsSlotName } from '../../elf/pv-ops-slots.ts';
import { MapSymbols } from '../../elf/image.ts';
import { HostScheduler } from '../../host/scheduler.ts';
import { HOST_COSTS, cfsSliceCycles } from '../../host/costs.ts';
import { CYCLES_PER_NS } from '../../sched/cost-model.ts';
import { TimedChooser } from '../../sched/timed.ts';
import { recordedSchedule, ScheduleError, type Schedule } from '../../sched/schedule.ts';
import type { Machine, RunResult } from '../../machine/machine.ts';
import { hazardName } from '../../machine/events.ts';
import { VECTOR } from '../../kernel/layout.ts';
import { hexAddress, hexBytes } from '../../x86/format.ts';
import { describeHazard } from '../hazard-text.ts';
import { makeChooser, type Strategy } from '../scenario/build-machine.ts';
import { ScenarioError } from '../scenario/errors.ts';
import type { GuestScenario } from '../scenario/guest-schema.ts';
import { stopText } from '../stop-text.ts';
import { SweepTally, sweepProgress } from '../sweep-summary.ts';
import { explore, type SeededStrategy } from '../../check/explore.ts';
import type { Execution, ExecutionLimits, ExecutionResult, Subject } from '../../check/subject.ts';
import type { Verdict } from '../../check/verdict.ts';
import type { Chooser } from '../../machine/chooser.ts';
import { linuxKernelDir } from '../linux-kernel.ts';
import type { GuestRunFlags } from './run-guest.ts';
import { lockOpSwitchPlan, type LockOpSwitchPlan } from '../../linux/lock-op-switch.ts';
import { judgeLinuxRun, linuxFinalState } from '../../linux/judge.ts';
import { switchLinuxLockOpsV1, type LinuxV1Result } from '../../linux/v1-switch.ts';
import { switchLinuxLockOpsV2, type LinuxV2Result } from '../../linux/v2-switch.ts';
import { variantKind } from '../../patching/variants.ts';
import { v1BrokenHooks, v2NoBarrierHooks } from '../../patching/broken.ts';
import type { V1Hooks } from '../../kernel/stop-machine.ts';
import type { V2Hooks } from '../../patching/v2-hooks.ts';

const SOURCE = 'debian vmlinux';

/** Keys and flags of imitation scenarios that the real-kernel guest does not have (yet): refused, not ignored. */
export function refuseUnsupported(file: string, s: GuestScenario, flags: GuestRunFlags): void {
  const bad: string[] = [];
  const protocol = linuxProtocolOf(file, s, flags);
  if (s.switch !== undefined && protocol !== 'v1' && protocol !== 'v2') bad.push(`/switch/protocol ${protocol} (v2 and v1 switch the real kernel's sites; text_poke_bp cannot: a PV site is a CALL and a NOP)`);
  if (s.guest.flavor !== undefined && s.guest.flavor !== 'auto') bad.push('/guest/flavor (the real boot decides: use the platform, host.pvUnhalt, host.realtime or guest.nopvspin)');
  if (s.guest.hypercall !== undefined) bad.push('/guest/hypercall (the kernel\'s alternatives pick vmcall or vmmcall)');
  if (s.workload?.extraSites !== undefined) bad.push('/workload/extraSites (the real kernel has its own sites)');
  const plan = Object.keys(s.inject ?? {}).filter((k) => k !== 'nmis' && k !== 'irqs');
  if (plan.length > 0) bad.push(`/inject/${plan[0]} (only nmis and irqs)`);
  if (s.switch === undefined && flags.protocol !== undefined) bad.push('--protocol (the scenario has no switch)');
  for (const [flag, set] of [['--protocol-file', flags.protocolFile], ['--corrupt-site', flags.corruptSite], ['--trace-out', flags.traceOut], ['--report', flags.report]] as const) {
    if (set !== undefined) bad.push(`${flag}`);
  }
  if (bad.length > 0) throw new ScenarioError(`${file}: guest.kernel ${s.guest.kernel}: ${bad[0]} does not apply to the real-kernel guest`);
}

/** The switch protocol of a real-kernel run: --protocol, a variant's kind, the scenario's, else v2. */
export function linuxProtocolOf(file: string, s: GuestScenario, flags: GuestRunFlags): string | undefined {
  if (s.switch === undefined) return undefined;
  const variant = flags.variant ?? s.switch.variant;
  const asked = flags.protocol ?? s.switch.protocol;
  if (variant !== undefined) {
    const kind = variantKind(variant);
    if (asked !== undefined && asked !== kind) throw new ScenarioError(`${file}: the variant ${variant} is a ${kind} variant, but the protocol is ${asked}`);
    return kind;
  }
  return asked ?? 'v2';
}

/** The hooks of the stock broken variant a run names (a negative control), if any. */
function linuxVariantHooks(s: GuestScenario, flags: GuestRunFlags): { v1?: V1Hooks; v2?: V2Hooks } {
  const v = flags.variant ?? s.switch?.variant;
  if (v === 'no-barrier') return { v2: v2NoBarrierHooks() };
  if (v === 'int3-retry' || v === 'nmi-iret') return { v1: v1BrokenHooks(v) };
  return {};
}

function bootOptionsOf(s: GuestScenario): LinuxBootOptions {
  const platform = s.guest.platform ?? 'kvm';
  if (platform !== 'kvm' && platform !== 'bare-metal') throw new ScenarioError(`guest.platform ${platform}: the real-kernel guest runs on kvm or bare-metal`);
  return {
    platform: platform === 'bare-metal' ? 'bare-metal' : s.host?.realtime === true ? 'kvm-realtime' : 'kvm',
    pvUnhalt: s.host?.pvUnhalt ?? true,
    cmdline: s.guest.nopvspin === true ? 'nopvspin' : '',
  };
}

/** The booted guest a scenario describes. */
export function bootLinuxScenario(s: GuestScenario, progress: (line: string) => void, kernel?: LinuxKernel, protocol?: string): LinuxGuest {
  const k = kernel ?? loadLinuxKernel(linuxKernelDir('debian-6.1', progress));
  const w = s.workload ?? {};
  return new LinuxGuest(bootLinux(k, bootOptionsOf(s)), {
    vcpus: s.guest.vcpus,
    vendor: s.host?.vendor ?? 'intel',
    tso: s.guest.tso ?? true,
    ...(s.guest.spinThreshold !== undefined ? { spinThreshold: s.guest.spinThreshold } : {}),
    ...(protocol === 'v2' ? { lockopCheckpoint: true } : {}),
    workload: {
      ...(w.iterations !== undefined ? { iterations: w.iterations } : {}),
      ...(w.taskLocks !== undefined ? { taskLocks: w.taskLocks } : {}),
      ...(w.criticalLoops !== undefined ? { criticalLoops: w.criticalLoops } : {}),
      ...(w.thinkLoops !== undefined ? { thinkLoops: w.thinkLoops } : {}),
      ...(w.irqLockEvery !== undefined ? { irqEvery: w.irqLockEvery } : {}),
    },
  });
}

/** The strategy's chooser; the timed one puts the vCPUs on the host's physical CPUs when the scenario over-commits. */
function chooserFor(s: GuestScenario, g: LinuxGuest, strategy: Strategy, seed: number, replay: string | Schedule | undefined): { chooser: ReturnType<typeof makeChooser>; host?: HostScheduler } {
  const h = s.host ?? {};
  const overcommitted = h.pcpus !== undefined || h.overcommit !== undefined;
  if (!overcommitted || strategy !== 'timed') {
    if (overcommitted && strategy !== 'replay') throw new ScenarioError(`host.pcpus / host.overcommit need the timed strategy (it owns time); this run uses ${strategy}`);
    return { chooser: makeChooser(strategy, seed, g.machine.vcpus.length, replay) };
  }
  if (g.host === undefined) throw new ScenarioError('host over-commit needs platform kvm');
  const n = g.machine.vcpus.length;
  const pcpus = h.pcpus ?? Math.max(1, Math.round(n / h.overcommit!));
  const us = (v: number | undefined, d: number) => (v === undefined ? d : Math.round(v * 1000 * CYCLES_PER_NS));
  const kvm = g.host;
  const host = new HostScheduler(
    {
      pcpus,
      sliceCycles: us(h.sliceUs, cfsSliceCycles(pcpus, Math.ceil(n / pcpus))),
      switchCycles: us(h.switchUs, HOST_COSTS.contextSwitch.cycles),
      wakeCycles: us(h.wakeUs, HOST_COSTS.wakeup.cycles),
      ...(h.ple === false ? {} : { ple: { window: HOST_COSTS.pleWindow.cycles, gap: HOST_COSTS.pleGap.cycles } }),
    },
    g.machine.vcpus, g.machine.memory, (cpu, p) => kvm.setPreempted(cpu, p),
  );
  return { chooser: new TimedChooser({ seed, host }), host };
}

/**
 * The switches a scenario asks for: `hint: revoke` (the host drops KVM_HINTS_REALTIME) takes a
 * native boot to PV, `grant` a PV boot to native; the plan is the other boot's bytes. With
 * `back: true` the host then restores the hint and the guest switches back (a round trip).
 */
export function linuxSwitchPlans(s: GuestScenario, g: LinuxGuest): readonly LockOpSwitchPlan[] | undefined {
  if (s.switch === undefined) return undefined;
  const want = s.switch.hint === 'revoke' ? 'native' : 'pv';
  if (g.flavor !== want) throw new ScenarioError(`switch.hint ${s.switch.hint} switches ${want} lock ops, and this boot chose ${g.flavor} (hint revoke needs host.realtime: true; grant needs a PV boot)`);
  const target = bootLinux(g.boot.kernel, { ...g.boot.options, platform: s.switch.hint === 'revoke' ? 'kvm' : 'kvm-realtime' });
  const there = lockOpSwitchPlan(g.boot, target);
  return s.switch.back === true ? [there, lockOpSwitchPlan(target, g.boot)] : [there];
}


export interface LinuxRunOutcome {
  readonly r: RunResult;
  /** The v1 or v2 switch's outcome, when the scenario has one. */
  readonly v1?: LinuxV1Result;
  readonly v2?: LinuxV2Result;
  readonly locks: LinuxLockReport[];
  readonly lost: number[];
  readonly ok: boolean;
  /** What failed, for a sweep's tally. */
  readonly found: string | undefined;
  readonly verdict: Verdict;
  /** After a finished switch: the first site or slot not as a fresh boot of the final flavour has it. */
  readonly differs?: string;
}

/** A sweep's name for what a run found: the hazard's, else the check's in the words `run` has always used. */
function findingOf(v: Verdict, r: RunResult, switchUnfinished: boolean): string | undefined {
  if (v.ok) return undefined;
  if (v.hazard !== undefined) return hazardName(v.hazard);
  switch (v.check) {
    case 'broken-lock': return 'mutual-exclusion';
    case 'unfinished': return switchUnfinished ? 'switch-unfinished' : r.reason;
    case 'step-limit': return 'limit';
    default: return v.check;
  }
}

/** One run of a booted (or forked) real-kernel guest under the scenario's strategy and injections. */
export function runLinuxOnce(s: GuestScenario, g: LinuxGuest, strategy: Strategy, seed: number, flags: GuestRunFlags, plans?: readonly LockOpSwitchPlan[]): LinuxRunOutcome {
  const { chooser } = chooserFor(s, g, strategy, seed, flags.schedule);
  return runLinuxWith(s, g, chooser, flags, linuxLimits(s, flags), plans);
}

/** The scenario's injections and instruction bound (--max-instructions over run.maxInstructions). */
export function linuxLimits(s: GuestScenario, flags: GuestRunFlags): ExecutionLimits {
  return {
    inject: { nmis: s.inject?.nmis ?? 0, irqs: s.inject?.irqs ?? 0, irqVector: VECTOR.LOCK_IRQ },
    ...(flags.maxInstructions !== undefined || s.run?.maxInstructions !== undefined ? { maxInstructions: flags.maxInstructions ?? s.run!.maxInstructions! } : {}),
  };
}

/** One run of `g` under `chooser`: the scenario's switch (if any) along `plans`, judged (src/linux/judge.ts). */
export function runLinuxWith(s: GuestScenario, g: LinuxGuest, chooser: Chooser, flags: GuestRunFlags, limits: ExecutionLimits, plans?: readonly LockOpSwitchPlan[]): LinuxRunOutcome {
  const opts = { chooser, ...(limits.inject ? { inject: limits.inject } : {}), ...(limits.maxInstructions !== undefined ? { maxInstructions: limits.maxInstructions } : {}) };
  const protocol = linuxProtocolOf('', s, flags);
  const hooks = linuxVariantHooks(s, flags);
  const atStep = Math.max(1, s.switch?.atStep ?? 1);
  const v1 = plans === undefined || protocol !== 'v1' ? undefined : switchLinuxLockOpsV1(g, plans, { primaryCpu: s.switch?.patcherCpu ?? 0, atStep, ...(hooks.v1 ? { hooks: hooks.v1 } : {}), run: opts });
  const v2 = plans === undefined || protocol !== 'v2' ? undefined : switchLinuxLockOpsV2(g, plans, {
    patcherCpu: s.switch?.patcherCpu ?? 0, atStep, ...(s.switch?.maxRetries !== undefined ? { maxRetries: s.switch.maxRetries } : {}), ...(hooks.v2 ? { hooks: hooks.v2 } : {}), run: opts,
  });
  const r = v1?.run ?? v2?.run ?? g.run(opts);
  const sw = v1 ?? v2;
  const j = judgeLinuxRun(g, r, sw === undefined ? undefined : plans, sw?.switched);
  const { locks, lostWakeups: lost, differs, verdict } = j;
  const found = findingOf(verdict, r, sw !== undefined && !sw.switched);
  return { r, ...(v1 ? { v1 } : {}), ...(v2 ? { v2 } : {}), locks, lost, ok: verdict.ok, found, verdict, ...(differs !== undefined ? { differs } : {}) };
}

/**
 * One execution of a real-kernel Subject: a fork of the boot, run as runLinuxOnce runs it (the
 * scenario's switch along `plans`, judged by src/linux/judge.ts), its outcome kept for the sweep.
 */
export class LinuxExecution implements Execution {
  readonly machine: Machine;
  outcome: LinuxRunOutcome | undefined;

  constructor(readonly guest: LinuxGuest, private readonly s: GuestScenario, private readonly flags: GuestRunFlags, private readonly plans: readonly LockOpSwitchPlan[] | undefined, private readonly limits: ExecutionLimits) {
    this.machine = guest.machine;
  }

  run(chooser: Chooser, limits: ExecutionLimits = this.limits): ExecutionResult {
    const g = this.guest;
    const o = (this.outcome = runLinuxWith(this.s, g, chooser, this.flags, limits, this.plans));
    const ran = Object.entries(g.probes.counts).filter(([, n]) => n > 0).map(([f]) => f);
    const sw = o.v1 ?? o.v2;
    const coverage = [...ran, ...(sw ? [sw.switched ? 'switch finished' : 'switch unfinished'] : [])].sort();
    return { verdict: o.verdict, run: o.r, finalState: linuxFinalState(g), coverage };
  }
}

/** native → pv, or native → pv → native for a round trip. */
function route(plans: readonly LockOpSwitchPlan[]): string {
  return [plans[0]!.from, ...plans.map((p) => p.to)].join(' → ');
}

function switchLines(o: LinuxRunOutcome, plans: readonly LockOpSwitchPlan[]): string[] {
  const plan = plans[0]!;
  if (o.v2 !== undefined) {
    const v = o.v2, st = v.stats, sw = v.switches[0];
    return [
      '',
      `pv_lock_ops switch (v2): ${v.switched ? 'switched' : `not finished (${sw?.reason ?? 'never started: the patcher reached no checkpoint'})`} ${route(plans)}, ${plan.sites.length} real lock-op sites (${[...new Set(plan.sites.map((x) => x.slot))].join(', ')})`,
      ...(o.differs !== undefined ? [`  text differs from a fresh boot: ${o.differs}`] : []),
      `  barrier waits ${v.switches.map((x) => x.waits.join(', ')).join('; ') || '-'} spins, retries ${v.switches.reduce((a, x) => a + x.retries, 0)}, INT3 hits ${st.int3Hits} (${st.int3InNmi} in NMI), slowpaths counted ${st.counted}, uncounted ${st.uncounted}`,
    ];
  }
  const v = o.v1!;
  const st = v.stats;
  return [
    '',
    `pv_lock_ops switch (v1): ${v.switched ? 'switched' : 'not finished'} ${route(plans)}, ${plan.sites.length} real lock-op sites (${[...new Set(plan.sites.map((x) => x.slot))].join(', ')})`,
    ...(o.differs !== undefined ? [`  text differs from a fresh boot: ${o.differs}`] : []),
    `  stop_machine window ${st.windowSteps.join(', ')} steps, STOP IPIs deferred at non-preemptible points ${st.deferred}, INT3 hits ${st.int3Hits} (${st.int3InNmi} in NMI)`,
  ];
}

function header(file: string, g: LinuxGuest, strategy: string, seed: string): string[] {
  const b = g.boot;
  const out = [`${file}: Linux ${b.kernel.release} (${SOURCE}), platform ${b.options.platform}${b.options.pvUnhalt === false ? ' without PV_UNHALT' : ''}${b.options.cmdline ? `, cmdline '${b.options.cmdline}'` : ''}, ${g.machine.vcpus.length} vCPUs, lock flavour at boot ${lockFlavorOf(b)}, strategy ${strategy}, ${seed}`];
  for (const d of g.deviations()) out.push(`deviation from the real kernel: ${d}`);
  return out;
}

/** The real .parainstructions lock-op sites with their symbol and bytes as the boot left them. */
function sitesLines(g: LinuxGuest): string[] {
  const k = g.boot.kernel;
  const sites = k.tables.parainstructions.filter((p) => pvOpsSlotName(p.type).startsWith('lock.'));
  const named = (k.image.symbols instanceof MapSymbols ? [...k.image.symbols.entries()] : []).filter(([, a]) => k.image.isText(a)).sort((a, b) => a[1] - b[1]);
  const containing = (addr: number): string => {
    let lo = 0, hi = named.length - 1, best = -1;
    while (lo <= hi) { const mid = (lo + hi) >> 1; if (named[mid]![1] <= addr) { best = mid; lo = mid + 1; } else hi = mid - 1; }
    return best < 0 ? '?' : `${named[best]![0]}+0x${(addr - named[best]![1]).toString(16)}`;
  };
  const out = ['', `lock-op sites of .parainstructions (${sites.length}, flavour ${g.flavor}):`];
  for (const p of sites) out.push(`  ${hexAddress(p.address)}  ${containing(p.address).padEnd(48)} ${pvOpsSlotName(p.type).padEnd(32)} ${hexBytes(g.machine.memory.readBytes(p.address, p.len))}`);
  return out;
}

export function runLinuxScenario(file: string, s: GuestScenario, flags: GuestRunFlags): number {
  refuseUnsupported(file, s, flags);
  const strategy: Strategy = flags.strategy ?? (flags.schedule !== undefined ? 'replay' : s.schedule?.strategy ?? 'random');
  if (flags.scheduleOut !== undefined) throw new ScenarioError('--schedule-out does not apply to the real-kernel guest yet');
  const g = bootLinuxScenario(s, (line) => process.stderr.write(`pvpatch: ${line}\n`), undefined, linuxProtocolOf(file, s, flags));
  g.machine.tracing = false;
  const plans = linuxSwitchPlans(s, g);
  const plan = plans?.[0];
  const o = runLinuxOnce(s, g, strategy, flags.seed, flags, plans);
  const { r } = o;
  // A fault is a finding when a switch caused it (the PV hash); else, as anywhere, an error.
  if (r.reason === 'error' && r.error && plan === undefined) throw r.error;
  if (r.reason === 'misfit') throw new ScheduleError(r.misfit?.message ?? 'the schedule does not fit the run');
  const schedule = recordedSchedule(g.machine).toString();
  const p = g.probes;
  if (flags.json) {
    process.stdout.write(JSON.stringify({
      scenario: file,
      kernel: { release: g.boot.kernel.release, source: SOURCE },
      platform: g.boot.options.platform,
      flavor: g.flavor,
      deviations: g.deviations(),
      strategy, seed: flags.seed,
      reason: r.reason, steps: r.steps, instructions: r.instructions,
      locks: o.locks,
      executions: p.counts,
      halts: p.halts, kicks: p.kicks, hostKicks: g.host?.stats.kicks ?? 0,
      lostWakeups: o.lost,
      hazards: r.hazards,
      ...(r.reason === 'error' && r.error ? { fault: r.error.message } : {}),
      ...(o.v2 && plan ? { switch: { protocol: 'v2', from: plan.from, to: plans![plans!.length - 1]!.to, route: route(plans!), switched: o.v2.switched, sites: plan.sites.length, attempts: o.v2.switches, ...o.v2.stats } } : {}),
      ...(o.v1 && plan ? { switch: { protocol: 'v1', from: plan.from, to: plans![plans!.length - 1]!.to, route: route(plans!), switched: o.v1.switched, sites: plan.sites.length, windowSteps: o.v1.stats.windowSteps, deferred: o.v1.stats.deferred, int3Hits: o.v1.stats.int3Hits } } : {}),
      ok: o.ok,
      ...(flags.showSites ? { sites: g.boot.kernel.tables.parainstructions.filter((x) => pvOpsSlotName(x.type).startsWith('lock.')).map((x) => ({ address: hexAddress(x.address), slot: pvOpsSlotName(x.type), bytes: hexBytes(g.machine.memory.readBytes(x.address, x.len)) })) } : {}),
      schedule,
    }) + '\n');
    return o.ok ? 0 : 1;
  }
  const out = header(file, g, strategy, `seed ${flags.seed}`);
  out.push(`stopped after ${r.instructions.toLocaleString('en-US')} instructions (${r.steps.toLocaleString('en-US')} steps): ${stopText(r, {})}`);
  out.push('', 'locks (shared counter = sum of per-CPU acquisitions):');
  for (const l of o.locks) out.push(`  ${l.role.padEnd(4)} lock ${l.index}: counter ${l.counter}, acquisitions ${l.acquisitions}  ${l.ok ? 'ok' : 'BROKEN'}`);
  out.push('', 'real functions executed: ' + Object.entries(p.counts).filter(([, n]) => n > 0).map(([f, n]) => `${f} ${n}`).join(', '));
  out.push(`halts in kvm_wait ${p.halts}, kicks ${p.kicks}, lost wake-ups ${o.lost.length === 0 ? 'none' : o.lost.map((c) => `vCPU ${c}`).join(', ')}`);
  if ((o.v1 ?? o.v2) && plans) out.push(...switchLines(o, plans));
  if (flags.showSites) out.push(...sitesLines(g));
  out.push('');
  if (r.reason === 'error' && r.error) out.push(`fault: ${r.error.message}`);
  if (r.hazards.length === 0) out.push('hazards: none');
  else for (const h of r.hazards) out.push(describeHazard(h));
  out.push('', `schedule: ${schedule.length > 400 ? schedule.slice(0, 400) + ` … (${schedule.length} chars)` : schedule || '(no decisions)'}`);
  process.stdout.write(out.join('\n') + '\n');
  return o.ok ? 0 : 1;
}

export function sweepLinuxScenario(file: string, s: GuestScenario, flags: GuestRunFlags, seeds: number): number {
  refuseUnsupported(file, s, flags);
  const strategy: Strategy = flags.strategy ?? s.schedule?.strategy ?? 'random';
  if (strategy === 'replay') throw new ScenarioError('--seeds sweeps seeds; it cannot be combined with a replay schedule');
  const base = bootLinuxScenario(s, (line) => process.stderr.write(`pvpatch: ${line}\n`), undefined, linuxProtocolOf(file, s, flags));
  const plans = linuxSwitchPlans(s, base);
  const tally = new SweepTally();
  const failing: { seed: number; found: string }[] = [];
  const executions: Record<string, number> = {};
  const progress = sweepProgress(!flags.json, seeds, 'failing');
  const limits = linuxLimits(s, flags);
  // Every seed forks the boot as `run --seed N` boots it (udelay()'s jitter seeded alike), so a replay line reproduces it.
  const subject: Subject<LinuxExecution> = { name: file, vcpus: base.machine.vcpus.length, limits, start: () => new LinuxExecution(base.fork(), s, flags, plans, limits) };
  const sweep: SeededStrategy<LinuxExecution> = { kind: 'seeded', name: strategy, chooser: (seed, _vcpus, exec) => chooserFor(s, exec.guest, strategy, seed, undefined).chooser };
  explore(subject, sweep, {
    budget: { kind: 'executions', executions: seeds },
    seed: flags.seed,
    onExecution: (rec, exec, result) => {
      const o = exec.outcome!;
      tally.add(result.run.reason === 'error' ? 'an error' : stopText(result.run, {}), o.found);
      for (const [f, n] of Object.entries(exec.guest.probes.counts)) executions[f] = (executions[f] ?? 0) + n;
      if (!o.ok) failing.push({ seed: rec.seed!, found: o.found! });
      progress.tick(failing.length);
    },
  });
  progress.stop();
  if (flags.json) {
    process.stdout.write(JSON.stringify({ scenario: file, kernel: { release: base.boot.kernel.release, source: SOURCE }, flavor: base.flavor, deviations: base.deviations(), strategy, seeds: { from: flags.seed, count: seeds }, ...tally.json(), executions, failing: failing.length, first: failing[0] ?? null }) + '\n');
  } else {
    const out = header(file, base, strategy, `${seeds} seeds (${flags.seed}..${flags.seed + seeds - 1}), one execution per seed from one boot`);
    out.push(...tally.lines());
    if (failing[0]) out.push(`first: seed ${failing[0].seed}: ${failing[0].found}`, `replay: pvpatch run ${file} --seed ${failing[0].seed} --strategy ${strategy}${flags.variant !== undefined ? ` --variant ${flags.variant}` : ''}`);
    process.stdout.write(out.join('\n') + '\n');
  }
  return failing.length > 0 ? 1 : 0;
}
