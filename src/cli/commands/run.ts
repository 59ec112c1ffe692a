/**
 * `pvpatch run <scenario>`: build the scenario's machine, run it under a strategy (or sweep many
 * seeds), print a per-vCPU summary, every hazard, the stop reason and the replayable schedule.
 */
import type { StockVariant } from '../../patching/variants.ts';
import { writeAtomically } from '../write-file.ts';
import { intFlag } from '../flags.ts';
import { checkRunFlags } from './run-flags.ts';
import { stopText, type StopContext } from '../stop-text.ts';
import { sweepMachineScenario } from './run-sweep.ts';
import { machineScenarioSchema } from '../scenario/schema.ts';
import { readScenarioDoc, validateScenario, type MachineScenario } from '../scenario/load.ts';
import { guestScenarioSchema, type GuestScenario } from '../scenario/guest-schema.ts';
import { runGuestScenario, sweepGuestScenario } from './run-guest.ts';
import { runLinuxScenario, sweepLinuxScenario } from './run-linux.ts';
import type { SwitchProtocol } from '../../patching/hint-switch.ts';
import { buildMachine, makeChooser, type Strategy } from '../scenario/build-machine.ts';
import { ScenarioError } from '../scenario/errors.ts';
import { ScheduleError, recordedSchedule, type Schedule } from '../../sched/schedule.ts';
import { readScheduleFile } from '../schedule-file.ts';
import { loadProtocolFile } from '../protocol-file.ts';
import { describeHazard } from '../hazard-text.ts';
import { disassemble, hexAddress } from '../../x86/format.ts';
import { REG_NAMES } from '../../x86/registers.ts';
import type { Machine, RunResult, Tier } from '../../machine/machine.ts';
import { defaultScenarioPath } from '../default-scenario.ts';
import { observe, formatState, type Observation } from '../../check/observation.ts';
import { judgeMachineRun } from '../../check/judge-machine.ts';
import { phaseTracks, runTimeline, violationRecord, writeReport, writeTrace } from '../run-artifacts.ts';

export interface RunFlags {
  tier?: Tier;
  seed?: string;
  strategy?: Strategy;
  schedule?: string;
  scheduleFile?: string;
  maxInstructions?: string;
  seeds?: string;
  protocol?: SwitchProtocol;
  protocolFile?: string;
  variant?: StockVariant;
  corruptSite?: string;
  json?: boolean;
  scheduleOut?: string;
  traceOut?: string;
  report?: string;
  showSites?: boolean;
}

/** A guest scenario has a top-level `guest:` section; anything else is a machine scenario. */
function isGuestScenario(doc: unknown): boolean {
  return typeof doc === 'object' && doc !== null && 'guest' in doc;
}


function summary(m: Machine, r: RunResult, strategy: string, seed: number, obs: readonly Observation[]) {
  return {
    reason: r.reason,
    strategy,
    seed,
    steps: r.steps,
    instructions: r.instructions,
    vcpus: m.vcpus.map((c) => ({
      id: c.id,
      retired: c.retired,
      rip: hexAddress(c.rip),
      halted: c.halted,
      regs: Object.fromEntries(REG_NAMES.map((n, i) => [n, '0x' + c.getReg64(i).toString(16)])),
    })),
    ...(obs.length > 0 ? { observed: Object.fromEntries(observe(m, obs).map(([k, v]) => [k, v.toString()])) } : {}),
    hazards: r.hazards,
    // A schedule that stopped fitting is bad input: `error` says so, like every other exit-2 JSON.
    error: r.error?.message ?? r.misfit?.message,
    ...(r.misfit ? { misfit: r.misfit } : {}),
    events: countEvents(m),
    schedule: recordedSchedule(m).toString(),
  };
}

function countEvents(m: Machine): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of m.events) out[e.type] = (out[e.type] ?? 0) + 1;
  return out;
}

function instructionText(m: Machine, rip: number): string {
  try {
    return disassemble(m.memory.readBytes(rip, 15), rip)[0]?.text ?? '';
  } catch {
    return '(unmapped)';
  }
}

function printRun(file: string, m: Machine, r: RunResult, strategy: string, seed: number, obs: readonly Observation[], stop: StopContext = {}): void {
  const out: string[] = [];
  out.push(`${file}: ${m.vcpus.length} vCPUs, strategy ${strategy}, seed ${seed}`);
  out.push(`stopped after ${r.instructions.toLocaleString('en-US')} instructions (${r.steps.toLocaleString('en-US')} steps): ${stopText(r, stop)}`);
  out.push('');
  out.push('vCPU  retired      rip                 state    next instruction');
  for (const c of m.vcpus) {
    out.push(`${String(c.id).padStart(4)}  ${String(c.retired).padStart(10)}   ${hexAddress(c.rip).padEnd(18)}  ${(c.halted ? 'halted' : 'running').padEnd(7)}  ${instructionText(m, c.rip)}`);
  }
  const counts = countEvents(m);
  if (Object.keys(counts).length > 0) out.push('', 'events: ' + Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', '));
  if (obs.length > 0) out.push('', `observed: ${formatState(observe(m, obs))}`);
  out.push('');
  if (r.hazards.length === 0) out.push('hazards: none');
  else for (const h of r.hazards) out.push(describeHazard(h));
  const schedule = recordedSchedule(m).toString();
  out.push('', `schedule (replay with --strategy replay --schedule '...'): ${schedule.length > 400 ? schedule.slice(0, 400) + ` … (${schedule.length} chars; use --schedule-out)` : schedule || '(no decisions)'}`);
  process.stdout.write(out.join('\n') + '\n');
}


/** What a machine scenario's run stops on, for the stop text. */
function stopOf(scenario: MachineScenario, maxInstructions: number | undefined): StopContext {
  return { maxInstructions, ...(scenario.run?.stopWhenHalted ? { stopWhenHalted: scenario.run.stopWhenHalted } : {}) };
}

/** --schedule or --schedule-file (not both): the schedule to replay. */
function replayOf(flags: RunFlags, vcpus: number): string | Schedule | undefined {
  if (flags.schedule !== undefined && flags.scheduleFile !== undefined) throw new ScenarioError('give --schedule or --schedule-file, not both');
  return flags.scheduleFile !== undefined ? readScheduleFile(flags.scheduleFile, vcpus) : flags.schedule;
}

/** The timeline and the violating step of a traced machine run (`run --json` carries both). */
function traceRecord(m: Machine, r: RunResult, labels: Map<string, number>) {
  const read = (a: number, n: number) => { try { return m.memory.readBytes(a, n); } catch { return undefined; } };
  const h = r.hazards[0];
  return {
    timeline: runTimeline(m, phaseTracks(undefined, m.step)),
    violation: h ? violationRecord(h, r.hazardSteps[0]!, read, [...labels.values()]) : null,
  };
}

export async function runCommand(file: string | undefined, flags: RunFlags): Promise<number> {
  const path = file ?? defaultScenarioPath();
  const doc = readScenarioDoc(path);
  if (isGuestScenario(doc)) {
    const gs = validateScenario<GuestScenario>(path, doc, guestScenarioSchema);
    checkRunFlags(path, 'guest', flags, gs.schedule);
    const seeds = intFlag(flags.seeds, 'seeds', 1);
    const gflags = {
      seed: intFlag(flags.seed, 'seed', 0) ?? gs.schedule?.seed ?? 1,
      ...(flags.protocol ? { protocol: flags.protocol } : {}),
      ...(flags.protocolFile !== undefined ? { protocolFile: await loadProtocolFile(flags.protocolFile) } : {}),
      ...(flags.variant !== undefined ? { variant: flags.variant } : {}),
      ...(flags.corruptSite !== undefined ? { corruptSite: intFlag(flags.corruptSite, 'corrupt-site', 0)! } : {}),
      ...(flags.strategy ? { strategy: flags.strategy } : {}),
      ...(replayOf(flags, gs.guest.vcpus) !== undefined ? { schedule: replayOf(flags, gs.guest.vcpus)! } : {}),
      ...(flags.maxInstructions ? { maxInstructions: intFlag(flags.maxInstructions, 'max-instructions', 1)! } : {}),
      json: flags.json ?? false,
      ...(flags.tier ? { tier: flags.tier } : {}),
      showSites: flags.showSites ?? false,
      ...(flags.scheduleOut ? { scheduleOut: flags.scheduleOut } : {}),
      ...(flags.traceOut ? { traceOut: flags.traceOut } : {}),
      ...(flags.report ? { report: flags.report } : {}),
    };
    if (gs.guest.kernel === 'debian-6.1') return seeds !== undefined ? sweepLinuxScenario(path, gs, gflags, seeds) : runLinuxScenario(path, gs, gflags);
    return seeds !== undefined ? sweepGuestScenario(path, gs, gflags, seeds) : runGuestScenario(path, gs, gflags);
  }
  const scenario = validateScenario<MachineScenario>(path, doc, machineScenarioSchema);
  checkRunFlags(path, 'machine', flags, scenario.schedule);
  const flagReplay = replayOf(flags, scenario.machine.vcpus);
  const strategy: Strategy = flags.strategy ?? (flagReplay !== undefined ? 'replay' : scenario.schedule?.strategy ?? 'random');
  const seed = intFlag(flags.seed, 'seed', 0) ?? scenario.schedule?.seed ?? 1;
  const seeds = intFlag(flags.seeds, 'seeds', 1);
  const maxInstructions = intFlag(flags.maxInstructions, 'max-instructions', 1);
  const boot = buildMachine(path, scenario, flags.tier);
  const runOpts = { ...boot.run, ...(maxInstructions ? { maxInstructions } : {}) };
  const replay = flagReplay ?? scenario.schedule?.replay;

  if (seeds !== undefined) {
    if (flags.traceOut || flags.report) throw new ScenarioError('--trace-out and --report write one run; replay a failing seed with --seed to get them');
    if (strategy === 'replay') throw new ScenarioError('--seeds sweeps seeds; it cannot be combined with a replay schedule');
    return sweepMachineScenario(path, scenario, boot, { strategy, seed, seeds, json: flags.json ?? false, ...(maxInstructions !== undefined ? { maxInstructions } : {}) });
  }

  const m = boot.machine;
  m.tracing = Boolean(flags.traceOut || flags.report || flags.json);
  const r = m.run({ ...runOpts, chooser: makeChooser(strategy, seed, m.vcpus.length, replay, boot.plans) });
  if (flags.scheduleOut) writeAtomically(flags.scheduleOut, recordedSchedule(m).toString() + '\n', '--schedule-out');
  const full = m.tracing ? { ...summary(m, r, strategy, seed, boot.observe), scenario: path, ...traceRecord(m, r, boot.labels) } : undefined;
  if (flags.traceOut) writeTrace(flags.traceOut, full!.timeline, path);
  if (flags.report) writeReport(flags.report, full, path);
  // A run that stopped on an error is bad input (or, without userFacing, a bug): one stderr line either way.
  if (r.reason === 'error' && r.error && (!flags.json || r.error.userFacing !== true)) throw r.error;
  if (r.reason === 'error' && r.error) process.stderr.write(`pvpatch: ${r.error.message.split('\n')[0]}\n`);
  const misfit = r.misfit?.message ?? 'the schedule does not fit the run';
  if (r.reason === 'misfit' && !flags.json) throw new ScheduleError(misfit);
  if (r.reason === 'misfit') process.stderr.write(`pvpatch: ${misfit}\n`);
  if (flags.json) process.stdout.write(JSON.stringify(full) + '\n');
  else printRun(path, m, r, strategy, seed, boot.observe, stopOf(scenario, runOpts.maxInstructions));
  const v = judgeMachineRun(m, r);
  return r.reason === 'misfit' ? 2 : v.ok ? 0 : v.check === 'machine-fault' ? 2 : 1;
}

