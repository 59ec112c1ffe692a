/**
 * Which `pvpatch run` flags apply to what was asked: a flag that would be ignored is an error that
 * names why (issue 13: guest-only flags on machine scenarios, a schedule under another strategy,
 * output files on a sweep, empty values). Checked before anything boots or runs.
 */
import { FlagError, intFlag, refuseFlags, textFlag } from '../flags.ts';
import { checkOutputPath } from '../write-file.ts';

/** The flags of `pvpatch run` this check reads (commander's camelCase keys). */
export interface RunFlagValues {
  strategy?: string;
  seed?: string;
  seeds?: string;
  schedule?: string;
  scheduleOut?: string;
  traceOut?: string;
  protocol?: string;
  variant?: string;
  protocolFile?: string;
  corruptSite?: string;
  showSites?: boolean;
  maxInstructions?: string;
}

/** The scenario's own schedule section, as far as this check needs it. */
interface ScheduleSection {
  strategy?: string;
  replay?: string;
}

/** A sweep bigger than this is a typo, not a plan (a million seeds of the default guest is days). */
export const MAX_SWEEP_SEEDS = 1_000_000;

export function checkRunFlags(file: string, kind: 'machine' | 'guest', flags: RunFlagValues, schedule: ScheduleSection | undefined): void {
  textFlag(flags.schedule, 'schedule');
  intFlag(flags.seed, 'seed', 0);
  intFlag(flags.seeds, 'seeds', 1, MAX_SWEEP_SEEDS);
  intFlag(flags.maxInstructions, 'max-instructions', 1);
  if (flags.scheduleOut !== undefined) checkOutputPath(flags.scheduleOut, '--schedule-out');
  if (flags.traceOut !== undefined) checkOutputPath(flags.traceOut, '--trace-out');
  if (schedule?.replay !== undefined && schedule.strategy !== undefined && schedule.strategy !== 'replay') {
    throw new FlagError(`${file}: /schedule/replay applies only to strategy replay, and the scenario says strategy ${schedule.strategy}`);
  }
  if (flags.schedule !== undefined && flags.strategy !== undefined && flags.strategy !== 'replay') {
    throw new FlagError(`--schedule replays a schedule string; it cannot be combined with --strategy ${flags.strategy}`);
  }
  if (kind === 'machine') {
    refuseFlags(flags, ['protocol', 'variant', 'protocolFile', 'corruptSite', 'showSites'], `only guest scenarios (with a guest: section) use it, and ${file} is a machine scenario`);
    const replays = flags.strategy === 'replay' || (flags.strategy === undefined && (flags.schedule !== undefined || schedule?.strategy === 'replay'));
    if (replays) refuseFlags(flags, ['seed', 'seeds'], 'a replay makes the choices of its schedule string, no seed is used');
  }
  if (flags.seeds !== undefined) {
    refuseFlags(flags, ['scheduleOut', 'traceOut'], '--seeds sweeps many runs and output files write one run; replay a failing seed with --seed to get them');
    // A guest's seed also seeds its workload; a machine scenario's seeds only the strategy.
    if (kind === 'machine' && flags.strategy === 'first') throw new FlagError('--seeds does not apply to --strategy first: it makes the same choices whatever the seed');
  }
}
