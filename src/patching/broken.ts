/**
 * Broken patching protocols (DESIGN.md §5, negative controls): each drops one rule text_poke_bp
 * keeps, and the machine's checks must catch it. They run as a kernel service on one vCPU while
 * the others take locks, on the text_poke_bp machinery and Linux's steps with one hook overridden
 * (src/kernel/text-poke-steps.ts), so the only difference from the correct batch is that step.
 *
 *  - `no-int3`: tails and first bytes written while others run the site (no breakpoint barrier).
 *  - `no-sync`: INT3, tail, first byte with no text_poke_sync between them.
 *  - `skip-one`: every sync IPIs and waits for all vCPUs but `skipCpu`.
 *  - `first-before-tail`: INT3, sync, first byte, sync, tail, sync (alternative.c writes the tail
 *    first: the new first byte must never be fetched in front of an old tail).
 */
import { GuestConfigError } from '../kernel/errors.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { SERVICE_BASE, lockAddress } from '../kernel/layout.ts';
import { QSPINLOCK, type LockWordModel } from '../kernel/lock-word.ts';
import { V2_HOOKS, type V2Hooks } from './v2-hooks.ts';
import { V1_HOOKS, type V1Generation, type V1Hooks } from '../kernel/stop-machine.ts';
import { TextPokeBp } from '../kernel/text-poke.ts';
import { TEXT_POKE_BP_STEPS, TextStep, textPokeSync, type TextPokeBpSteps } from '../kernel/text-poke-steps.ts';
import type { TextPatch } from '../kernel/text-poke-loc.ts';
import type { Guest } from '../kernel/guest.ts';
import type { RunOptions } from '../machine/machine.ts';
import { enterBeforeTask, runAndJudge, type PatchRunResult } from './run-patcher.ts';
import { PvOp, directCall } from '../kernel/pv-ops.ts';
import { nopPadding } from '../x86/nops.ts';

export type BrokenVariant = 'no-int3' | 'no-sync' | 'skip-one' | 'first-before-tail';

/** Where the broken batch service lives (clear of text_poke's services at +0x100..+0x120). */
export const BROKEN_SERVICE = SERVICE_BASE + 0x400;

export interface BrokenOptions {
  variant: BrokenVariant;
  patcherCpu: number;
  /** `skip-one`: the vCPU every sync leaves out. */
  skipCpu?: number;
}

export interface BrokenResult extends PatchRunResult {
  syncs: number;
}

/**
 * Each variant is Linux's steps (TEXT_POKE_BP_STEPS) with one hook overridden:
 *  - `no-int3`: the order without step 1 (the tails and first bytes go straight in while others run them);
 *  - `no-sync`: `sync` only serializes the patcher itself;
 *  - `skip-one`: `sync` IPIs and waits for every vCPU but `skipCpu` (a stale cpumask);
 *  - `first-before-tail`: the order INT3, first bytes, tails.
 */
export function brokenSteps(o: BrokenOptions, nCpus: number): TextPokeBpSteps {
  const real = TEXT_POKE_BP_STEPS;
  switch (o.variant) {
    case 'no-int3':
      return { ...real, order: [TextStep.Tails, TextStep.FirstBytes] };
    case 'no-sync':
      return { ...real, *sync({ ctx, stats }) { stats.syncs++; yield* ctx.serialize(); } };
    case 'skip-one': {
      const mask = Array.from({ length: nCpus }, (_, t) => t).filter((t) => t !== o.skipCpu);
      return { ...real, sync: ({ ctx, stats }) => textPokeSync(ctx, nCpus, stats, mask) };
    }
    case 'first-before-tail':
      return { ...real, order: [TextStep.Int3, TextStep.FirstBytes, TextStep.Tails] };
  }
}

/**
 * Patch `patches` with `variant` on `patcherCpu`, then run the guest to completion and judge it.
 * The batch runs at BROKEN_SERVICE; the sites' INT3s (when the variant writes them) are handled by
 * the real poke_int3_handler.
 */
export function brokenPatch(guest: Guest, patches: readonly TextPatch[], o: BrokenOptions, opts: RunOptions = {}): BrokenResult {
  const m = guest.machine;
  const tp = new TextPokeBp(m, brokenSteps(o, m.vcpus.length));
  tp.queue(patches);
  m.registerService(BROKEN_SERVICE, `text_poke_bp_broken(${o.variant})`, (ctx) => tp.batch(ctx));
  enterBeforeTask(guest, o.patcherCpu, BROKEN_SERVICE);
  const r = runAndJudge(guest, () => tp.stats.batchesDone === 1, opts);
  return { ...r, syncs: tp.stats.syncs };
}

// ---- v1 without its NMI handling (RFC PATCH 15–19, seeds 000 and 002) ----

export type V1BrokenVariant = 'int3-retry' | 'nmi-iret';

/**
 * v1's hooks with the #BP handler's one step changed:
 *  - `int3-retry`: no state machine in the handler: back to the INT3, hoping it is gone (an NMI
 *    that meets it runs it forever while the primary waits for that vCPU's acknowledgement);
 *  - `nmi-iret`: the RFC's handler, but returning with IRET in NMI context too (re-opens NMIs).
 */
export function v1BrokenHooks(variant: V1BrokenVariant): V1Hooks {
  switch (variant) {
    case 'int3-retry':
      return { ...V1_HOOKS, bpEmulation: (h) => h.resume(false) };
    case 'nmi-iret':
      return { ...V1_HOOKS, *bpEmulation(h) { yield* h.drive(); yield* h.resume(false); } };
  }
}

// ---- v2 without its global barrier (seed 001) ----

/** v2's hooks with the flip condition dropped: switch on a zero count before every vCPU counts. */
export function v2NoBarrierHooks(): V2Hooks {
  return { ...V2_HOOKS, *flipCondition() { return true; } };
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
