/**
 * The text_poke_bp protocol on a running guest (DESIGN.md §5): vCPU `patcherCpu` runs
 * text_poke_bp_batch() before its own task while every vCPU (the patcher's interrupt handlers
 * too) keeps taking locks; then the guest's checks judge the run.
 */
import { TextPokeBp, TEXT_POKE_SERVICE } from '../kernel/text-poke.ts';
import type { TextPatch } from '../kernel/text-poke-loc.ts';
import type { Guest } from '../kernel/guest.ts';
import type { RunOptions } from '../machine/machine.ts';
import { enterBeforeTask, runAndJudge, type PatchRunReason, type PatchRunResult } from './run-patcher.ts';

/** The verdicts of a patcher run (shared with v1 and the broken variants). */
export type TextPokeBpReason = PatchRunReason;

export interface TextPokeBpResult extends PatchRunResult {
  int3Hits: number;
  ipis: number;
  steps: number;
}

/**
 * Queue `patches` as one batch and make `patcherCpu` call text_poke_bp_batch() first (its stack
 * returns into task_entry), then run the guest until every task finishes.
 */
export function textPokeBp(guest: Guest, patches: readonly TextPatch[], patcherCpu: number, opts: RunOptions = {}): TextPokeBpResult {
  const tp = new TextPokeBp(guest.machine);
  tp.queue(patches);
  enterBeforeTask(guest, patcherCpu, TEXT_POKE_SERVICE.textPokeBpBatch);
  const r = runAndJudge(guest, () => tp.stats.batchesDone === 1, opts);
  return { ...r, int3Hits: tp.stats.int3Hits, ipis: tp.stats.ipis, steps: r.run.steps };
}
