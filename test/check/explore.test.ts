// The exploration driver: execution i runs with seed base + i whatever else runs, the aggregate is
// a function of the executions run, a wall-clock budget stops on its clock, and an exhaustive
// strategy plugs in and is the only one that can say `exhausted`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { scenarioSubject } from '../../src/cli/scenario/subject.ts';
import { explore, runSeeded, limitsFor, visitOf, type ExhaustiveStrategy } from '../../src/check/explore.ts';
import { aggregate } from '../../src/check/exploration.ts';
import { seededStrategy } from '../../src/check/seeded.ts';
import type { Chooser, SchedulingPoint } from '../../src/machine/chooser.ts';

const SCEN = join(import.meta.dirname, '..', '..', 'scenarios');
const SB = join(SCEN, 'store-buffering.yaml');

test('random exploration of store buffering reaches the four x86-TSO outcomes, each final state counted', () => {
  const r = explore(scenarioSubject(SB), seededStrategy('random'), { budget: { kind: 'executions', executions: 120 }, seed: 1 });
  assert.equal(r.executions, 120);
  assert.equal(r.verdict, 'bounded-clean');
  const outcomes = r.states.map((s) => s.key.split('; ').slice(0, 2).join(' ')).sort();
  assert.deepEqual(outcomes, ['0:rax=0 1:rax=0', '0:rax=0 1:rax=1', '0:rax=1 1:rax=0', '0:rax=1 1:rax=1']);
  assert.equal(r.states.reduce((n, s) => n + s.count, 0), 120);
  assert.deepEqual(r.endings, [{ key: 'ok (all-halted)', count: 120 }]);
});

test('the aggregate is the records of executions 0..n-1, each run alone with seed base + i', () => {
  const s = scenarioSubject(join(SCEN, 'cmc-no-sync.yaml'));
  const strategy = seededStrategy('random');
  const r = explore(s, strategy, { budget: { kind: 'executions', executions: 30 }, seed: 40 });
  const alone = [...Array(30).keys()].reverse().map((i) => runSeeded(s, strategy, limitsFor(s, undefined), 40, i));
  const { subject, strategy: name, seed, budget, bound } = r;
  assert.deepEqual(aggregate({ subject, strategy: name, seed, budget, bound }, alone), r);
  assert.equal(r.verdict, 'violation');
  assert.equal(r.firstViolation?.index, 0);
  assert.equal(r.firstViolation?.seed, 40);
  assert.equal(r.firstViolation?.verdict.check, 'hazard');
});

test('a seconds budget runs until its clock says so, and the result is that of the executions run', () => {
  let t = 0;
  const s = scenarioSubject(SB);
  const timed = explore(s, seededStrategy('pct'), { budget: { kind: 'seconds', seconds: 5 }, now: () => (t += 1000) });
  // The clock reads 1 s at the start and advances 1 s per check: executions 0..3 run.
  assert.equal(timed.executions, 4);
  const counted = explore(s, seededStrategy('pct'), { budget: { kind: 'executions', executions: 4 } });
  assert.deepEqual({ ...timed, budget: counted.budget }, counted);
});

test('stopAtViolation ends the exploration at the first violating execution', () => {
  const r = explore(scenarioSubject(join(SCEN, 'cmc-no-sync.yaml')), seededStrategy('random'), { budget: { kind: 'executions', executions: 50 }, stopAtViolation: true });
  assert.equal(r.executions, 1);
  assert.equal(r.violations, 1);
});

/** Plain DFS over every decision (no reduction): the shape an exhaustive strategy plugs in with. */
function dfs(): ExhaustiveStrategy {
  class Follow implements Chooser {
    readonly name = 'dfs';
    readonly widths: number[] = [];
    private at = 0;
    constructor(private readonly prefix: number[]) {}
    next(p: SchedulingPoint): number {
      const v = this.at < this.prefix.length ? this.prefix[this.at]! : 0;
      this.widths.push(p.count);
      this.at++;
      return v;
    }
    choose(_k: string, n: number): number {
      const v = this.at < this.prefix.length ? this.prefix[this.at]! : 0;
      this.widths.push(n);
      this.at++;
      return v;
    }
  }
  return {
    kind: 'exhaustive',
    name: 'dfs',
    explore(subject, limits, visit) {
      let prefix: number[] = [];
      for (;;) {
        const execution = subject.start();
        const c = new Follow(prefix);
        const result = execution.run(c, limits);
        if (!visit(visitOf(execution, result))) return { complete: false };
        const path = c.widths.map((_, i) => (i < prefix.length ? prefix[i]! : 0));
        let k = path.length - 1;
        while (k >= 0 && path[k]! + 1 >= c.widths[k]!) k--;
        if (k < 0) return { complete: true };
        prefix = [...path.slice(0, k), path[k]! + 1];
      }
    },
  };
}

test('an exhaustive strategy that finishes its tree says exhausted; one stopped by the budget does not', () => {
  const s = scenarioSubject(SB);
  const all = explore(s, dfs(), { budget: { kind: 'executions', executions: 100_000 } });
  assert.equal(all.verdict, 'exhausted');
  assert.equal(all.complete, true);
  assert.equal(all.states.length, 4);
  const cut = explore(s, dfs(), { budget: { kind: 'executions', executions: 5 } });
  assert.equal(cut.executions, 5);
  assert.equal(cut.verdict, 'bounded-clean');
});
