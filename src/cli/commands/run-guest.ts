/**
 * `pvpatch run` on a guest scenario: boot the pvpatch guest kernel on its host, show the patched
 * sites (--show-sites), run the lock workload, and report the locks' checks and statistics.
 */
import { Guest, type FlavorChoice, type Platform } from '../../kernel/guest.ts';
import { hostScheduler } from '../../kernel/host-setup.ts';
import { PV_OP_NAMES } from '../../kernel/pv-ops.ts';
import { VECTOR } from '../../kernel/layout.ts';
import { TimedChooser } from '../../sched/timed.ts';
import { CYCLES_PER_NS } from '../../sched/cost-model.ts';
import { formatSchedule } from '../../sched/schedule.ts';
import { disassemble, hexAddress, hexBytes } from '../../x86/format.ts';
import { describeHazard } from '../hazard-text.ts';
import { makeChooser, type Strategy } from '../scenario/build-machine.ts';
import { ScenarioError } from '../scenario/errors.ts';
import { installLockopV2, judgeV2, runSettled, type V2Result } from '../../patching/v2.ts';
import { installHintTrigger } from '../../patching/trigger.ts';
import type { GuestScenario } from '../scenario/guest-schema.ts';

export interface GuestRunFlags {
  strategy?: Strategy;
  seed: number;
  schedule?: string;
  maxInstructions?: number;
  json?: boolean;
  showSites?: boolean;
}

export function bootGuest(s: GuestScenario): Guest {
  return new Guest({
    vcpus: s.guest.vcpus,
    platform: (s.guest.platform ?? 'kvm') as Platform,
    flavor: (s.guest.flavor ?? 'auto') as FlavorChoice,
    nopvspin: s.guest.nopvspin ?? false,
    ...(s.guest.hypercall ? { hypercall: s.guest.hypercall } : {}),
    ...(s.guest.spinThreshold ? { spinThreshold: s.guest.spinThreshold } : {}),
    tso: s.guest.tso ?? true,
    host: { vendor: s.host?.vendor ?? 'intel', pvUnhalt: s.host?.pvUnhalt ?? true, realtime: s.host?.realtime ?? false },
    workload: { ...(s.workload ?? {}), ...(s.switch ? { lockopCheckpoint: true } : {}) },
  });
}

/** The switch section of the report: each switch's phases, with the steps between them. */
function switchLines(v: V2Result): string[] {
  const out = ['', `pv_lock_ops switch (v2): ${v.ok ? 'ok' : `FAILED: ${v.reason}${v.detail ? ` (${v.detail})` : ''}`}, now ${v.flavor}`];
  if (v.switches.length === 0) out.push('  no switch was requested');
  for (const sw of v.switches) {
    out.push(`  ${sw.from} → ${sw.to}: ${sw.reason}, ${sw.retries} retries, ${sw.int3Hits} INT3 hits, barrier waits ${sw.waits.join('/')} spins`);
    let prev: number | undefined;
    for (const p of sw.phases) {
      out.push(`    step ${String(p.step).padStart(8)}${prev === undefined ? '' : ` (+${p.step - prev})`.padEnd(10)}  ${p.phase}${p.attempt > 0 ? ` (attempt ${p.attempt + 1})` : ''}`);
      prev = p.step;
    }
  }
  out.push(`  slowpath lock-ops counted at the barrier ${v.counted}, their unlocks ${v.uncounted}; INT3 hits in all ${v.int3Hits}`);
  return out;
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

export function runGuestScenario(file: string, s: GuestScenario, flags: GuestRunFlags): number {
  const g = bootGuest(s);
  const strategy: Strategy = flags.strategy ?? (flags.schedule ? 'replay' : s.schedule?.strategy ?? 'timed');
  const wantsHost = s.host?.pcpus !== undefined || s.host?.overcommit !== undefined;
  if (wantsHost && strategy !== 'timed') throw new ScenarioError(`${file}: host over-commit (host.pcpus/overcommit) needs the timed strategy, not ${strategy}`);
  const us = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 1000 * CYCLES_PER_NS));
  const sched = wantsHost
    ? hostScheduler(g, {
        ...(s.host?.pcpus !== undefined ? { pcpus: s.host.pcpus } : {}),
        ...(s.host?.overcommit !== undefined ? { overcommit: s.host.overcommit } : {}),
        ...(us(s.host?.sliceUs) !== undefined ? { sliceCycles: us(s.host?.sliceUs)! } : {}),
        ...(us(s.host?.switchUs) !== undefined ? { switchCycles: us(s.host?.switchUs)! } : {}),
        ...(us(s.host?.wakeUs) !== undefined ? { wakeCycles: us(s.host?.wakeUs)! } : {}),
      })
    : undefined;
  const chooser = strategy === 'timed' ? new TimedChooser({ seed: flags.seed, ...(sched ? { host: sched } : {}) }) : makeChooser(strategy, flags.seed, g.machine.vcpus.length, flags.schedule ?? s.schedule?.replay);
  const runOpts = {
    chooser,
    maxInstructions: flags.maxInstructions ?? s.run?.maxInstructions ?? 50_000_000,
    inject: { nmis: s.inject?.nmis ?? 0, irqs: s.inject?.irqs ?? 0, irqVector: VECTOR.LOCK_IRQ },
  };
  let v2: V2Result | undefined;
  let r;
  if (s.switch) {
    const sw = s.switch;
    if (sw.patcherCpu !== undefined && sw.patcherCpu >= g.machine.vcpus.length) throw new ScenarioError(`${file}: /switch/patcherCpu: there is no vCPU ${sw.patcherCpu}`);
    if (!g.host) throw new ScenarioError(`${file}: a hint-triggered switch needs platform kvm`);
    const switcher = installLockopV2(g, { patcherCpu: sw.patcherCpu ?? 0, ...(sw.maxRetries !== undefined ? { maxRetries: sw.maxRetries } : {}) });
    installHintTrigger(g, switcher);
    let raised = false;
    const host = g.host;
    r = runSettled(g, {
      ...runOpts,
      until: (m) => {
        if (!raised && m.step >= sw.atStep) {
          raised = true;
          host.setRealtimeHint(sw.hint === 'grant');
        }
        return false;
      },
    });
    v2 = judgeV2(g, switcher, r);
  } else {
    r = g.run(runOpts);
  }
  if (r.reason === 'error' && r.error && !flags.json) throw r.error;
  const locks = g.checkLocks();
  const simCycles = Math.max(...g.machine.vcpus.map((c) => c.time));
  const halts = g.haltsInKvmWait();
  const lostWakeup = r.reason === 'all-halted' && !g.tasksDone;
  const summary = {
    scenario: file,
    decision: g.decision,
    strategy,
    seed: flags.seed,
    reason: r.reason,
    error: r.error?.message,
    tasksDone: g.stats.tasksDone,
    lostWakeup,
    instructions: r.instructions,
    simulatedMicroseconds: +(simCycles / CYCLES_PER_NS / 1000).toFixed(3),
    locks,
    stats: {
      acquisitions: locks.reduce((a, l) => a + l.acquisitions, 0),
      slowpaths: g.stats.slowpaths,
      spins: g.stats.spins,
      halts,
      kicks: g.host?.stats.kicks ?? 0,
      waitP50Cycles: g.waitPercentile(50),
      waitP99Cycles: g.waitPercentile(99),
      ...(sched ? { pcpus: sched.opts.pcpus, preemptions: sched.stats.preemptions } : {}),
    },
    hazards: r.hazards,
    ...(v2 ? { switch: { ok: v2.ok, reason: v2.reason, detail: v2.detail, flavor: v2.flavor, switches: v2.switches, int3Hits: v2.int3Hits, retries: v2.retries } } : {}),
    sites: g.image.sites.map((site) => ({ address: hexAddress(site.address), op: PV_OP_NAMES[site.type], len: site.len, bytes: hexBytes(g.machine.memory.readBytes(site.address, site.len)) })),
    schedule: strategy === 'timed' ? undefined : formatSchedule(g.machine.decisions),
  };
  const failed = r.hazards.length > 0 || locks.some((l) => !l.ok) || lostWakeup || r.reason === 'error' || (v2 !== undefined && !v2.ok);
  if (flags.json) {
    process.stdout.write(JSON.stringify(summary) + '\n');
    return r.reason === 'error' ? 2 : failed ? 1 : 0;
  }
  const out: string[] = [];
  out.push(`${file}: ${g.machine.vcpus.length} vCPUs${sched ? ` on ${sched.opts.pcpus} pCPUs` : ''}, ${g.decision.reason} → ${g.flavor} pv_lock_ops`);
  if (flags.showSites) out.push(...sitesTable(g));
  const simulated = simCycles > 0 ? `, ${summary.simulatedMicroseconds} µs simulated` : '';
  out.push('', `stopped: ${r.reason} after ${r.instructions.toLocaleString('en-US')} instructions${simulated} (strategy ${strategy}, seed ${flags.seed})`);
  out.push('', 'lock   role  counter  acquisitions  mutual exclusion');
  for (const l of locks) out.push(`${String(l.index).padStart(4)}   ${l.role.padEnd(4)}  ${String(l.counter).padStart(7)}  ${String(l.acquisitions).padStart(12)}  ${l.ok ? 'ok' : 'BROKEN'}`);
  const st = summary.stats;
  out.push('', `slowpaths ${st.slowpaths}, spins ${st.spins}, halts in kvm_wait ${st.halts}, kicks ${st.kicks}, wait p50 ${st.waitP50Cycles} / p99 ${st.waitP99Cycles} cycles${sched ? `, host preemptions ${sched.stats.preemptions}` : ''}`);
  if (v2) out.push(...switchLines(v2), '');
  out.push(lostWakeup ? 'lost wake-up: every vCPU halted before all tasks finished' : `tasks finished: ${g.stats.tasksDone}/${g.machine.vcpus.length}`);
  out.push(r.hazards.length === 0 ? 'hazards: none' : r.hazards.map(describeHazard).join('\n'));
  process.stdout.write(out.join('\n') + '\n');
  return failed ? 1 : 0;
}
