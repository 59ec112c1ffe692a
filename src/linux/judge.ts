/**
 * The verdict of a real-kernel run (src/kernel/verdict.ts, DESIGN.md §6), one order for
 * `pvpatch run`, its sweeps and `pvpatch check`: a hazard the probes or the machine raised, a
 * fault, a lock whose shared counter disagrees with its acquisitions, a vCPU left halted in the
 * real kvm_wait, a switch that did not finish, a finished switch whose text is not a fresh boot's
 * of the final flavour, a run that hit its bound. And what an explorer compares of the end state.
 */
import { createHash } from 'node:crypto';
import type { RunResult } from '../machine/machine.ts';
import { hazardName } from '../machine/events.ts';
import { hexBytes } from '../x86/format.ts';
import { clean, violation, type Verdict } from '../kernel/verdict.ts';
import { pvOpsSlotName } from '../elf/pv-ops-slots.ts';
import type { LinuxGuest, LinuxLockReport } from './guest.ts';
import { textDiffersFromBoot, type LockOpSwitchPlan } from './lock-op-switch.ts';

export interface LinuxJudgement {
  readonly verdict: Verdict;
  readonly locks: LinuxLockReport[];
  readonly lostWakeups: number[];
  /** After a finished switch: the first site or slot not as a fresh boot of the final flavour has it. */
  readonly differs?: string;
}

/** `switched`: whether the run's switch (if it had `plans`) finished. */
export function judgeLinuxRun(g: LinuxGuest, r: RunResult, plans?: readonly LockOpSwitchPlan[], switched?: boolean): LinuxJudgement {
  const locks = g.checkLocks();
  const lostWakeups = r.reason === 'all-halted' ? g.lostWakeups() : [];
  const step = r.hazardSteps[0] ?? g.machine.step;
  const differs = switched === true && plans !== undefined && plans.length > 0 ? textDiffersFromBoot(g, plans[plans.length - 1]!) : undefined;
  const out = (verdict: Verdict): LinuxJudgement => ({ verdict, locks, lostWakeups, ...(differs !== undefined ? { differs } : {}) });
  const h = r.hazards[0];
  if (h !== undefined) return out(violation('hazard', step, `${hazardName(h)} on vCPU ${h.cpu}`, { cpu: h.cpu, hazard: h }));
  // A replay that stopped fitting ends the run wherever it was: only what it found before counts.
  if (r.reason === 'misfit') return out(violation('unfinished', step, `the schedule no longer fits: ${r.misfit?.message ?? 'the chooser stopped'}`));
  if (r.reason === 'error') return out(violation('machine-fault', step, r.error?.message ?? 'the guest faulted'));
  const broken = locks.find((l) => !l.ok);
  if (broken !== undefined) return out(violation('broken-lock', step, `${broken.role} lock ${broken.index}: counter ${broken.counter}, acquisitions ${broken.acquisitions}`));
  if (lostWakeups.length > 0) return out(violation('lost-wakeup', step, `vCPU ${lostWakeups.join(', ')} left halted in kvm_wait with nothing to wake ${lostWakeups.length === 1 ? 'it' : 'them'}`, { cpu: lostWakeups[0]! }));
  if (plans !== undefined && switched !== true) return out(violation('unfinished', step, `the switch ${[plans[0]!.from, ...plans.map((p) => p.to)].join(' → ')} did not finish`));
  if (differs !== undefined) return out(violation('text-differs', step, differs));
  if (r.reason === 'limit') return out(violation('step-limit', step, `the run did not finish within ${r.instructions.toLocaleString('en-US')} instructions`));
  if (r.reason !== 'until') return out(violation('unfinished', step, `the run ended with ${r.reason}`));
  return out(clean(step));
}

/** Every lock's counter and acquisitions, the pv_ops lock slots, and a digest of every lock-op site's bytes. */
export function linuxFinalState(g: LinuxGuest): string {
  const locks = g.checkLocks().map((l) => `${l.index}:${l.counter}/${l.acquisitions}`).join(' ');
  const k = g.boot.kernel, mem = g.machine.memory;
  const sites = createHash('sha256');
  for (const p of k.tables.parainstructions) if (pvOpsSlotName(p.type).startsWith('lock.')) sites.update(hexBytes(mem.readBytes(p.address, p.len)) + ';');
  return `locks ${locks}; flavour ${g.flavor}; sites ${sites.digest('hex').slice(0, 16)}`;
}
