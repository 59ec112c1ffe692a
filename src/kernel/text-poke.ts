/**
 * text_poke() and text_poke_bp_batch() (Linux 5.x/6.x arch/x86/kernel/alternative.c) as kernel
 * services on the patcher vCPU, with text_poke_sync() = on_each_cpu(do_sync_core, NULL, 1): a
 * SYNC IPI to every other vCPU, whose handler serializes and acknowledges (seed 003: every CPU
 * that may execute the code must serialize; Intel SDM 8.1.3).
 */
import type { Machine } from '../machine/machine.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { CostClass } from '../machine/chooser.ts';
import { SERVICE_BASE, VECTOR } from './layout.ts';
import { pokeInt3Handler, type Int3Stats } from './int3.ts';
import { BP_DESC, Opcode, SYNC_ACKS, TP_LOC, TP_VEC, TP_VEC_MAX, relAddr, textPokeLocInit, type TextPatch, type TextPokeLoc } from './text-poke-loc.ts';
import { TextPokeError } from './text-poke-errors.ts';

/** Where the text_poke services live (after the slowpath services of src/kernel/image.ts). */
export const TEXT_POKE_SERVICE = {
  textPokeBpBatch: SERVICE_BASE + 0x100,
  pokeInt3Handler: SERVICE_BASE + 0x110,
  doSyncCore: SERVICE_BASE + 0x120,
} as const;

/** x2APIC ICR destination shorthand "all excluding self" (SDM Vol. 3 11.6.1). */
const ICR_ALL_BUT_SELF = 3 << 18;

export interface TextPokeStats extends Int3Stats {
  /** SYNC IPIs sent (one per other vCPU per text_poke_sync). */
  ipis: number;
  syncs: number;
  /** Batches text_poke_bp_batch finished (the refcount dropped to zero). */
  batchesDone: number;
}

/** text_poke(): one write through the alias mapping, one scheduling step. */
export function* textPoke(ctx: ServiceContext, address: number, bytes: ArrayLike<number>): Generator<number, void, void> {
  ctx.exec.memory.poke(address, bytes, ctx.cpu.id);
  yield CostClass.Store;
}

/**
 * The text_poke_bp machinery of one guest machine: the services, the IDT entries for #BP and the
 * SYNC vector, the statistics, and the batches queued for the patcher (text_poke_queue's tp_vec).
 */
export class TextPokeBp {
  readonly stats: TextPokeStats = { int3Hits: 0, ipis: 0, syncs: 0, batchesDone: 0 };
  private readonly queued: TextPokeLoc[][] = [];

  constructor(machine: Machine) {
    const stats = this.stats;
    const nCpus = machine.vcpus.length;
    machine.registerService(TEXT_POKE_SERVICE.textPokeBpBatch, 'text_poke_bp_batch', (ctx) => this.batch(ctx, nCpus));
    machine.registerService(TEXT_POKE_SERVICE.pokeInt3Handler, 'poke_int3_handler', (ctx) => pokeInt3Handler(ctx, stats));
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

  /** text_poke_bp_batch(): each numbered step as in alternative.c, each write its own step. */
  private *batch(ctx: ServiceContext, nCpus: number): ServiceBody {
    const tp = this.queued.shift();
    if (tp === undefined) throw new TextPokeError('text_poke_bp_batch called with nothing queued');

    // Publish the batch: tp_vec, then bp_desc.{vec,nr_entries}, then refs = 1. The text writes
    // below go through the alias mapping (memory.poke), not this vCPU's store buffer, so refs is
    // published with a locked xchg: it must be visible before the first 0xCC can be hit.
    for (let i = 0; i < tp.length; i++) yield* writeLoc(ctx, TP_VEC + i * TP_LOC.size, tp[i]!);
    yield* ctx.store(BP_DESC.vec, 8, TP_VEC);
    yield* ctx.store(BP_DESC.nrEntries, 4, tp.length);
    yield* ctx.xchg(BP_DESC.refs, 4, 1);

    // First step: an INT3 on every site's first byte. From here a vCPU reaching a site either
    // runs the old instruction (it has not seen the 0xCC yet: legal, DESIGN.md §2) or traps and
    // the handler emulates the new one.
    for (let i = 0; i < tp.length; i++) {
      const loc = tp[i]!;
      yield* ctx.store(TP_VEC + i * TP_LOC.size + TP_LOC.old, 1, yield* ctx.load(loc.address, 1)); // tp->old
      yield* textPoke(ctx, loc.address, [Opcode.INT3]);
    }
    yield* this.sync(ctx, nCpus);

    // Second step: every byte but the first. No vCPU can fetch them now: all have serialized
    // after the 0xCC went in, so each traps at the first byte instead of decoding the tail.
    let doSync = false;
    for (const loc of tp) {
      if (loc.len <= 1) continue;
      yield* textPoke(ctx, loc.address + 1, loc.text.subarray(1));
      doSync = true;
    }
    // Intel says this sync is probably unnecessary; Linux keeps it "better safe than sorry".
    if (doSync) yield* this.sync(ctx, nCpus);

    // Third step: the first byte, replacing the INT3 (skipped when the new first byte is 0xCC).
    doSync = false;
    for (const loc of tp) {
      if (loc.text[0] === Opcode.INT3) continue;
      yield* textPoke(ctx, loc.address, loc.text.subarray(0, 1));
      doSync = true;
    }
    // After this sync no vCPU can still be about to fetch an INT3 of ours: a handler that
    // trapped earlier runs with IF clear, so this vCPU acknowledges only after it returned.
    if (doSync) yield* this.sync(ctx, nCpus);

    // Remove and wait for refs to be zero: handlers still emulating hold the batch in memory.
    if ((yield* ctx.fetchAdd(BP_DESC.refs, 4, -1)) !== 1) {
      while ((yield* ctx.load(BP_DESC.refs, 4)) !== 0) yield* ctx.pause();
    }
    this.stats.batchesDone++;
  }

  /** text_poke_sync(): on_each_cpu(do_sync_core, NULL, 1) — IPI everyone, wait for every ack. */
  private sync(ctx: ServiceContext, nCpus: number): Generator<number, void, void> {
    return textPokeSync(ctx, nCpus, this.stats);
  }
}

/**
 * text_poke_sync(): on_each_cpu(do_sync_core, NULL, 1) — IPI everyone, wait for every ack. Needs
 * do_sync_core on VECTOR.SYNC (a TextPokeBp installs it). Shared with the v2 lock-op switch.
 */
export function* textPokeSync(ctx: ServiceContext, nCpus: number, stats: { syncs: number; ipis: number }): Generator<number, void, void> {
  stats.syncs++;
  yield* ctx.serialize(); // do_sync_core() on this CPU too
  if (nCpus === 1) return;
  // Reset the acknowledgements; the locked op is also the fence before the ICR write
  // (weak_wrmsr_fence), so every text write is visible before any IPI lands.
  yield* ctx.xchg(SYNC_ACKS, 4, 0);
  ctx.exec.sendIpi(ctx.cpu.id, VECTOR.SYNC | ICR_ALL_BUT_SELF, 0);
  stats.ipis += nCpus - 1;
  yield* ctx.work(CostClass.Serializing);
  while ((yield* ctx.load(SYNC_ACKS, 4)) < nCpus - 1) yield* ctx.pause();
}

/** tp_vec[i] = loc (the patcher's private data until bp_desc publishes it). */
export function* writeLoc(ctx: ServiceContext, at: number, loc: TextPokeLoc): Generator<number, void, void> {
  const textWord = (from: number) => loc.text.subarray(from, from + 4).reduce((acc, b, i) => acc + b * 2 ** (8 * i), 0);
  yield* ctx.store(at + TP_LOC.relAddr, 4, relAddr(loc.address));
  yield* ctx.store(at + TP_LOC.disp, 4, loc.disp);
  yield* ctx.store(at + TP_LOC.len, 2, loc.len | (loc.opcode << 8));
  yield* ctx.store(at + TP_LOC.text, 4, textWord(0));
  yield* ctx.store(at + TP_LOC.text + 4, 4, textWord(4));
}

/** do_sync_core(): the SYNC IPI handler — serialize, acknowledge, IRET (itself serializing). */
function* doSyncCore(ctx: ServiceContext): ServiceBody {
  yield* ctx.serialize();
  yield* ctx.fetchAdd(SYNC_ACKS, 4, 1);
  yield* ctx.iret();
}
