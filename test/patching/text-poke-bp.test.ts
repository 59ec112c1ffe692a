// text_poke_bp (Linux 6.x arch/x86/kernel/alternative.c) on the running guest: it switches what it
// can emulate — a CALL's target, a CALL to a NOP — with no hazard while every vCPU takes locks in
// task, IRQ and NMI context; and it cannot switch the lock ops (seeds 000, 001): the native unlock
// `movb $0,(%rdi)` is not emulatable, and switching one op at a time loses wake-ups.
import { isNonAtomicSwitch } from '../../src/kernel/atomic-switch.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { SERVICE_BASE, VECTOR } from '../../src/kernel/layout.ts';
import { PvOp, directCall, patchBytes, type PatchSite } from '../../src/kernel/pv-ops.ts';
import { pvSlowpath } from '../../src/kernel/qspinlock-slowpath.ts';
import { linuxNop } from '../../src/x86/nops.ts';
import { Opcode, textPokeLocInit } from '../../src/kernel/text-poke-loc.ts';
import { TextPokeError } from '../../src/kernel/text-poke-errors.ts';
import { textPokeBp } from '../../src/patching/text-poke-bp.ts';
import { describeHazard } from '../../src/cli/hazard-text.ts';

const SEEDS = 500;
const INJECT = { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ };
/** A second copy of __pv_queued_spin_lock_slowpath (as a livepatch would install). */
const PV_SLOWPATH_V2 = SERVICE_BASE + 0x200;

// spinThreshold 64: see the report — with very short spins the host model loses a kick sent
// just before the waiter's HLT, with or without patching.
function pvGuest(seed: number, spinThreshold = 64): Guest {
  return new Guest({ vcpus: 4, flavor: 'pv', spinThreshold, workload: { iterations: 3 }, seed });
}

function site(g: Guest, type: PvOp): PatchSite {
  return g.image.sites.find((s) => s.type === type)!;
}

/** The 5-byte CALL at a site (text_poke_bp writes one instruction; the site's NOP tail stays). */
function callAt(s: PatchSite, target: number) {
  return { address: s.address, bytes: directCall(s, target).subarray(0, 5) };
}

test('text_poke_loc_init: CALL keeps its displacement, NOP5 is emulated as JMP32 +0, movb is left to BUG', () => {
  const call = textPokeLocInit({ address: 0x1000, bytes: [0xe8, 0xfb, 0x0f, 0x00, 0x00] });
  assert.equal(call.opcode, Opcode.CALL);
  assert.equal(call.disp, 0xffb);
  const nop = textPokeLocInit({ address: 0x1000, bytes: linuxNop(5) });
  assert.deepEqual([nop.opcode, nop.disp], [Opcode.JMP32, 0]);
  const unlock = textPokeLocInit({ address: 0x1000, bytes: [0xc6, 0x07, 0x00, 0x0f, 0x1f, 0x40, 0x00] });
  assert.equal(unlock.opcode, 0xc6);
  assert.equal(unlock.insn, 'movb $0,(%rdi)');
});

test('text_poke_loc_init refuses a CALL plus padding as one site (one instruction per site)', () => {
  assert.throws(() => textPokeLocInit({ address: 0x1000, bytes: [0xe8, 0, 0, 0, 0, 0x90] }), TextPokeError);
});

test(`switching the PV slowpath site between two CALL targets: no hazard, locks OK, tasks finish on ${SEEDS} seeds with IRQs and NMIs`, () => {
  let int3Hits = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const g = pvGuest(seed);
    g.machine.registerService(PV_SLOWPATH_V2, '__pv_queued_spin_lock_slowpath_v2', (ctx) => pvSlowpath(ctx, g.env));
    const s = site(g, PvOp.QueuedSpinLockSlowpath);
    const r = textPokeBp(g, [callAt(s, PV_SLOWPATH_V2)], seed % 4, { chooser: new RandomChooser(seed), inject: INJECT });
    assert.equal(r.reason, 'ok', `seed ${seed}: ${r.reason} ${r.detail ?? ''}`);
    assert.deepEqual(Array.from(g.machine.memory.readBytes(s.address, 6)), Array.from(directCall(s, PV_SLOWPATH_V2)));
    assert.equal(r.ipis, 3 * 3, 'three syncs, each an IPI to the three other vCPUs');
    int3Hits += r.int3Hits;
  }
  assert.ok(int3Hits > SEEDS, `the sweep made vCPUs trap on the INT3 and the handler emulate the CALL (${int3Hits} hits)`);
});

test('a batch of two ops that do not depend on each other (wait, vcpu_is_preempted) switches to native targets safely', () => {
  for (let seed = 1; seed <= 100; seed++) {
    const g = pvGuest(seed);
    const wait = site(g, PvOp.Wait), pre = site(g, PvOp.VcpuIsPreempted);
    const patches = [callAt(wait, g.image.targets.native[PvOp.Wait]), callAt(pre, g.image.targets.native[PvOp.VcpuIsPreempted])];
    const r = textPokeBp(g, patches, seed % 4, { chooser: new RandomChooser(seed), inject: INJECT });
    assert.equal(r.reason, 'ok', `seed ${seed}: ${r.reason} ${r.detail ?? ''}`);
  }
});

test('switching the unlock sites PV -> native fails: the INT3 handler meets movb $0,(%rdi), which it cannot emulate', () => {
  const g = pvGuest(1, 4);
  const unlocks = g.image.sites.filter((s) => s.type === PvOp.QueuedSpinUnlock);
  const patches = unlocks.map((s) => ({ address: s.address, bytes: patchBytes(s, 'native', g.image.targets) }));
  const r = textPokeBp(g, patches, 0, { chooser: new RandomChooser(1) });
  assert.equal(r.ok, false);
  assert.equal(r.reason, 'not-emulatable');
  assert.match(r.detail!, /trapped at 0x[0-9a-f]+ whose new instruction 'movb \$0,\(%rdi\)' cannot be emulated/);
  assert.equal(r.patched, false);
});

test('switching one op at a time loses wake-ups: kick becomes a NOP while waiters still halt in PV wait; the atomic-switch oracle names the first native kick', () => {
  // The kick site's CALL kvm_kick_cpu becomes NOP5 (native kick = paravirt_nop): text_poke_bp
  // does it cleanly, but the slowpath and wait ops are still PV, so waiters halt and nobody wakes them.
  const caught = pvGuest(1, 4);
  const kick = site(caught, PvOp.Kick);
  const first = textPokeBp(caught, [{ address: kick.address, bytes: linuxNop(5) }], 0, { chooser: new RandomChooser(1) });
  assert.equal(first.reason, 'hazard');
  assert.ok(isNonAtomicSwitch(first.hazard), 'the atomic-switch oracle fired');
  assert.match(describeHazard(first.hazard!), /native pv_kick \(a NOP\) of vCPU \d+ .* PV slowpath/);

  const g = pvGuest(1, 4);
  g.atomicSwitch.mode = 'record'; // let the run go on to the harm
  const r = textPokeBp(g, [{ address: kick.address, bytes: linuxNop(5) }], 0, { chooser: new RandomChooser(1) });
  assert.equal(r.patched, true);
  assert.equal(r.run.hazards.length, 0, 'the patching itself was clean');
  assert.equal(r.reason, 'all-halted');
  assert.ok(g.atomicSwitch.findings.length > 0);
  assert.ok(g.stats.kicks > 0, 'unlockers called pv_kick');
  assert.equal(g.host!.stats.kicks, 0, 'but no KVM_HC_KICK_CPU reached the host');
});

for (const [what, bytes] of [
  ['NOP5 (emulated as JMP32 +0)', Array.from(linuxNop(5))],
  ['RET padded with INT3 (int3_emulate_ret)', [Opcode.RET, Opcode.INT3, Opcode.INT3, Opcode.INT3, Opcode.INT3]],
] as const) {
  test(`the wait site's CALL kvm_wait becomes ${what}: waiters spin instead of halting, no hazard on 100 seeds`, () => {
    let int3Hits = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const g = pvGuest(seed, 4); // short spins: waiters reach pv_wait, so they trap on the site
      const r = textPokeBp(g, [{ address: site(g, PvOp.Wait).address, bytes }], seed % 4, { chooser: new RandomChooser(seed), inject: INJECT });
      assert.equal(r.reason, 'ok', `seed ${seed}: ${r.reason} ${r.detail ?? ''}`);
      int3Hits += r.int3Hits;
    }
    assert.ok(int3Hits > 0, 'some waiter trapped and had the new instruction emulated');
  });
}

test('an INT3 the handler does not know is a kernel BUG, not a silent resume (DESIGN.md §6)', () => {
  const g = pvGuest(1);
  const inlinedUnlock = g.image.sites.filter((s) => s.type === PvOp.QueuedSpinUnlock)[1]!; // the task's spin_unlock
  g.machine.memory.writeBytes(inlinedUnlock.address, [Opcode.INT3]); // a stray breakpoint
  const r = textPokeBp(g, [callAt(site(g, PvOp.Wait), g.image.targets.native[PvOp.Wait])], 0, { chooser: new RandomChooser(1) });
  assert.equal(r.reason, 'kernel-bug');
  assert.match(r.detail!, /kernel BUG: vCPU \d+: int3 at 0xffffffff81[0-9a-f]+/);
});
