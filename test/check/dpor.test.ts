// Issue 9 item 2: the bounded exhaustive search with dynamic partial-order reduction reaches
// exactly the x86-TSO outcomes of the litmus tests, proves them exhausted, explores far fewer
// executions than plain DFS, and hands back a violation's schedule that ReplayChooser replays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exploreDpor } from '../../src/check/dpor.ts';
import { ReplayChooser } from '../../src/sched/replay.ts';
import { Reg } from '../../src/x86/registers.ts';
import { litmus, scenarioFile, scenarioSubject } from './machine-subject.ts';


test('store buffering: DPOR reaches exactly the four x86-TSO outcomes and is exhausted', () => {
  const sb = scenarioFile('scenarios/store-buffering.yaml', [[0, Reg.RAX], [1, Reg.RAX]]);
  const r = exploreDpor(sb);
  assert.equal(r.outcome, 'exhausted');
  assert.deepEqual([...r.states.keys()].sort(), ['0:RAX=0 1:RAX=0', '0:RAX=0 1:RAX=1', '0:RAX=1 1:RAX=0', '0:RAX=1 1:RAX=1']);
  assert.equal(r.violation, undefined);
});

test('store buffering with MFENCE: the (0, 0) outcome is gone', () => {
  const s = scenarioSubject('sb+mfence', litmus('sb-mfence', 'mov dword [0x10000], 1\nmfence\nmov eax, dword [0x10040]\nhlt', 'mov dword [0x10040], 1\nmfence\nmov eax, dword [0x10000]\nhlt'), [[0, Reg.RAX], [1, Reg.RAX]]);
  const r = exploreDpor(s);
  assert.equal(r.outcome, 'exhausted');
  assert.deepEqual([...r.states.keys()].sort(), ['0:RAX=0 1:RAX=1', '0:RAX=1 1:RAX=0', '0:RAX=1 1:RAX=1']);
});

test('message passing: exactly the three allowed outcomes (r1=1, r2=0 is forbidden by TSO), exhausted', () => {
  const mp = scenarioSubject('mp', litmus('mp', 'mov dword [0x10000], 1\nmov dword [0x10040], 1\nhlt', 'mov eax, dword [0x10040]\nmov ebx, dword [0x10000]\nhlt'), [[1, Reg.RAX], [1, Reg.RBX]]);
  const r = exploreDpor(mp);
  assert.equal(r.outcome, 'exhausted');
  assert.deepEqual([...r.states.keys()].sort(), ['1:RAX=0 1:RBX=0', '1:RAX=0 1:RBX=1', '1:RAX=1 1:RBX=1']);
});

test('three vCPUs with independent accesses: DPOR runs one execution, plain DFS every interleaving', () => {
  const three = scenarioSubject('independent', `
name: independent
machine: { vcpus: 3, tso: true }
memory:
  - { at: 0x1000, size: 0x1000, perms: rx }
  - { at: 0x10000, size: 0x1000, perms: rw }
code:
  - at: 0x1000
    asm: |
      cpu0:
        mov dword [0x10000], 1
        hlt
      cpu1:
        mov dword [0x10040], 1
        hlt
      cpu2:
        mov eax, dword [0x10080]
        hlt
vcpus:
  - { rip: cpu0 }
  - { rip: cpu1 }
  - { rip: cpu2 }
`, [[2, Reg.RAX]]);
  const dpor = exploreDpor(three);
  const dfs = exploreDpor(three, {}, { reduction: false });
  assert.equal(dpor.outcome, 'exhausted');
  assert.equal(dfs.outcome, 'exhausted');
  // vCPUs 0 and 1: a store, then their HLT and their drain in either order (3 events, 2 orders
  // each); vCPU 2: a load, then HLT (2 events). Shuffles of the 8 events: 8! / (3! 3! 2!) = 560,
  // times 2 × 2 orders inside vCPUs 0 and 1.
  assert.equal(dpor.executions, 1);
  assert.equal(dfs.executions, (40320 / 72) * 4);
  assert.deepEqual([...dfs.states.keys()], ['2:RAX=0']);
});

test('cmc-no-sync: DPOR finds the torn fetch, and ReplayChooser reproduces it at the same step', () => {
  const subject = scenarioFile('scenarios/cmc-no-sync.yaml', []);
  const r = exploreDpor(subject, { preemptions: 2 });
  assert.equal(r.outcome, 'violation');
  const v = r.violation!;
  assert.equal(v.verdict.ok, false);
  assert.ok(!v.verdict.ok && v.verdict.hazard?.kind === 'cmc-unsynchronized');
  const again = subject.start().run(new ReplayChooser(v.schedule, 2), subject.limits);
  assert.equal(again.run.reason, 'hazard');
  assert.deepEqual(again.verdict, v.verdict);
  assert.equal(again.run.hazardSteps[0], v.verdict.step);
});

test('a vCPU spinning on a flag nobody will set is a livelock, not a run to the depth bound', () => {
  const s = scenarioSubject('spin', litmus('spin', 'wait:\npause\nmov eax, dword [0x10000]\ntest eax, eax\njz wait\nhlt', 'hlt'), []);
  const r = exploreDpor(s, { preemptions: 2 });
  assert.equal(r.outcome, 'violation');
  assert.ok(!r.violation!.verdict.ok && r.violation!.verdict.check === 'livelock');
  assert.ok(r.violation!.steps < 100);
});

test('the preemption bound is the proof parameter: SB within 0 preemptions misses only (1, 1) and says so', () => {
  const sb = scenarioFile('scenarios/store-buffering.yaml', [[0, Reg.RAX], [1, Reg.RAX]]);
  const r = exploreDpor(sb, { preemptions: 0 });
  assert.equal(r.outcome, 'exhausted');
  assert.equal(r.preemptionLimited, true);
  assert.deepEqual([...r.states.keys()].sort(), ['0:RAX=0 1:RAX=0', '0:RAX=0 1:RAX=1', '0:RAX=1 1:RAX=0']);
  const full = exploreDpor(sb);
  assert.equal(full.preemptionLimited, false);
});

test('an execution cut by the depth bound makes the search bounded, not exhausted', () => {
  const sb = scenarioFile('scenarios/store-buffering.yaml', [[0, Reg.RAX], [1, Reg.RAX]]);
  const r = exploreDpor(sb, { depth: 3 });
  assert.equal(r.outcome, 'bounded');
  assert.equal(r.exhausted, false);
  assert.ok(r.ends['depth-bound'] > 0);
  const capped = exploreDpor(sb, { maxExecutions: 2 });
  assert.equal(capped.outcome, 'bounded');
  assert.equal(capped.executions, 2);
});

test('text_poke_bp order at machine level: no violation in any interleaving without preemptions', () => {
  const tpo = scenarioFile('scenarios/text-poke-order.yaml', [[0, Reg.RAX]]);
  const r = exploreDpor(tpo, { preemptions: 0 });
  assert.equal(r.outcome, 'exhausted');
  assert.equal(r.violation, undefined);
  assert.deepEqual([...r.verdicts.keys()], ['ok']);
  assert.ok(r.executions > 1);
});

test('within every preemption bound, DPOR reaches the same final states as plain DFS', () => {
  const cases = [
    scenarioFile('scenarios/store-buffering.yaml', [[0, Reg.RAX], [1, Reg.RAX]]),
    scenarioSubject('mp', litmus('mp', 'mov dword [0x10000], 1\nmov dword [0x10040], 1\nhlt', 'mov eax, dword [0x10040]\nmov ebx, dword [0x10000]\nhlt'), [[1, Reg.RAX], [1, Reg.RBX]]),
    // Two writers of one location and two readers of it on the writers themselves (coherence).
    scenarioSubject('2w', litmus('2w', 'mov dword [0x10000], 1\nmov eax, dword [0x10000]\nmov ebx, dword [0x10040]\nhlt', 'mov dword [0x10000], 2\nmov dword [0x10040], 1\nmov eax, dword [0x10000]\nhlt'), [[0, Reg.RAX], [0, Reg.RBX], [1, Reg.RAX]]),
    // A locked increment against a plain load/store pair.
    scenarioSubject('rmw', litmus('rmw', 'lock inc dword [0x10000]\nmov eax, dword [0x10040]\nhlt', 'mov eax, dword [0x10000]\nmov dword [0x10040], eax\nmov ebx, dword [0x10000]\nhlt'), [[0, Reg.RAX], [1, Reg.RAX], [1, Reg.RBX]]),
  ];
  for (const [i, subject] of cases.entries()) {
    // Unbounded DFS of the two larger cases takes 10^4 executions: bounds 0..2 show the point.
    for (const preemptions of i < 2 ? [0, 1, 2, undefined] : [0, 1, 2]) {
      const dpor = exploreDpor(subject, { preemptions });
      const dfs = exploreDpor(subject, { preemptions }, { reduction: false });
      const what = `${subject.name} within ${preemptions ?? 'any number of'} preemptions`;
      assert.equal(dpor.outcome, 'exhausted', what);
      assert.deepEqual([...dpor.states.keys()].sort(), [...dfs.states.keys()].sort(), what);
      assert.ok(dpor.executions <= dfs.executions, what);
    }
  }
});

test('an injected NMI is explored at every instruction boundary, as plain DFS does', () => {
  const nmi = scenarioSubject('nmi', `
name: nmi
machine: { vcpus: 2, tso: true }
memory:
  - { at: 0x1000, size: 0x1000, perms: rx }
  - { at: 0x20000, size: 0x8000, perms: rw }
code:
  - at: 0x1000
    asm: |
      cpu0:
        mov eax, 1
        mov eax, 2
        hlt
        hlt
      cpu1:
        hlt
      nmi_handler:
        mov ebx, eax
        iretq
vcpus:
  - { rip: cpu0, rsp: 0x24000 }
  - { rip: cpu1 }
idt:
  2: nmi_handler
inject: { nmis: 1, cpus: [0] }
`, [[0, Reg.RBX]]);
  const dpor = exploreDpor(nmi);
  const dfs = exploreDpor(nmi, {}, { reduction: false });
  assert.equal(dpor.outcome, 'exhausted');
  assert.deepEqual([...dpor.states.keys()].sort(), ['0:RBX=0', '0:RBX=1', '0:RBX=2']);
  assert.deepEqual([...dfs.states.keys()].sort(), [...dpor.states.keys()].sort());
  assert.ok(dpor.executions < dfs.executions);
});

test('a search directed at a window of the run is bounded, never exhausted, and reaches only what the window allows', () => {
  const sb = scenarioFile('scenarios/store-buffering.yaml', [[0, Reg.RAX], [1, Reg.RAX]]);
  const whole = exploreDpor(sb, {}, { stopAtFirstViolation: false });
  const windowed = exploreDpor(sb, { window: { fromStep: 2, toStep: 4 } }, { stopAtFirstViolation: false });
  assert.equal(whole.outcome, 'exhausted');
  assert.equal(windowed.outcome, 'bounded');
  assert.equal(windowed.exhausted, false);
  const all = [...whole.states.keys()];
  assert.ok([...windowed.states.keys()].every((s) => all.includes(s)));
  // The same prefix in every execution: the window's search is deterministic.
  assert.deepEqual([...exploreDpor(sb, { window: { fromStep: 2, toStep: 4 } }).states], [...windowed.states]);
});
