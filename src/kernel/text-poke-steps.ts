/**
 * text_poke_bp_batch() (Linux 5.x/6.x arch/x86/kernel/alternative.c) as numbered steps, each a
 * generator that yields at every shared access, and the hooks a variant overrides (the protocol
 * API: src/patching/protocol-api.ts). The stock protocol is TEXT_POKE_BP_STEPS; a variant is
 * `{ ...TEXT_POKE_BP_STEPS, <one hook>: ... }`, so it differs from Linux's by exactly that step.
 *
 * text_poke_sync() = on_each_cpu(do_sync_core, NULL, 1): a SYNC IPI to every other vCPU, whose
 * handler serializes and acknowledges (seed 003: every CPU that may execute the code must
 * serialize; Intel SDM 8.1.3).
 */
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { CostClass } from '../machine/chooser.ts';
import { VECTOR } from './layout.ts';
import { pokeInt3Handler, type Int3Stats } from './int3.ts';
import type { EmulationOracle } from './emulation-oracle.ts';
import { BP_DESC, Opcode, SYNC_ACKS, TP_LOC, TP_VEC, relAddr, type TextPokeLoc } from './text-poke-loc.ts';

/** x2APIC ICR destination shorthand "all excluding self" (SDM Vol. 3 11.6.1). */
const ICR_ALL_BUT_SELF = 3 << 18;

/** A step of the patcher: one generator, one scheduling point per shared access. */
export type Step<T = void> = Generator<number, T, void>;

export interface TextPokeStats extends Int3Stats {
  /** SYNC IPIs sent (one per other vCPU per text_poke_sync). */
  ipis: number;
  syncs: number;
  /** Batches text_poke_bp_batch finished (the refcount dropped to zero). */
  batchesDone: number;
}

/** What every step of one batch sees: the patcher's context, the sorted tp_vec, the machinery. */
export interface PokeBatch {
  readonly ctx: ServiceContext;
  readonly tp: readonly TextPokeLoc[];
  readonly nCpus: number;
  readonly stats: TextPokeStats;
  readonly emulation: EmulationOracle;
  /** The batch's own steps (a step may call another, e.g. `sync`). */
  readonly steps: TextPokeBpSteps;
}

/** The three text writes of a batch, in alternative.c's numbering. */
export const TextStep = { Int3: 'int3', Tails: 'tails', FirstBytes: 'first-bytes' } as const;
export type TextStep = (typeof TextStep)[keyof typeof TextStep];

/**
 * The steps and hooks of a text_poke_bp batch. The batch runs `publish`, then each text step of
 * `order` followed by `sync(after)` when it wrote anything, then `release`; every vCPU that traps
 * on an INT3 of the batch runs `bpEmulation`.
 */
export interface TextPokeBpSteps {
  /** Publish tp_vec and bp_desc, refs = 1: a handler must find the batch before any 0xCC is visible. */
  publish(b: PokeBatch): Step;
  /** Step 1: an INT3 on every site's first byte (the barrier). Returns whether it wrote anything. */
  int3(b: PokeBatch): Step<boolean>;
  /** Step 2: every byte but the first (no vCPU decodes them: all trap at the 0xCC). */
  tails(b: PokeBatch): Step<boolean>;
  /** Step 3: the first bytes, replacing the INT3s. */
  firstBytes(b: PokeBatch): Step<boolean>;
  /** text_poke_sync() after text step `after`: how every CPU is serialized. */
  sync(b: PokeBatch, after: TextStep): Step;
  /** Drop refs and wait for in-flight handlers: they read tp_vec until they put their reference. */
  release(b: PokeBatch): Step;
  /** The order of the text steps (Linux: INT3, tails, first bytes). */
  readonly order: readonly TextStep[];
  /** The #BP handler at a site of the batch (Linux: poke_int3_handler, emulating the new instruction). */
  bpEmulation(ctx: ServiceContext, stats: Int3Stats, oracle: EmulationOracle): ServiceBody;
}

/** text_poke(): one write through the alias mapping, one scheduling step. */
export function* textPoke(ctx: ServiceContext, address: number, bytes: ArrayLike<number>): Step {
  ctx.exec.memory.poke(address, bytes, ctx.cpu.id);
  yield CostClass.Store;
}

/**
 * text_poke_sync(): on_each_cpu(do_sync_core, NULL, 1) — IPI everyone, wait for every ack. Needs
 * do_sync_core on VECTOR.SYNC (a TextPokeBp installs it). Shared with the v2 lock-op switch.
 * `cpus`: the vCPUs to IPI and wait for instead of every other one (a stale cpumask: a control).
 */
export function* textPokeSync(ctx: ServiceContext, nCpus: number, stats: { syncs: number; ipis: number }, cpus?: readonly number[]): Step {
  stats.syncs++;
  yield* ctx.serialize(); // do_sync_core() on this CPU too
  if (nCpus === 1) return;
  // Reset the acknowledgements; the locked op is also the fence before the ICR write
  // (weak_wrmsr_fence), so every text write is visible before any IPI lands.
  yield* ctx.xchg(SYNC_ACKS, 4, 0);
  let expected = nCpus - 1;
  if (cpus === undefined) ctx.exec.sendIpi(ctx.cpu.id, VECTOR.SYNC | ICR_ALL_BUT_SELF, 0);
  else {
    const targets = cpus.filter((t) => t !== ctx.cpu.id);
    for (const t of targets) ctx.exec.sendIpi(ctx.cpu.id, VECTOR.SYNC, t);
    expected = targets.length;
  }
  stats.ipis += expected;
  yield* ctx.work(CostClass.Serializing);
  while ((yield* ctx.load(SYNC_ACKS, 4)) < expected) yield* ctx.pause();
}

/** tp_vec[i] = loc (the patcher's private data until bp_desc publishes it). */
export function* writeLoc(ctx: ServiceContext, at: number, loc: TextPokeLoc): Step {
  const textWord = (from: number) => loc.text.subarray(from, from + 4).reduce((acc, b, i) => acc + b * 2 ** (8 * i), 0);
  yield* ctx.store(at + TP_LOC.relAddr, 4, relAddr(loc.address));
  yield* ctx.store(at + TP_LOC.disp, 4, loc.disp);
  yield* ctx.store(at + TP_LOC.len, 2, loc.len | (loc.opcode << 8));
  yield* ctx.store(at + TP_LOC.text, 4, textWord(0));
  yield* ctx.store(at + TP_LOC.text + 4, 4, textWord(4));
}

/** do_sync_core(): the SYNC IPI handler — serialize, acknowledge, IRET (itself serializing). */
export function* doSyncCore(ctx: ServiceContext): ServiceBody {
  yield* ctx.serialize();
  yield* ctx.fetchAdd(SYNC_ACKS, 4, 1);
  yield* ctx.iret();
}

/** Linux's text_poke_bp_batch(), step by step. */
export const TEXT_POKE_BP_STEPS: TextPokeBpSteps = {
  *publish({ ctx, tp, emulation }) {
    // tp_vec, then bp_desc.{vec,nr_entries}, then refs = 1. The text writes go through the alias
    // mapping (memory.poke), not this vCPU's store buffer, so refs is published with a locked
    // xchg: it must be visible before the first 0xCC can be hit.
    for (let i = 0; i < tp.length; i++) yield* writeLoc(ctx, TP_VEC + i * TP_LOC.size, tp[i]!);
    // The oracle's record (not guest state): what each site holds now, and what it will hold.
    for (const loc of tp) emulation.expect(loc.address, ctx.exec.memory.readBytes(loc.address, loc.len), loc.text);
    yield* ctx.store(BP_DESC.vec, 8, TP_VEC);
    yield* ctx.store(BP_DESC.nrEntries, 4, tp.length);
    yield* ctx.xchg(BP_DESC.refs, 4, 1);
  },

  *int3({ ctx, tp }) {
    // From here a vCPU reaching a site either runs the old instruction (it has not seen the 0xCC
    // yet: legal, DESIGN.md §2) or traps and the handler emulates the new one.
    for (let i = 0; i < tp.length; i++) {
      const loc = tp[i]!;
      yield* ctx.store(TP_VEC + i * TP_LOC.size + TP_LOC.old, 1, yield* ctx.load(loc.address, 1)); // tp->old
      yield* textPoke(ctx, loc.address, [Opcode.INT3]);
    }
    return true;
  },

  *tails({ ctx, tp }) {
    // No vCPU can fetch these bytes now: all have serialized after the 0xCC went in, so each
    // traps at the first byte instead of decoding the tail.
    let wrote = false;
    for (const loc of tp) {
      if (loc.len <= 1) continue;
      yield* textPoke(ctx, loc.address + 1, loc.text.subarray(1));
      wrote = true;
    }
    return wrote;
  },

  *firstBytes({ ctx, tp }) {
    // Skipped when the new first byte is itself 0xCC.
    let wrote = false;
    for (const loc of tp) {
      if (loc.text[0] === Opcode.INT3) continue;
      yield* textPoke(ctx, loc.address, loc.text.subarray(0, 1));
      wrote = true;
    }
    return wrote;
  },

  // After INT3: every CPU traps from now on. After the tails: Intel says this one is probably
  // unnecessary; Linux keeps it "better safe than sorry". After the first bytes: no vCPU can
  // still be about to fetch an INT3 of ours (a handler that trapped earlier runs with IF clear,
  // so its vCPU acknowledges only after it returned).
  sync: ({ ctx, nCpus, stats }) => textPokeSync(ctx, nCpus, stats),

  *release({ ctx, tp, emulation, stats }) {
    if ((yield* ctx.fetchAdd(BP_DESC.refs, 4, -1)) !== 1) {
      while ((yield* ctx.load(BP_DESC.refs, 4)) !== 0) yield* ctx.pause();
    }
    for (const loc of tp) emulation.forget(loc.address);
    stats.batchesDone++;
  },

  order: [TextStep.Int3, TextStep.Tails, TextStep.FirstBytes],

  bpEmulation: pokeInt3Handler,
};

/** text_poke_bp_batch(): publish, the text steps in `order` each followed by its sync, release. */
export function* textPokeBpBatch(b: PokeBatch): Step {
  const s = b.steps;
  yield* s.publish(b);
  for (const step of s.order) {
    const wrote = step === TextStep.Int3 ? yield* s.int3(b) : step === TextStep.Tails ? yield* s.tails(b) : yield* s.firstBytes(b);
    if (wrote) yield* s.sync(b, step);
  }
  yield* s.release(b);
}
