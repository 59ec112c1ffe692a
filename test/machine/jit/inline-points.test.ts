// Issue 12: under the timed strategy a compiled block takes the scheduling points after its own
// vCPU's bursts itself (machine.ts's inline and quick points, TimedChooser.pointOf): a drain of
// its own store, due 20 cycles after the store, no longer ends the block. The interpreter tier
// lists every point and asks `next` (the reference); both tiers must make the same decisions,
// leave the same clocks, memory, registers and store buffers, and draw the same random numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Chooser, SchedulingPoint } from '../../../src/machine/chooser.ts';
import { Machine, type InjectionBudget, type Tier } from '../../../src/machine/machine.ts';
import { TimedChooser } from '../../../src/sched/timed.ts';
import { Reg } from '../../../src/x86/registers.ts';
import { memLoop } from '../../../bench/programs.ts';
import { lockMachine } from '../../../bench/lock-machine.ts';

const CODE = 0x400000;
const DATA = 0x601000;

/** `vcpus` vCPUs, each running the two-loads-two-stores loop over its own 32 bytes (TSO on). */
function memLoopMachine(vcpus: number, iterations: number, tier: Tier): Machine {
  const m = new Machine({ vcpus, tso: true, tier });
  m.memory.map(CODE, 0x1000, 'rx');
  m.memory.map(DATA, 0x1000, 'rw');
  m.memory.writeBytes(CODE, memLoop(iterations));
  for (const c of m.vcpus) {
    c.rip = CODE;
    c.setAddr(Reg.RSI, DATA + 64 * c.id);
    c.setReg64(Reg.RDX, BigInt(c.id + 1));
  }
  return m;
}

/**
 * The timed strategy, counting the points it was asked to list (`next`) and keeping its state
 * (clock, horizon, random stream) as each began, by step; `quick` forwards pointOf.
 */
function countedTimed(seed: number, quick: boolean): Chooser & { points: number; inner: TimedChooser; states: Map<number, string> } {
  const inner = new TimedChooser({ seed });
  const state = inner as unknown as { now: number; horizon: number; rng: unknown };
  const c = {
    name: inner.name,
    points: 0,
    inner,
    states: new Map<number, string>(),
    next: (p: SchedulingPoint) => {
      c.points++;
      c.states.set(p.step, JSON.stringify([state.now, state.horizon, state.rng]));
      return inner.next(p);
    },
    choose: inner.choose.bind(inner),
    observe: inner.observe.bind(inner),
    continueWith: inner.continueWith.bind(inner),
    ...(quick ? { pointOf: inner.pointOf.bind(inner) } : {}),
  };
  return c;
}

/** Everything a run leaves that a wrong inline point could change. */
function outcome(m: Machine, chooser: Chooser & { inner: TimedChooser; states: Map<number, string> }, inject?: InjectionBudget) {
  const r = m.run({ chooser, maxInstructions: 2_000_000, ...(inject ? { inject } : {}) });
  const data = createHash('sha256');
  for (const base of [DATA, 0x200000]) if (m.memory.page(base) !== undefined) data.update(m.memory.page(base)!.data);
  const rng = chooser.inner as unknown as { rng: unknown; now: number };
  return {
    reason: r.reason, steps: r.steps, instructions: r.instructions,
    decisions: createHash('sha256').update(JSON.stringify(m.decisions)).digest('hex'),
    decisionCount: m.decisions.length,
    vcpus: m.vcpus.map((c) => ({ time: c.time, rip: c.rip, retired: c.retired, regs: [...c.lo, ...c.hi], sb: c.storeBuffer.map((s) => ({ ...s })) })),
    memory: data.digest('hex'),
    rng: JSON.stringify(rng.rng), now: rng.now,
  };
}

/** `fewer`: the compiled tier must list fewer points (not with injections: the scan decides those). */
const CASES: { name: string; build: (tier: Tier) => Machine; inject?: InjectionBudget; fewer: boolean }[] = [
  { name: 'one vCPU, two loads and two stores per eight instructions', build: (t) => memLoopMachine(1, 3000, t), fewer: true },
  { name: 'three vCPUs on that loop, their drains interleaved', build: (t) => memLoopMachine(3, 800, t), fewer: true },
  { name: 'two vCPUs on that loop, one halting early (the other runs on alone)', build: (t) => {
    const m = memLoopMachine(2, 2000, t);
    // vCPU 1 skips the loop's `mov $n, %ecx` and runs 40 iterations only.
    m.vcpus[1]!.rip = CODE + 5;
    m.vcpus[1]!.setReg64(Reg.RCX, 40n);
    return m;
  }, fewer: true },
  { name: 'four vCPUs on a test-and-set lock loop', build: (t) => lockMachine(4, 300, t), fewer: true },
  { name: 'thirty-two vCPUs on the lock loop (the heap\'s order matters)', build: (t) => lockMachine(32, 15, t), fewer: false },
  { name: 'six vCPUs on the lock loop with host preemptions', build: (t) => lockMachine(6, 100, t), inject: { preemptions: 5 }, fewer: false },
];

for (const k of CASES) {
  test(`inline points make the interpreter's decisions: ${k.name}`, () => {
    const ref = countedTimed(7, true);
    const want = outcome(k.build('interp'), ref, k.inject);
    assert.equal(want.reason, 'all-halted');
    for (const quick of [true, false]) {
      const ch = countedTimed(7, quick);
      const m = k.build('compiled');
      const got = outcome(m, ch, k.inject);
      assert.deepEqual(got, want, quick ? 'with pointOf' : 'inline points through next');
      assert.ok(m.compiledInstructions > 0, 'the compiled tier ran');
      // Every point the compiled tier listed, the interpreter listed at the same step, in the same state.
      for (const [step, st] of ch.states) assert.equal(st, ref.states.get(step), `the strategy's state at step ${step}`);
      if (quick && k.fewer) assert.ok(ch.points < ref.points, `the compiled tier listed ${ch.points} points, the interpreter ${ref.points}`);
    }
  });
}

test('a single vCPU storing under the timed strategy stays in compiled code and lists almost no points', () => {
  const ch = countedTimed(1, true);
  const m = memLoopMachine(1, 5000, 'compiled');
  const r = m.run({ chooser: ch, maxInstructions: 1_000_000 });
  assert.equal(r.reason, 'all-halted');
  assert.ok(r.steps - r.instructions > 9000, `${r.steps - r.instructions} drains`);
  assert.ok(m.compiledInstructions > 0.99 * r.instructions, `compiled ${m.compiledInstructions} of ${r.instructions}`);
  assert.ok(ch.points < 100, `${ch.points} points listed`);
});
