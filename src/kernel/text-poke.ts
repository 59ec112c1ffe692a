/**
 * The text_poke_bp machinery of a guest (Linux 5.x/6.x arch/x86/kernel/alternative.c): the batch,
 * #BP and SYNC services on the patcher's machine and the queue of batches. The batch's numbered
 * steps, and the hooks a variant overrides, are in src/kernel/text-poke-steps.ts.
 */
import type { Machine } from '../machine/machine.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { SERVICE_BASE, VECTOR } from './layout.ts';
import { EmulationOracle } from './emulation-oracle.ts';
import { TP_VEC_MAX, textPokeLocInit, type TextPatch, type TextPokeLoc } from './text-poke-loc.ts';
import { TextPokeError } from './text-poke-errors.ts';
import { TEXT_POKE_BP_STEPS, doSyncCore, textPokeBpBatch, type TextPokeBpSteps, type TextPokeStats } from './text-poke-steps.ts';

export { textPoke, textPokeSync, writeLoc, type TextPokeStats } from './text-poke-steps.ts';

/** Where the text_poke services live (after the slowpath services of src/kernel/image.ts). */
export const TEXT_POKE_SERVICE = {
  textPokeBpBatch: SERVICE_BASE + 0x100,
  pokeInt3Handler: SERVICE_BASE + 0x110,
  doSyncCore: SERVICE_BASE + 0x120,
} as const;

/**
 * The text_poke_bp machinery of one guest machine: the services, the IDT entries for #BP and the
 * SYNC vector, the statistics, and the batches queued for the patcher (text_poke_queue's tp_vec).
 */
export class TextPokeBp {
  readonly stats: TextPokeStats = { int3Hits: 0, ipis: 0, syncs: 0, batchesDone: 0 };
  /** The emulation oracle: the old and new bytes of each site of the batch in flight. */
  readonly emulation = new EmulationOracle();
  private readonly queued: TextPokeLoc[][] = [];
  private readonly nCpus: number;

  /** `steps`: the batch's steps and hooks (default Linux's; a variant overrides one). */
  constructor(machine: Machine, readonly steps: TextPokeBpSteps = TEXT_POKE_BP_STEPS) {
    const stats = this.stats;
    this.nCpus = machine.vcpus.length;
    machine.registerService(TEXT_POKE_SERVICE.textPokeBpBatch, 'text_poke_bp_batch', (ctx) => this.batch(ctx));
    machine.registerService(TEXT_POKE_SERVICE.pokeInt3Handler, 'poke_int3_handler', (ctx) => steps.bpEmulation(ctx, stats, this.emulation));
    machine.registerService(TEXT_POKE_SERVICE.doSyncCore, 'do_sync_core', doSyncCore);
    machine.setIdt(VECTOR.BP, TEXT_POKE_SERVICE.pokeInt3Handler);
    machine.setIdt(VECTOR.SYNC, TEXT_POKE_SERVICE.doSyncCore);
  }

  /** Take over `o`'s counters and queued batches (a fork of the guest it runs on). */
  copyStateFrom(o: TextPokeBp): void {
    Object.assign(this.stats, o.stats);
    this.queued.length = 0;
    this.queued.push(...o.queued.map((b) => [...b]));
  }

  /** text_poke_queue() + sorting: the next call of the batch service patches these sites. */
  queue(patches: readonly TextPatch[]): TextPokeLoc[] {
    if (patches.length < 1 || patches.length > TP_VEC_MAX) throw new TextPokeError(`a batch has 1..${TP_VEC_MAX} sites, not ${patches.length}`);
    const locs = patches.map(textPokeLocInit).sort((a, b) => a.address - b.address);
    for (let i = 1; i < locs.length; i++) {
      if (locs[i]!.address < locs[i - 1]!.address + locs[i - 1]!.len) throw new TextPokeError('two sites of a batch overlap');
    }
    this.queued.push(locs);
    return locs;
  }

  /**
   * text_poke_bp_batch() with this machinery's steps (src/kernel/text-poke-steps.ts): the service
   * body, for a caller that registers the batch at an address of its own (a negative control).
   */
  *batch(ctx: ServiceContext): ServiceBody {
    const tp = this.queued.shift();
    if (tp === undefined) throw new TextPokeError('text_poke_bp_batch called with nothing queued');
    yield* textPokeBpBatch({ ctx, tp, nCpus: this.nCpus, stats: this.stats, emulation: this.emulation, steps: this.steps });
  }
}
