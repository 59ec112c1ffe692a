/**
 * A guest scenario as a Subject (src/check/subject.ts): the guest boots once, with its switch
 * protocol installed and waiting for the hint, and every execution is a fork of that boot
 * (Guest.fork: machine, counters, oracle, host, protocol state), judged by the guest's checks
 * and the protocol's (src/kernel/judge.ts, src/patching/). `pvpatch run --seeds` and the explorer
 * drive it the same way.
 */
import { createHash } from 'node:crypto';
import { Guest, type GuestOptions } from '../kernel/guest.ts';
import { hostScheduler, type OvercommitOptions } from '../kernel/host-setup.ts';
import { GuestConfigError } from '../kernel/errors.ts';
import { judgeGuestRun } from '../kernel/judge.ts';
import { installHintSwitch, runHintSwitch, type HintSwitch, type HintSwitchResult, type SwitchProtocol } from '../patching/hint-switch.ts';
import type { Chooser } from '../machine/chooser.ts';
import type { Protocol } from '../patching/protocol-api.ts';
import type { Machine, RunResult } from '../machine/machine.ts';
import type { HostScheduler } from '../host/scheduler.ts';
import { hexBytes } from '../x86/format.ts';
import { pvOpsTable } from '../kernel/paravirt.ts';
import { DATA, DATA_BASE } from '../kernel/layout.ts';
import type { Flavor } from '../kernel/pv-ops.ts';
import type { Execution, ExecutionLimits, ExecutionResult, Subject } from './subject.ts';
import type { Verdict } from './verdict.ts';

/** The runtime switch a guest subject performs: the host changes its hint at `atStep`. */
export interface GuestSwitch {
  protocol: SwitchProtocol;
  hint: 'revoke' | 'grant';
  atStep: number;
  patcherCpu?: number;
  maxRetries?: number;
  /** A protocol of `protocol`'s kind with hooks overridden (src/patching/protocol-api.ts). */
  custom?: Protocol;
}

export interface GuestSubjectConfig {
  name: string;
  /** The guest to boot; its `seed` seeds the workload of executions started without one. */
  guest: GuestOptions;
  switch?: GuestSwitch;
  /** Called on the boot once the switch is installed, before any fork (e.g. `--corrupt-site`). */
  prepare?: (boot: Guest) => void;
  /** vCPUs over physical CPUs: each execution gets its own HostScheduler (the timed strategy drives it). */
  overcommit?: OvercommitOptions;
  limits: ExecutionLimits;
}

/** One execution: a fork of the boot, its host scheduler, its switch; `run` once. */
export class GuestExecution implements Execution {
  readonly machine: Machine;
  /** The host's CPU scheduler of this execution, when the subject over-commits (for a TimedChooser). */
  readonly scheduler: HostScheduler | undefined;
  /** The protocol's result, after `run` (with a switch). */
  switchResult: HintSwitchResult | undefined;

  constructor(readonly guest: Guest, private readonly config: GuestSubjectConfig, private readonly sw: HintSwitch | undefined) {
    this.machine = guest.machine;
    this.scheduler = config.overcommit ? hostScheduler(guest, config.overcommit) : undefined;
  }

  run(chooser: Chooser, limits: ExecutionLimits = this.config.limits): ExecutionResult {
    const g = this.guest;
    const opts = { chooser, maxInstructions: limits.maxInstructions ?? 50_000_000, ...(limits.inject ? { inject: limits.inject } : {}) };
    let run: RunResult;
    let verdict: Verdict;
    const sw = this.config.switch;
    if (sw && this.sw) {
      this.switchResult = runHintSwitch(g, this.sw, { atStep: sw.atStep, hint: sw.hint }, opts);
      run = this.switchResult.run;
      verdict = this.switchResult.verdict;
    } else {
      run = g.run(opts);
      verdict = judgeGuestRun(g, run).verdict;
    }
    return { verdict, run, finalState: guestFinalState(g) };
  }
}

/**
 * What a guest run leaves that an explorer compares: every lock's counter and acquisitions, the
 * flavour the pv_ops table points at, and a digest of every patch site's bytes.
 */
export function guestFinalState(g: Guest): string {
  const locks = g.checkLocks().map((l) => `${l.index}:${l.counter}/${l.acquisitions}`).join(' ');
  const sites = createHash('sha256');
  for (const s of g.image.sites) sites.update(hexBytes(g.machine.memory.readBytes(s.address, s.len)) + ';');
  return `locks ${locks}; pv_ops ${pvOpsFlavor(g)}; sites ${sites.digest('hex').slice(0, 16)}`;
}

/** Which flavour the pv_ops table points at now (both, mid-switch; 'other' for a foreign table). */
function pvOpsFlavor(g: Guest): string {
  const mem = g.machine.memory;
  const is = (f: Flavor) => [...pvOpsTable(f, g.image.targets)].every(([op, at]) => mem.readU64(DATA_BASE + DATA.pvOps + 8 * op) === at);
  return is('native') ? 'native' : is('pv') ? 'pv' : 'other';
}

export class GuestSubject implements Subject {
  readonly name: string;
  readonly vcpus: number;
  readonly limits: ExecutionLimits;
  /** The step of the hint (the switch's window follows it); undefined without a switch. */
  readonly focusStep: number | undefined;
  /** The booted guest every execution forks (never run itself). */
  readonly boot: Guest;
  private readonly sw: HintSwitch | undefined;

  constructor(readonly config: GuestSubjectConfig) {
    this.name = config.name;
    this.vcpus = config.guest.vcpus;
    this.limits = config.limits;
    this.focusStep = config.switch?.atStep;
    const g = new Guest(config.guest);
    if (config.switch) {
      if (!g.host) throw new GuestConfigError('a hint-triggered switch needs platform kvm');
      const { protocol, patcherCpu, maxRetries, custom } = config.switch;
      this.sw = installHintSwitch(g, protocol, { patcherCpu: patcherCpu ?? 0, ...(maxRetries !== undefined ? { maxRetries } : {}), ...(custom ? { custom } : {}) });
    }
    config.prepare?.(g);
    this.boot = g;
  }

  /** A fresh execution from the boot; `seed` re-seeds the workload's randomness as a boot with it would. */
  start(seed?: number): GuestExecution {
    const g = this.boot.fork(seed !== undefined ? { seed } : {});
    return new GuestExecution(g, this.config, this.sw === undefined ? undefined : g.counterpart(this.sw));
  }
}
