/**
 * A real-kernel scenario (guest.kernel: debian-6.1) as a Subject (src/check/subject.ts), so that
 * `pvpatch check` explores the real Linux 6.1 lock code as it explores the imitation: the kernel
 * boots once for the scenario's platform, and every execution is a fork of that boot (the
 * machine, the host, the probes' state; udelay()'s jitter re-seeded by the execution's seed) run
 * under the strategy's chooser, through the scenario's switch if it has one, and judged by
 * src/linux/judge.ts. Coverage: each real lock function the execution ran, and whether its switch
 * finished.
 */
import type { Execution, ExecutionLimits, Subject } from '../../check/subject.ts';
import { ScenarioError } from './errors.ts';
import type { GuestScenario } from './guest-schema.ts';
import type { GuestRunFlags } from '../commands/run-guest.ts';
import { LinuxExecution, bootLinuxScenario, linuxLimits, linuxProtocolOf, linuxSwitchPlans, refuseUnsupported } from '../commands/run-linux.ts';

export function linuxScenarioSubject(path: string, s: GuestScenario, flags: Pick<GuestRunFlags, 'protocol' | 'variant' | 'protocolFile'>): Subject {
  const runFlags: GuestRunFlags = { seed: s.schedule?.seed ?? 1, strategy: 'random', ...flags };
  refuseUnsupported(path, s, runFlags);
  // The host scheduler owns time on an over-committed host: only the timed strategy drives it.
  if (s.host?.pcpus !== undefined || s.host?.overcommit !== undefined) {
    throw new ScenarioError(`${path}: host.pcpus / host.overcommit need the timed strategy (it owns time), and check's strategies choose every step themselves: sweep it with pvpatch run ${path} --seeds N`);
  }
  const base = bootLinuxScenario(s, (line) => process.stderr.write(`pvpatch: ${line}\n`), undefined, linuxProtocolOf(path, s, runFlags));
  base.machine.tracing = false;
  const plans = linuxSwitchPlans(s, base);
  const limits: ExecutionLimits = { maxInstructions: 50_000_000, ...linuxLimits(s, runFlags) };
  return {
    name: path,
    vcpus: s.guest.vcpus,
    limits,
    start(seed?: number): Execution {
      return new LinuxExecution(base.fork(seed !== undefined ? { seed } : {}), s, runFlags, plans, limits);
    },
  };
}
