// The emulation oracle (DESIGN.md §6): an instruction an INT3 handler emulates must be the site's
// old or new instruction. A text_poke_bp whose tp_vec displacements are miscomputed (relative to
// the site's start instead of its end, a third instruction: `call thunk+5`) is caught at the first
// INT3 hit; the correct batch on the same seeds emulates only the new CALL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { PvOp, directCall } from '../../src/kernel/pv-ops.ts';
import { TextPokeBp, TEXT_POKE_SERVICE } from '../../src/kernel/text-poke.ts';
import { EmulationOracle, emulationOf } from '../../src/kernel/emulation-oracle.ts';
import { enterBeforeTask, runAndJudge } from '../../src/patching/run-patcher.ts';

/** Every PV unlock CALL retargeted to the same thunk with text_poke_bp; `skew` miscomputes tp_vec's displacements. */
function run(seed: number, skew: number) {
  const g = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 4, workload: { iterations: 3 }, seed });
  const thunk = g.image.targets.pv[PvOp.QueuedSpinUnlock];
  const patches = g.image.sites.filter((s) => s.type === PvOp.QueuedSpinUnlock).map((s) => ({ address: s.address, bytes: directCall(s, thunk).subarray(0, 5) }));
  const tp = new TextPokeBp(g.machine);
  for (const loc of tp.queue(patches)) loc.disp += skew;
  enterBeforeTask(g, seed % 4, TEXT_POKE_SERVICE.textPokeBpBatch);
  const r = runAndJudge(g, () => tp.stats.batchesDone === 1, { chooser: new RandomChooser(seed), inject: { nmis: 4, irqs: 8, irqVector: VECTOR.LOCK_IRQ }, maxInstructions: 400_000 });
  return { r, hits: tp.stats.int3Hits };
}

const SEEDS = [1, 2, 3, 4, 5, 6];

test('text_poke_bp with tp_vec displacements off by the CALL\'s length: the oracle stops the run at the first emulation, a third instruction', () => {
  let caught = 0;
  for (const seed of SEEDS) {
    const { r } = run(seed, 5);
    if (r.reason === 'ok') continue; // no vCPU met an INT3 on this seed
    assert.equal(r.reason, 'foreign-emulation', `seed ${seed}: ${r.reason} ${r.detail ?? ''}`);
    assert.match(r.detail!, /emulated 'call 0x[0-9a-f]+' at 0x[0-9a-f]+, which is neither the site's old instruction '.*' nor its new one 'call 0x/);
    caught++;
  }
  assert.ok(caught >= 2, `caught on ${caught} of ${SEEDS.length} seeds`);
});

test('the correct text_poke_bp emulates only the new CALL: clean on the same seeds, INT3s hit', () => {
  let hits = 0;
  for (const seed of SEEDS) {
    const { r, hits: h } = run(seed, 0);
    assert.equal(r.reason, 'ok', `seed ${seed}: ${r.reason} ${r.detail ?? ''}`);
    hits += h;
  }
  assert.ok(hits > 0);
});

test('the oracle compares what instructions do: a NOP is a jump over itself, an emulated CALL may skip the site\'s padding', () => {
  const at = 0x1000;
  const o = new EmulationOracle();
  o.expect(at, [0x0f, 0x1f, 0x44, 0x00, 0x00], [0xe8, 0x10, 0x00, 0x00, 0x00, 0x90]);
  o.check(0, at, { kind: 'jmp', target: at + 5 }); // NOP5 as JMP32 +0
  o.check(0, at, { kind: 'call', target: at + 5 + 0x10 });
  assert.throws(() => o.check(0, at, { kind: 'call', target: at + 0x10 }), /neither the site's old instruction 'jmp 0x1005' nor its new one 'call 0x1015'/);
  assert.deepEqual(emulationOf(Uint8Array.from([0xc6, 0x07, 0x00, 0x0f, 0x1f, 0x40, 0x00]), at), { kind: 'other', bytes: [0xc6, 0x07, 0x00] });
});

test('checkBytes: a site\'s own old or new bytes pass, any other bytes are judged by what they do', () => {
  const o = new EmulationOracle();
  const at = 0x401000;
  const call = [0xe8, 0x10, 0x00, 0x00, 0x00, 0x90]; // call at+0x15, NOP-padded
  const native = [0xc6, 0x07, 0x00, 0x66, 0x66, 0x90]; // movb $0,(%rdi); 3-byte NOP
  o.expect(at, call, native);
  o.checkBytes(0, at, Uint8Array.from(call));
  o.checkBytes(0, at, Uint8Array.from(native));
  // The same CALL with other padding does what the old bytes do: not foreign.
  o.checkBytes(0, at, Uint8Array.from([0xe8, 0x10, 0x00, 0x00, 0x00, 0xcc]));
  assert.throws(() => o.checkBytes(1, at, Uint8Array.from([0xe8, 0x15, 0x00, 0x00, 0x00, 0x90])), /emulated 'call 0x40101a'/);
  o.forget(at);
  o.checkBytes(1, at, Uint8Array.from([0xe8, 0x15, 0x00, 0x00, 0x00, 0x90]));
});
