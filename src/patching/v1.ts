/**
 * v1 (DESIGN.md §5, RFC PATCH 15–19): switch every lock-op site of a running guest to another
 * flavour under stop_machine (src/kernel/stop-machine.ts), then let the guest finish and judge it.
 */
import type { Guest } from '../kernel/guest.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import type { RunOptions } from '../machine/machine.ts';
import { Reg } from '../x86/registers.ts';
import { PREPARE, type PrepareHook } from './prepare.ts';
import { PvOp, changingSites, patchBytes, unexpectedSite, type Flavor, type PatchSite } from '../kernel/pv-ops.ts';
import { StopMachineV1, STOP_MACHINE_SERVICE, V1_HOOKS, newV1Stats, type V1Generation, type V1Hooks, type V1Stats } from '../kernel/stop-machine.ts';
import { v1BrokenHooks } from './broken.ts';
import { GuestConfigError } from '../kernel/errors.ts';
import { enterBeforeTask, patchRunReason, runAndJudge, verdictFields, type PatchRunResult } from './run-patcher.ts';
import { judgeGuestRun } from '../kernel/judge.ts';
import { violation } from '../kernel/verdict.ts';

export interface V1SwitchOptions {
  primaryCpu?: number;
  run?: RunOptions;
  /** Broken variants (src/patching/broken.ts, v1BrokenHooks): IRET from the #BP handler in NMI; no state machine in it. */
  nmiIret?: boolean;
  int3Retry?: boolean;
  /** The steps' hooks (default V1_HOOKS; a user's protocol module may give its own). */
  hooks?: V1Hooks;
  /** Patch only the sites this accepts (default: every lock-op site). */
  sites?: (s: PatchSite) => boolean;
  /** Run by the primary before each stop_machine (default PREPARE: the PV lock hash for a switch to PV). */
  prepare?: PrepareHook;
}

export interface V1Result extends PatchRunResult {
  stats: V1Stats;
  /** Every queued stop_machine finished. */
  switched: boolean;
}

/**
 * preempt_count() == 0 for the interrupted context: no return address on the live stack (nor the
 * interrupted RIP) inside the lock code, a pv-op site, or the task's critical section. Linux's
 * stopper thread can only run at such a point; spinlocks disable preemption.
 */
export function preemptibleCheck(guest: Guest): (c: Vcpu) => boolean {
  const m = guest.machine;
  const regions: [number, number][] = [[guest.symbol('_raw_spin_lock'), guest.symbol('task_entry')]];
  for (const s of guest.image.sites) regions.push([s.address, s.address + s.len + 1]);
  // The task's lock call returns to R; it holds the lock until after its inlined unlock site.
  const task = guest.symbol('task_entry'), lock = guest.symbol('_raw_spin_lock');
  const unlock = guest.image.sites.find((s) => s.type === PvOp.QueuedSpinUnlock && s.address > task)!;
  for (let a = task; a < unlock.address;) {
    const insn = m.instructionAt(a);
    if (!insn) break;
    const b = insn.bytes;
    if (b[0] === 0xe8 && a + 5 + (b[1]! | (b[2]! << 8) | (b[3]! << 16) | (b[4]! << 24)) === lock) {
      regions.push([a, unlock.address + unlock.len + 1]);
      break;
    }
    a += insn.len;
  }
  const inside = (x: number) => regions.some(([lo, hi]) => x >= lo && x < hi);
  return (c) => {
    const rsp = c.getAddr(Reg.RSP);
    for (const [slot, r] of c.returns) if (slot >= rsp && inside(r.returnAddress)) return false;
    return true;
  };
}

/**
 * Switch every lock-op site to `to` (several flavours: one stop_machine each, in order) with v1 on
 * `primaryCpu`, which runs them before its own task; then run the guest to completion.
 */
export function switchLockOpsV1(guest: Guest, to: Flavor | Flavor[], opts: V1SwitchOptions = {}): V1Result {
  const flavors = Array.isArray(to) ? to : [to];
  if (flavors.includes('pv') && !(guest.host?.pvUnhalt ?? false)) throw new GuestConfigError('switching to pv lock ops needs a KVM host with PV_UNHALT');
  // Refuse when a site does not hold the current flavour's bytes: no stop_machine, the guest runs on.
  const wrong = unexpectedSite(guest.machine.memory, guest.image.sites.filter(opts.sites ?? (() => true)), guest.flavor, guest.image.targets);
  if (wrong !== undefined) {
    const run = guest.run(opts.run);
    const j = judgeGuestRun(guest, run);
    const verdict = j.verdict.ok ? violation('unexpected-bytes', j.verdict.step, `refused: ${wrong}`) : j.verdict;
    return { verdict, ...verdictFields(verdict), reason: patchRunReason(verdict), patched: false, run, locks: j.locks, stats: newV1Stats(guest.machine.vcpus.length), switched: false };
  }
  // Each stop_machine rewrites the sites whose ops change from the flavour before it (vcpu_is_preempted never does).
  let prev = guest.flavor;
  const gens = flavors.map((f): V1Generation => {
    const sites = changingSites(guest.image.sites.filter(opts.sites ?? (() => true)), prev, f, guest.image.targets);
    const from = prev;
    prev = f;
    const prepare = opts.prepare ?? PREPARE;
    return {
      sites: sites.map((s) => ({ address: s.address, bytes: patchBytes(s, f, guest.image.targets) })),
      prepare: (ctx) => prepare({ ctx, from, to: f, hash: guest.env.hash }),
      after: () => guest.writePvOps(f),
    };
  });
  return runV1(guest, gens, opts);
}

/** v1 with explicit site bytes per stop_machine (for lock implementations outside the two flavours). */
export function runV1(guest: Guest, gens: V1Generation[], opts: V1SwitchOptions = {}): V1Result {
  const m = guest.machine;
  const primaryCpu = opts.primaryCpu ?? 0;
  const sm = new StopMachineV1(m, {
    primaryCpu,
    preemptible: preemptibleCheck(guest),
    hooks: opts.int3Retry ? v1BrokenHooks('int3-retry') : opts.nmiIret ? v1BrokenHooks('nmi-iret') : opts.hooks ?? V1_HOOKS,
  });
  for (const g of gens) sm.queue(g);
  enterBeforeTask(guest, primaryCpu, STOP_MACHINE_SERVICE.primary);
  const refused = () => sm.stats.refused !== undefined;
  const r = runAndJudge(guest, () => sm.stats.done === gens.length || refused(), opts.run);
  // A refused switch (the lock words) is the verdict once the guest ran on: it wrote nothing.
  const v = refused() && (r.ok || r.reason === 'unfinished') ? violation('lock-word-disagreement', r.step, `refused: ${sm.stats.refused}`) : r.verdict;
  return { ...r, verdict: v, ...verdictFields(v), reason: patchRunReason(v), stats: sm.stats, switched: sm.stats.done === gens.length };
}
