/**
 * Broken patching protocols (DESIGN.md §5, negative controls): each drops one rule text_poke_bp
 * keeps, and the machine's checks must catch it. They run as a kernel service on one vCPU while
 * the others take locks, on the text_poke_bp machinery (bp_desc/tp_vec, poke_int3_handler,
 * do_sync_core), so the only difference from the correct batch is the step that is left out.
 *
 *  - `no-int3`: write every byte of the site at once while others run it (no breakpoint barrier).
 *  - `no-sync`: INT3, tail, first byte with no text_poke_sync between them.
 *  - `skip-one`: every sync IPIs and waits for all vCPUs but `skipCpu`.
 *  - `first-before-tail`: INT3, sync, first byte, sync, tail, sync (alternative.c writes the tail
 *    first: the new first byte must never be fetched in front of an old tail).
 */
import { GuestConfigError } from '../kernel/errors.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { CostClass } from '../machine/chooser.ts';
import { SERVICE_BASE, VECTOR, lockAddress } from '../kernel/layout.ts';
import { QSPINLOCK, type LockWordModel } from '../kernel/lock-word.ts';
import type { V1Generation } from '../kernel/stop-machine.ts';
import { TextPokeBp, writeLoc } from '../kernel/text-poke.ts';
import { BP_DESC, Opcode, SYNC_ACKS, TP_LOC, TP_VEC, textPokeLocInit, type TextPatch } from '../kernel/text-poke-loc.ts';
import type { Guest } from '../kernel/guest.ts';
import type { RunOptions } from '../machine/machine.ts';
import { enterBeforeTask, runAndJudge, type PatchRunResult } from './run-patcher.ts';
import { PvOp, directCall } from '../kernel/pv-ops.ts';
import { nopPadding } from '../x86/nops.ts';

export type BrokenVariant = 'no-int3' | 'no-sync' | 'skip-one' | 'first-before-tail';

/** Where the broken batch service lives (clear of text_poke's services at +0x100..+0x120). */
export const BROKEN_SERVICE = SERVICE_BASE + 0x400;

/** ICR delivery: fixed, one destination (shorthand 0) or all excluding self (shorthand 3). */
const ICR_ALL_BUT_SELF = 3 << 18;

export interface BrokenOptions {
  variant: BrokenVariant;
  patcherCpu: number;
  /** `skip-one`: the vCPU every sync leaves out. */
  skipCpu?: number;
}

export interface BrokenResult extends PatchRunResult {
  syncs: number;
}

function* textPoke(ctx: ServiceContext, address: number, bytes: ArrayLike<number>): Generator<number, void, void> {
  ctx.exec.memory.poke(address, bytes, ctx.cpu.id);
  yield CostClass.Store;
}


/**
 * Patch `patches` with `variant` on `patcherCpu`, then run the guest to completion and judge it.
 * The sites' INT3s (when the variant writes them) are handled by the real poke_int3_handler.
 */
export function brokenPatch(guest: Guest, patches: readonly TextPatch[], o: BrokenOptions, opts: RunOptions = {}): BrokenResult {
  const m = guest.machine;
  new TextPokeBp(m); // poke_int3_handler at #BP, do_sync_core at the SYNC vector
  const nCpus = m.vcpus.length;
  const locs = patches.map(textPokeLocInit).sort((a, b) => a.address - b.address);
  let syncs = 0;
  let done = false;

  function* sync(ctx: ServiceContext): Generator<number, void, void> {
    syncs++;
    yield* ctx.serialize();
    if (o.variant === 'no-sync' || nCpus === 1) return;
    yield* ctx.xchg(SYNC_ACKS, 4, 0);
    let expected = nCpus - 1;
    if (o.variant === 'skip-one') {
      // The bug: one vCPU is left out of the IPI (a stale cpumask), and nobody waits for it.
      for (let t = 0; t < nCpus; t++) if (t !== ctx.cpu.id && t !== o.skipCpu) ctx.exec.sendIpi(ctx.cpu.id, VECTOR.SYNC, t);
      expected = nCpus - 2;
    } else {
      ctx.exec.sendIpi(ctx.cpu.id, VECTOR.SYNC | ICR_ALL_BUT_SELF, 0);
    }
    yield* ctx.work(CostClass.Serializing);
    while ((yield* ctx.load(SYNC_ACKS, 4)) < expected) yield* ctx.pause();
  }

  function* batch(ctx: ServiceContext): ServiceBody {
    if (o.variant === 'no-int3') {
      // text_poke() of the whole site (a memcpy, byte by byte) while other vCPUs may be
      // executing it, then the sync: too late for a vCPU that fetched in between.
      for (const loc of locs) for (let i = 0; i < loc.len; i++) yield* textPoke(ctx, loc.address + i, [loc.text[i]!]);
      yield* sync(ctx);
      done = true;
      return;
    }
    for (let i = 0; i < locs.length; i++) yield* writeLoc(ctx, TP_VEC + i * TP_LOC.size, locs[i]!);
    yield* ctx.store(BP_DESC.vec, 8, TP_VEC);
    yield* ctx.store(BP_DESC.nrEntries, 4, locs.length);
    yield* ctx.store(BP_DESC.refs, 4, 1);
    for (const loc of locs) yield* textPoke(ctx, loc.address, [Opcode.INT3]);
    yield* sync(ctx);
    const tails = function* () { for (const loc of locs) if (loc.len > 1) yield* textPoke(ctx, loc.address + 1, loc.text.subarray(1)); };
    const firsts = function* () { for (const loc of locs) yield* textPoke(ctx, loc.address, loc.text.subarray(0, 1)); };
    if (o.variant === 'first-before-tail') {
      yield* firsts();
      yield* sync(ctx);
      yield* tails();
    } else {
      yield* tails();
      yield* sync(ctx);
      yield* firsts();
    }
    yield* sync(ctx);
    if ((yield* ctx.fetchAdd(BP_DESC.refs, 4, -1)) !== 1) {
      while ((yield* ctx.load(BP_DESC.refs, 4)) !== 0) yield* ctx.pause();
    }
    done = true;
  }

  m.registerService(BROKEN_SERVICE, `text_poke_bp_broken(${o.variant})`, batch);
  enterBeforeTask(guest, o.patcherCpu, BROKEN_SERVICE);
  const r = runAndJudge(guest, () => done, opts);
  return { ...r, syncs };
}

// ---- an incompatible lock implementation (seed 000: "both implementations agree what an unlocked spinlock looks like") ----

/** The ticket slowpath service (clear of v1's services at +0x480..+0x4a0). */
export const TICKET_SLOWPATH = SERVICE_BASE + 0x4c0;

/**
 * A ticket lock's ops at the qspinlock sites: the lock word is {head u16, tail u16} and the lock is
 * free when head == tail — not when the word is 0. Unlock is `lock incw (%rdi)` (head++); the
 * slowpath takes a ticket (tail++) and waits for head to reach it. The fast path inlined in
 * _raw_spin_lock stays qspinlock's cmpxchg 0 -> 1, as it would after a runtime switch that only
 * rewrites the pv-op sites.
 */
export function ticketLockSites(guest: Guest): { address: number; bytes: Uint8Array }[] {
  const m = guest.machine;
  if (!m.services.has(TICKET_SLOWPATH)) {
    m.registerService(TICKET_SLOWPATH, 'ticket_spin_lock_slowpath', function* (ctx: ServiceContext): ServiceBody {
      const lock = ctx.arg(0);
      const old = yield* ctx.fetchAdd(lock, 4, 0x10000);
      const ticket = (old >>> 16) & 0xffff;
      while (((yield* ctx.load(lock, 4)) & 0xffff) !== ticket) yield* ctx.pause();
    });
  }
  const out: { address: number; bytes: Uint8Array }[] = [];
  for (const s of guest.image.sites) {
    if (s.type === PvOp.QueuedSpinLockSlowpath) out.push({ address: s.address, bytes: directCall(s, TICKET_SLOWPATH) });
    else if (s.type === PvOp.QueuedSpinUnlock) {
      const b = new Uint8Array(s.len);
      b.set([0x66, 0xf0, 0xff, 0x07]); // lock incw (%rdi)
      b.set(nopPadding(s.len - 4), 4);
      out.push({ address: s.address, bytes: b });
    }
  }
  return out;
}

/**
 * The ticket lock's view of its word: free when head (low 16 bits) == tail (high 16 bits). One
 * holder and no waiters is tail 1, head 0 — a word qspinlock reads as free (its locked byte is 0).
 */
export const TICKET_LOCK: LockWordModel = {
  name: 'ticket lock',
  encode: (m) => (m === 'unlocked' ? 0 : 0x10000),
  read: (w) => ((w & 0xffff) === (w >>> 16) ? 'unlocked' : 'locked'),
};

/** One v1 stop_machine to the ticket lock, declaring its lock word, so v1 checks agreement before the flip. */
export function ticketLockGeneration(guest: Guest): V1Generation {
  const locks = Array.from({ length: guest.workload.taskLocks + 2 }, (_, i) => lockAddress(i));
  return { sites: ticketLockSites(guest), lockWords: { from: QSPINLOCK, to: TICKET_LOCK, locks } };
}

/**
 * A site another patcher has been at: rewrite site `index` into an equivalent encoding that no
 * flavour's patching writes — its NOP padding as 0x66 prefixes and 0x90, or `call X; nop` as
 * `nop; call X` (the return address stays the site's end). The code runs the same; a switch must
 * refuse the site, as Linux's jump_label code BUG()s on a site whose bytes it does not expect.
 */
export function foreignEncoding(guest: Guest, index: number): void {
  const site = guest.image.sites[index];
  if (site === undefined) throw new GuestConfigError(`the guest has sites 0..${guest.image.sites.length - 1}, not ${index}`);
  const mem = guest.machine.memory;
  const bytes = mem.readBytes(site.address, site.len);
  let at = -1;
  for (let i = 0; i + 1 < bytes.length; i++) if (bytes[i] === 0x0f && bytes[i + 1] === 0x1f) at = i;
  if (at >= 0) {
    mem.writeBytes(site.address + at, [...Array<number>(site.len - at - 1).fill(0x66), 0x90]);
    return;
  }
  if (site.len === 6 && bytes[0] === 0xe8 && bytes[5] === 0x90) {
    const disp = (bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16) | (bytes[4]! << 24)) - 1;
    mem.writeBytes(site.address, [0x90, 0xe8, disp & 0xff, (disp >>> 8) & 0xff, (disp >>> 16) & 0xff, (disp >>> 24) & 0xff]);
    return;
  }
  throw new GuestConfigError(`site ${index} has no padding to re-encode`);
}
