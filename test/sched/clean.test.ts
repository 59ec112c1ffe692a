// Correct protocols are clean under every strategy (issue 9): no livelock, hazard or broken lock
// from the strategy itself — spin-aware PCT (the old PCT livelocked correct v1 on every seed, v2 on
// ~30%, text_poke_bp on 10–14%), PCT at depth 10, and random and PCT with host preemptions.
// Settings are those of test/patching/*.test.ts. Known protocol bugs stay out of these seeds:
// PCT seeds 28 and 99 of v1 reach the RFC's admitted multi-NMI deadlock (NMIs waiting for the NMI
// lock that a third holds at the INT3), a real limit of v1, not of the strategy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { SERVICE_BASE, VECTOR } from '../../src/kernel/layout.ts';
import { PvOp, directCall } from '../../src/kernel/pv-ops.ts';
import { pvSlowpath } from '../../src/kernel/qspinlock-slowpath.ts';
import { switchLockOpsV1 } from '../../src/patching/v1.ts';
import { switchLockOpsV2 } from '../../src/patching/v2.ts';
import { textPokeBp } from '../../src/patching/text-poke-bp.ts';
import type { Chooser } from '../../src/machine/chooser.ts';
import type { RunResult } from '../../src/machine/machine.ts';
import { PctChooser } from '../../src/sched/pct.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { measureRunLength } from '../../src/sched/run-length.ts';

interface Outcome { reason: string; detail?: string | undefined; run: RunResult }
type Protocol = (seed: number, chooser: Chooser, preemptions: number) => Outcome;

const PV_SLOWPATH_V2 = SERVICE_BASE + 0x200;

const PROTOCOLS: [string, Protocol][] = [
  ['v1 native -> PV -> native', (seed, chooser, preemptions) => {
    const g = new Guest({ vcpus: 4, flavor: 'native', spinThreshold: 4, workload: { iterations: 3 }, seed });
    g.atomicSwitch.mode = 'record';
    return switchLockOpsV1(g, ['pv', 'native'], { primaryCpu: seed % 4, run: { chooser, inject: { nmis: 8, irqs: 4, irqVector: VECTOR.LOCK_IRQ, preemptions } } });
  }],
  ['v2 (varied guests, both directions)', (seed, chooser, preemptions) => {
    const from = seed % 2 === 1 ? 'native' : 'pv';
    const g = new Guest({
      vcpus: 2 + (seed % 3), flavor: from, spinThreshold: seed % 3 === 0 ? 4 : 64, seed,
      workload: { iterations: 5, lockopCheckpoint: true, taskLocks: 1 + (seed % 2), criticalLoops: [2, 10, 30][seed % 3]!, thinkLoops: [0, 5, 20][(seed >> 1) % 3]! },
    });
    return switchLockOpsV2(g, from === 'native' ? 'pv' : 'native', { patcherCpu: seed % g.machine.vcpus.length, run: { chooser, inject: { nmis: 3, irqs: 6, irqVector: VECTOR.LOCK_IRQ, preemptions } } });
  }],
  ['text_poke_bp retargeting the PV slowpath CALL', (seed, chooser, preemptions) => {
    const g = new Guest({ vcpus: 4, flavor: 'pv', spinThreshold: 64, workload: { iterations: 3 }, seed });
    g.machine.registerService(PV_SLOWPATH_V2, '__pv_queued_spin_lock_slowpath_v2', (ctx) => pvSlowpath(ctx, g.env));
    const s = g.image.sites.find((x) => x.type === PvOp.QueuedSpinLockSlowpath)!;
    return textPokeBp(g, [{ address: s.address, bytes: directCall(s, PV_SLOWPATH_V2).subarray(0, 5) }], seed % 4, { chooser, inject: { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ, preemptions } });
  }],
];

const STRATEGIES: [string, number, (seed: number, length: number) => Chooser, number][] = [
  // name, seeds, chooser, host preemptions
  ['spin-aware PCT', 10, (seed, length) => new PctChooser({ seed, length }), 0],
  ['spin-aware PCT at depth 10', 4, (seed, length) => new PctChooser({ seed, length, depth: 10 }), 0],
  ['PCT with 3 host preemptions', 4, (seed, length) => new PctChooser({ seed, length }), 3],
  ['random with 3 host preemptions', 4, (seed) => new RandomChooser(seed), 3],
];

/**
 * Seeds on which a protocol meets its own known limit, not the strategy's: with 6-byte sites, PCT
 * with host preemptions seed 1 drives v1 into the RFC's multi-NMI deadlock (three vCPUs' NMI
 * handlers wait for the NMI lock the fourth holds at the INT3; test/patching/v1.test.ts seed 24).
 * Each is checked to end that way (no task finished) and the next seed runs in its place.
 */
const KNOWN_LIMIT = new Map<string, readonly number[]>([['v1 native -> PV -> native/PCT with 3 host preemptions', [1]]]);

for (const [protocol, runOnce] of PROTOCOLS) {
  test(`${protocol} is clean under every strategy: ${STRATEGIES.map(([n, k]) => `${n} (${k} seeds)`).join(', ')}`, (t) => {
    const length = measureRunLength((l) => runOnce(0, new PctChooser({ seed: 0, length: l }), 0).run.steps);
    t.diagnostic(`measured run length ${length} steps`);
    for (const [strategy, seeds, mk, preemptions] of STRATEGIES) {
      const known = KNOWN_LIMIT.get(`${protocol}/${strategy}`) ?? [];
      for (let seed = 1, ran = 0; ran < seeds; seed++) {
        const r = runOnce(seed, mk(seed, length), preemptions);
        if (known.includes(seed)) {
          assert.match(`${r.reason} ${r.detail ?? ''}`, /^unfinished limit; 0 of \d tasks finished/, `${strategy}, seed ${seed}: the known limit`);
          continue;
        }
        ran++;
        assert.equal(r.reason, 'ok', `${strategy}, seed ${seed}: ${r.reason} ${r.detail ?? ''}`);
        assert.equal(r.run.hazards.length, 0);
      }
    }
  });
}
