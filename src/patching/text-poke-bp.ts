/**
 * The text_poke_bp protocol on a running guest (DESIGN.md §5): vCPU `patcherCpu` runs
 * text_poke_bp_batch() before its own task while every vCPU (the patcher's interrupt handlers
 * too) keeps taking locks; then the guest's checks judge the run.
 */
import { Reg } from '../x86/registers.ts';
import { stackTop } from '../kernel/layout.ts';
import { TextPokeBp, TEXT_POKE_SERVICE } from '../kernel/text-poke.ts';
import { Int3EmulationError } from '../kernel/text-poke-errors.ts';
import { KernelBug } from '../kernel/errors.ts';
import type { TextPatch } from '../kernel/text-poke-loc.ts';
import type { Guest, LockReport } from '../kernel/guest.ts';
import type { RunOptions, RunResult } from '../machine/machine.ts';

export type TextPokeBpReason =
  | 'ok'
  /** The machine reported a hazard (cmc-unsynchronized, return-into-rewritten). */
  | 'hazard'
  /** The INT3 handler trapped on a site whose new instruction it cannot emulate. */
  | 'not-emulatable'
  /** Another kernel BUG (an INT3 the handler does not know). */
  | 'kernel-bug'
  /** A lock's counter disagrees with its acquisitions: mutual exclusion broke. */
  | 'broken-lock'
  /** Every vCPU halted with tasks unfinished: a lost wake-up. */
  | 'all-halted'
  /** The run ended otherwise (instruction limit, another error) before the tasks finished. */
  | 'unfinished';

export interface TextPokeBpResult {
  ok: boolean;
  reason: TextPokeBpReason;
  detail?: string;
  int3Hits: number;
  ipis: number;
  steps: number;
  /** The batch finished (every site written, every handler gone). */
  patched: boolean;
  run: RunResult;
  locks: LockReport[];
}

/**
 * Queue `patches` as one batch and make `patcherCpu` call text_poke_bp_batch() first (its stack
 * returns into task_entry), then run the guest until every task finishes.
 */
export function textPokeBp(guest: Guest, patches: readonly TextPatch[], patcherCpu: number, opts: RunOptions = {}): TextPokeBpResult {
  const m = guest.machine;
  const tp = new TextPokeBp(m);
  tp.queue(patches);
  const c = m.vcpu(patcherCpu);
  const rsp = c.getAddr(Reg.RSP) - 8;
  if (c.getAddr(Reg.RSP) !== stackTop(patcherCpu) || c.rip !== guest.symbol('task_entry')) {
    throw new KernelBug(`text_poke_bp needs vCPU ${patcherCpu} before its task starts`);
  }
  m.memory.writeBytes(rsp, le64(c.rip));
  c.setAddr(Reg.RSP, rsp);
  c.rip = TEXT_POKE_SERVICE.textPokeBpBatch;

  const run = guest.run(opts);
  const locks = guest.checkLocks();
  const base = { int3Hits: tp.stats.int3Hits, ipis: tp.stats.ipis, steps: run.steps, patched: tp.stats.batchesDone === 1, run, locks };
  const fail = (reason: TextPokeBpReason, detail?: string): TextPokeBpResult => ({ ok: false, reason, ...(detail ? { detail } : {}), ...base });
  if (run.reason === 'hazard') return fail('hazard', run.hazards[0]?.kind);
  if (run.error instanceof Int3EmulationError) return fail('not-emulatable', run.error.message);
  if (run.error instanceof KernelBug) return fail('kernel-bug', run.error.message);
  const broken = locks.find((l) => !l.ok);
  if (broken) return fail('broken-lock', `${broken.role} lock ${broken.index}: counter ${broken.counter} != acquisitions ${broken.acquisitions}`);
  if (run.reason === 'all-halted' && !guest.tasksDone) return fail('all-halted', `${guest.stats.tasksDone} of ${m.vcpus.length} tasks finished`);
  if (!guest.tasksDone || !base.patched) return fail('unfinished', run.error?.message ?? run.reason);
  return { ok: true, reason: 'ok', ...base };
}

function le64(v: number): number[] {
  const u = BigInt.asUintN(64, BigInt(v));
  return Array.from({ length: 8 }, (_, i) => Number((u >> BigInt(8 * i)) & 0xffn));
}
