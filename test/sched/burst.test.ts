// Bursts under random and PCT (issue 12): the strategies decide run lengths up front and the
// machine runs them without a scheduling point per instruction. PCT's bursts must give exactly
// the decisions of a point per step; random's must give the same distribution of switch points
// (its stream differs), checked against the geometric law and against a point per step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Chooser, SchedulingPoint } from '../../src/machine/chooser.ts';
import { Machine, type RunOptions, type RunResult } from '../../src/machine/machine.ts';
import { Reg } from '../../src/x86/registers.ts';
import { PctChooser } from '../../src/sched/pct.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { hex } from '../helpers/bytes.ts';
import { machine, done, textPokeBpOrder, IPI_HANDLER } from '../helpers/site-machine.ts';
import { lockMachine } from '../../bench/lock-machine.ts';

const BURSTS = { bursts: true };

/** `inner` without its burst: a scheduling point at every step, as before bursts. */
function pointPerStep(inner: Chooser): Chooser {
  return {
    name: inner.name,
    get stopped() { return inner.stopped; },
    next: (p: SchedulingPoint) => inner.next(p),
    choose: (k, n) => inner.choose(k, n),
  };
}

/** `inner`, counting its scheduling points. */
function counted(inner: Chooser): Chooser & { points: number } {
  const c = {
    name: inner.name,
    points: 0,
    next: (p: SchedulingPoint) => { c.points++; return inner.next(p); },
    choose: (k: Parameters<Chooser['choose']>[0], n: number) => inner.choose(k, n),
    burst: (v: Parameters<NonNullable<Chooser['burst']>>[0]) => inner.burst!(v),
    forced: (a: number) => inner.forced?.(a),
  };
  return c;
}

const LOOPS = {
  alu: hex('48 ff c0 eb fb'), // inc %rax; jmp .-3
  pause: hex('f3 90 eb fc'), // pause; jmp .-2
  store: hex('48 89 07 48 ff c0 eb f8'), // mov %rax,(%rdi); inc %rax; jmp .-6
} as const;

/** vCPU i runs loops[i] forever (stores to its own line). */
function loopMachine(loops: readonly (keyof typeof LOOPS)[]): Machine {
  const m = new Machine({ vcpus: loops.length });
  m.memory.map(0x100000, 0x1000 * loops.length, 'rx');
  m.memory.map(0x200000, 0x1000, 'rw');
  loops.forEach((l, i) => {
    m.memory.writeBytes(0x100000 + 0x1000 * i, LOOPS[l]);
    const c = m.vcpu(i);
    c.rip = 0x100000 + 0x1000 * i;
    c.setAddr(Reg.RDI, 0x200000 + 64 * i);
  });
  return m;
}

/** The decision log as runs: [action, length] in order. */
function runs(m: Machine): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < m.decisions.length; i += 2) out.push([m.decisions[i]!, m.decisions[i + 1]!]);
  return out;
}

/** Histogram of run lengths of `action` in bins 1..maxBin-1 and a tail bin (>= maxBin). */
function lengths(rs: [number, number][], action: number, maxBin: number): number[] {
  const h = new Array<number>(maxBin).fill(0);
  for (const [a, k] of rs) if (a === action) h[Math.min(k, maxBin) - 1]!++;
  return h;
}

/** Each bin within 4.5 standard errors of the binomial count the law predicts. */
function assertLaw(h: number[], law: (bin: number) => number, what: string): void {
  const total = h.reduce((x, y) => x + y, 0);
  assert.ok(total > 1000, `${what}: only ${total} runs`);
  h.forEach((obs, i) => {
    const q = law(i + 1);
    const sd = Math.sqrt(total * q * (1 - q));
    assert.ok(Math.abs(obs - total * q) <= 4.5 * sd + 1, `${what}, length ${i + 1}: ${obs} of ${total}, expected ${(total * q).toFixed(0)}`);
  });
}

/** Two histograms within 4.5 standard errors of each other, bin by bin (two-sample proportions). */
function assertAlike(a: number[], b: number[], what: string): void {
  const na = a.reduce((x, y) => x + y, 0), nb = b.reduce((x, y) => x + y, 0);
  assert.ok(na > 500 && nb > 500, `${what}: ${na} and ${nb} runs`);
  a.forEach((x, i) => {
    const pa = x / na, pb = b[i]! / nb, p = (x + b[i]!) / (na + nb);
    const sd = Math.sqrt(p * (1 - p) * (1 / na + 1 / nb));
    assert.ok(Math.abs(pa - pb) <= 4.5 * sd + 1e-9, `${what}, bin ${i + 1}: ${x}/${na} with bursts, ${b[i]}/${nb} per step`);
  });
}

test('random: with three equal vCPUs a run lasts l steps with probability (1/3)^(l-1)·(2/3), with and without bursts', () => {
  const geometric = (p: number, maxBin: number) => (l: number) => (l < maxBin ? p ** (l - 1) * (1 - p) : p ** (maxBin - 1));
  for (const [label, wrap] of [['bursts', (c: Chooser) => c], ['a point per step', pointPerStep]] as const) {
    const m = loopMachine(['alu', 'alu', 'alu']);
    m.run({ chooser: wrap(new RandomChooser(7, BURSTS)), maxInstructions: 60_000 });
    for (let cpu = 0; cpu < 3; cpu++) assertLaw(lengths(runs(m), cpu * 8, 6), geometric(1 / 3, 6), `${label}, vCPU ${cpu}`);
  }
});

test('random: after a run ends, the next vCPU is drawn among the others by weight', () => {
  // vCPU 2 spins (weight 0.1 against 1): a switch from vCPU 0 goes to 1 with probability 1/1.1.
  const m = loopMachine(['alu', 'alu', 'pause']);
  m.run({ chooser: new RandomChooser(3, BURSTS), maxInstructions: 80_000 });
  const rs = runs(m);
  let to1 = 0, to2 = 0;
  for (let i = 1; i < rs.length; i++) {
    if (rs[i - 1]![0] !== 0) continue;
    if (rs[i]![0] === 8) to1++;
    else if (rs[i]![0] === 16) to2++;
  }
  assertLaw([to1, to2], (bin) => (bin === 1 ? 1 / 1.1 : 0.1 / 1.1), 'switches from vCPU 0');
});

test('random: switch points with stores, drains and a spinner are distributed as with a point per step', () => {
  // Weights change inside a run here (a store makes a drain possible; PAUSE makes a spinner), so
  // the machine cuts bursts and the strategy draws afresh: the law is the per-step one.
  const mk = () => loopMachine(['store', 'alu', 'pause', 'store']);
  const a = mk(), b = mk();
  a.run({ chooser: new RandomChooser(11, BURSTS), maxInstructions: 80_000 });
  b.run({ chooser: pointPerStep(new RandomChooser(11, BURSTS)), maxInstructions: 80_000 });
  for (let cpu = 0; cpu < 4; cpu++) {
    for (const kind of [0, 1]) {
      if (kind === 1 && (cpu === 1 || cpu === 2)) continue; // no stores, no drains
      assertAlike(lengths(runs(a), cpu * 8 + kind, 5), lengths(runs(b), cpu * 8 + kind, 5), `vCPU ${cpu} ${kind === 0 ? 'steps' : 'drains'}`);
    }
  }
});

test('random: a burst is one scheduling point, not one per instruction', () => {
  const m = loopMachine(['alu', 'alu']);
  const chooser = counted(new RandomChooser(5, BURSTS));
  const r = m.run({ chooser, maxInstructions: 20_000 });
  // Every point starts a run of the log (a switch); with two equal vCPUs a run averages 2 steps.
  assert.equal(chooser.points, runs(m).length);
  assert.ok(chooser.points < r.steps * 0.6, `${chooser.points} points for ${r.steps} steps`);
});

/** The text_poke_bp machine with handlers for the injected NMIs and IRQs (the IPI handler's). */
const SYNC_VECTOR = 0xf0;
function withHandlers(): Machine {
  const m = machine(textPokeBpOrder());
  m.setIdt(2, IPI_HANDLER);
  return m;
}

function assertSameRun(make: () => Machine, chooser: () => Chooser, opts: RunOptions): RunResult {
  const a = make(), b = make();
  const ra = a.run({ ...opts, chooser: chooser() });
  const rb = b.run({ ...opts, chooser: pointPerStep(chooser()) });
  assert.deepEqual(ra, rb);
  assert.deepEqual(a.decisions, b.decisions);
  assert.deepEqual(a.events, b.events);
  return ra;
}

test('PCT: bursts make exactly the decisions of a point per step (text_poke_bp order, NMIs, IRQs)', () => {
  for (let seed = 1; seed <= 10; seed++) {
    const r = assertSameRun(withHandlers, () => new PctChooser({ seed, length: 3000 }), { until: done, inject: { nmis: 2, irqs: 2, irqVector: SYNC_VECTOR }, maxInstructions: 100_000 });
    assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${r.error?.message ?? ''}`);
  }
});

test('PCT: bursts make exactly the decisions of a point per step (lock loop with host preemptions, starvation, depth 6)', () => {
  for (let seed = 1; seed <= 4; seed++) {
    assertSameRun(() => lockMachine(6, 15), () => new PctChooser({ seed, length: 20_000, depth: 6 }), { inject: { preemptions: 3 }, maxInstructions: 200_000 });
    assertSameRun(() => loopMachine(['store', 'alu', 'pause']), () => new PctChooser({ seed, length: 5_000 }), { maxInstructions: 8_000 });
  }
});
