/**
 * `pvpatch run <machine scenario> --seeds N`: one execution per seed, each a fork of one boot,
 * through the exploration driver (src/check/explore.ts) that `check` and the benches use; this
 * file only turns its records into the sweep's report (how each ended, the first failing seed
 * and the command that replays it). The guest sweeps are in run-guest.ts and run-linux.ts.
 */
import { explore, type SeededStrategy } from '../../check/explore.ts';
import { machineSubject } from '../../check/machine-subject.ts';
import { hazardName } from '../../machine/events.ts';
import type { CheckKind } from '../../check/verdict.ts';
import { describeHazard } from '../hazard-text.ts';
import { makeChooser, type BuiltMachine, type Strategy } from '../scenario/build-machine.ts';
import type { MachineScenario } from '../scenario/load.ts';
import { stopText } from '../stop-text.ts';
import { SweepTally, sweepProgress } from '../sweep-summary.ts';

export interface MachineSweep {
  readonly strategy: Exclude<Strategy, 'replay'>;
  /** Seed of the first execution. */
  readonly seed: number;
  readonly seeds: number;
  readonly maxInstructions?: number;
  readonly json: boolean;
}

export function sweepMachineScenario(path: string, scenario: MachineScenario, boot: BuiltMachine, o: MachineSweep): number {
  const { until, inject } = boot.run;
  const maxInstructions = o.maxInstructions ?? boot.run.maxInstructions;
  const subject = machineSubject({
    name: path,
    machine: boot.machine,
    limits: { maxInstructions, ...(inject !== undefined ? { inject } : {}) },
    ...(until !== undefined ? { until } : {}),
    observe: boot.observe,
  });
  const strategy: SeededStrategy = { kind: 'seeded', name: o.strategy, chooser: (seed, vcpus) => makeChooser(o.strategy, seed, vcpus, undefined, boot.plans) };
  const stop = { maxInstructions, ...(scenario.run?.stopWhenHalted ? { stopWhenHalted: scenario.run.stopWhenHalted } : {}) };
  const failing: { seed: number; reason: string; check: CheckKind; hazard: string; schedule: string }[] = [];
  const tally = new SweepTally();
  const progress = sweepProgress(!o.json, o.seeds, 'hazards');
  explore(subject, strategy, {
    budget: { kind: 'executions', executions: o.seeds },
    seed: o.seed,
    onExecution: (rec, _exec, r) => {
      const v = rec.violation?.verdict;
      tally.add(r.run.reason === 'error' ? 'an error' : stopText(r.run, stop).replace(/ \(raise it with --max-instructions\)$/, ''), v === undefined ? undefined : v.hazard ? hazardName(v.hazard) : v.check);
      if (v !== undefined) failing.push({ seed: rec.seed!, reason: r.run.reason, check: v.check, hazard: v.hazard ? describeHazard(v.hazard) : v.message, schedule: rec.violation!.schedule });
      progress.tick(failing.length);
    },
  });
  progress.stop();
  const last = o.seed + o.seeds - 1;
  if (o.json) process.stdout.write(JSON.stringify({ scenario: path, strategy: o.strategy, seeds: { from: o.seed, count: o.seeds }, ...tally.json(), failing: failing.length, first: failing[0] ?? null }) + '\n');
  else {
    process.stdout.write(`${path}: ${o.seeds} seeds (${o.seed}..${last}), strategy ${o.strategy}, one execution per seed from one boot: ${failing.length} with a hazard or error\n${tally.lines().join('\n')}\n`);
    if (failing[0]) process.stdout.write(`first: seed ${failing[0].seed}: ${failing[0].hazard}\nreplay: pvpatch run ${path} --seed ${failing[0].seed} --strategy ${o.strategy}\n`);
  }
  return failing.length > 0 ? 1 : 0;
}
