// Issue 12 item 2, DESIGN.md §2 (SDM 8.1.3): a compiled block never runs bytes the interpreter
// would have refused. vCPU 0 loops on a 7-byte site (`nopl; jmp site`: a block that jumps to its
// own start, so it runs compiled) while vCPU 1 rewrites it; under the timed strategy (bursts of
// compiled code between scheduling points) both tiers meet the same hazard at the same step, and
// in text_poke_bp order both take the same legal old/new choices and end the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TimedChooser } from '../../../src/sched/timed.ts';
import type { Machine, Tier } from '../../../src/machine/machine.ts';
import { Code, machine, textPokeBpOrder, SITE, PATCHER } from '../../helpers/site-machine.ts';

function runBoth(patcher: () => number[], seed: number) {
  return (['interp', 'compiled'] as Tier[]).map((tier) => {
    const m: Machine = machine(patcher(), tier);
    const r = m.run({ chooser: new TimedChooser({ seed }), maxInstructions: 20_000 });
    return {
      compiled: m.compiledInstructions,
      state: { reason: r.reason, hazards: r.hazards, hazardSteps: r.hazardSteps, steps: r.steps, decisions: [...m.decisions], site: [...m.memory.readBytes(SITE, 7)], rax: m.vcpu(0).lo[0] },
    };
  });
}

test('a plain rewrite of a site another vCPU runs in a compiled loop: the same cmc-unsynchronized hazard on both tiers', () => {
  const plain = () => new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4).bytes;
  for (let seed = 1; seed <= 10; seed++) {
    const [a, b] = runBoth(plain, seed);
    assert.ok(b!.compiled > 0, `seed ${seed}: vCPU 0's loop ran compiled before the rewrite`);
    assert.equal(a!.state.reason, 'hazard', `seed ${seed}`);
    assert.equal(a!.state.hazards[0]!.kind, 'cmc-unsynchronized');
    assert.deepEqual(b!.state, a!.state, `seed ${seed}`);
  }
});

test('the rewrite in text_poke_bp order: the same legal run on both tiers', () => {
  for (let seed = 1; seed <= 10; seed++) {
    const [a, b] = runBoth(textPokeBpOrder, seed);
    assert.ok(b!.compiled > 0);
    assert.equal(a!.state.hazards.length, 0, `seed ${seed}`);
    assert.deepEqual(b!.state, a!.state, `seed ${seed}`);
  }
});
