// Paced and conditional injection (src/sched/injection.ts, issue 9): a paced NMI budget spreads
// over the run instead of being spent in its first steps; a conditional NMI lands where it was
// asked to, inside v1's #BP handler.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { STOP_MACHINE_SERVICE } from '../../src/kernel/stop-machine.ts';
import { switchLockOpsV1 } from '../../src/patching/v1.ts';
import { ActionKind, actionCpu, actionKind, type Chooser } from '../../src/machine/chooser.ts';
import { conditionHolds, type InjectionCondition, type InjectionOptions } from '../../src/sched/injection.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { measureRunLength } from '../../src/sched/run-length.ts';

/** v1 native -> PV -> native with the settings of test/patching/v1.test.ts. */
function v1Run(seed: number, chooser: Chooser) {
  const g = new Guest({ vcpus: 4, flavor: 'native', spinThreshold: 4, workload: { iterations: 3 }, seed });
  g.atomicSwitch.mode = 'record';
  const r = switchLockOpsV1(g, ['pv', 'native'], { primaryCpu: seed % 4, run: { chooser, inject: { nmis: 8, irqs: 4, irqVector: VECTOR.LOCK_IRQ } } });
  return { g, r };
}

/** The steps at which NMIs were injected into a run (a relative position in it, 0..1). */
function nmiPositions(seed: number, mk: (seed: number) => Chooser): number[] {
  const at: number[] = [];
  const inner = mk(seed);
  const chooser: Chooser = {
    name: inner.name,
    next(p) {
      const i = inner.next(p);
      if (actionKind(p.actions[i]!) === ActionKind.Nmi) at.push(p.step);
      return i;
    },
    choose: (k, n) => inner.choose(k, n),
  };
  const { r } = v1Run(seed, chooser);
  assert.equal(r.reason, 'ok', `seed ${seed}: ${r.detail ?? ''}`);
  return at.map((s) => s / r.run.steps);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

test('a paced NMI budget spreads over a v1 run (median past the first quarter); by weight it is spent early', (t) => {
  const paced: InjectionOptions = { nmi: { pace: true } };
  const length = measureRunLength((l) => v1Run(0, new RandomChooser(0, { length: l, inject: paced })).r.run.steps);
  const byPace: number[] = [], byWeight: number[] = [];
  for (let seed = 1; seed <= 4; seed++) {
    byPace.push(...nmiPositions(seed, (s) => new RandomChooser(s, { length, inject: paced })));
    byWeight.push(...nmiPositions(seed, (s) => new RandomChooser(s)));
  }
  assert.ok(byPace.length >= 4 * 6, `most of the budget was spent (${byPace.length} of ${4 * 8}: events due after a run's end stay unspent)`);
  t.diagnostic(`length ${length}; median NMI paced ${(100 * median(byPace)).toFixed(0)}%, by weight ${(100 * median(byWeight)).toFixed(0)}% of the run`);
  assert.ok(median(byPace) > 0.25, `paced: median NMI at ${(100 * median(byPace)).toFixed(0)}% of the run`);
  assert.ok(median(byWeight) < 0.25, `by weight: median NMI at ${(100 * median(byWeight)).toFixed(0)}% of the run`);
});

test('a conditional NMI lands inside the #BP handler on a v1 run (seed 4), where paced NMIs alone never do', () => {
  // v1 switching the NMI handler's unlock site: NMIs to vCPUs stopped in multi_cpu_stop run the
  // NMI handler into the INT3; the second plan then puts an NMI into that #BP handler.
  const inBp: InjectionCondition = { inside: [{ from: STOP_MACHINE_SERVICE.pokeInt3, to: STOP_MACHINE_SERVICE.pokeInt3 + 1 }] };
  const stopped: InjectionCondition = { inside: [{ from: STOP_MACHINE_SERVICE.multiCpuStop, to: STOP_MACHINE_SERVICE.multiCpuStop + 1 }] };
  const run = (inject: InjectionOptions) => {
    const seed = 4;
    const g = new Guest({ vcpus: 4, flavor: 'native', spinThreshold: 4, workload: { iterations: 3 }, seed });
    const nmiUnlock = g.image.sites.at(-1)!;
    const inner = new RandomChooser(seed, { length: 3000, inject });
    const landed: boolean[] = [];
    const chooser: Chooser = {
      name: inner.name,
      next(p) {
        const i = inner.next(p);
        const a = p.actions[i]!;
        if (actionKind(a) === ActionKind.Nmi) landed.push(conditionHolds(inBp, p.vcpus[actionCpu(a)]!));
        return i;
      },
      choose: (k, n) => inner.choose(k, n),
    };
    const r = switchLockOpsV1(g, ['pv', 'native'], {
      primaryCpu: 0, sites: (s) => s.address === nmiUnlock.address,
      run: { chooser, inject: { nmis: 8, irqs: 4, irqVector: VECTOR.LOCK_IRQ, cpus: [1, 2, 3] }, maxInstructions: 200_000 },
    });
    return { r, landed };
  };
  const cond = run({ nmi: [{ count: 3, pace: true, when: stopped }, { when: inBp }] });
  assert.equal(cond.r.reason, 'ok', 'correct v1 survives it');
  assert.ok(cond.r.stats.int3InNmi > 0, 'an NMI handler met the INT3');
  assert.ok(cond.landed.some((x) => x), `an NMI landed in the #BP handler (${cond.landed.join(' ')})`);
  const paced = run({ nmi: { pace: true } });
  assert.ok(paced.landed.length > 0 && paced.landed.every((x) => !x), 'paced NMIs alone land elsewhere');
});
