// Issue 9 item 2: the bounded exhaustive search with dynamic partial-order reduction reaches
// exactly the x86-TSO outcomes of the litmus tests, proves them exhausted, explores far fewer
// executions than plain DFS, and hands back a violation's schedule that ReplayChooser replays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exploreDpor } from '../../src/check/dpor.ts';
import { ReplayChooser } from '../../src/sched/replay.ts';
import { Schedule } from '../../src/sched/schedule.ts';
import { Reg } from '../../src/x86/registers.ts';
import { scenarioFile, scenarioSubject } from './machine-subject.ts';

const litmus = (name: string, cpu0: string, cpu1: string, extra = '') => `
name: ${name}
machine: { vcpus: 2, tso: true }
memory:
  - { at: 0x1000, size: 0x1000, perms: rx }
  - { at: 0x10000, size: 0x1000, perms: rw }
code:
  - at: 0x1000
    asm: |
      cpu0:
${cpu0.trim().split('\n').map((l) => `        ${l.trim()}`).join('\n')}
      cpu1:
${cpu1.trim().split('\n').map((l) => `        ${l.trim()}`).join('\n')}
${extra}
vcpus:
  - { rip: cpu0 }
  - { rip: cpu1 }
`;

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
        mov dword [0x10080], 1
        hlt
vcpus:
  - { rip: cpu0 }
  - { rip: cpu1 }
  - { rip: cpu2 }
`, []);
  const dpor = exploreDpor(three);
  const dfs = exploreDpor(three, {}, { reduction: false });
  assert.equal(dpor.outcome, 'exhausted');
  assert.equal(dfs.outcome, 'exhausted');
  // Each vCPU: its store, then its HLT and its drain in either order. 9 events in 3 chains of
  // partial orders: 9! / (3! 3! 3!) shuffles of the three vCPUs' events times 2 orders per vCPU.
  assert.equal(dpor.executions, 1);
  assert.equal(dfs.executions, (362880 / 216) * 8);
  assert.equal(dfs.states.size, 1);
});

test('cmc-no-sync: DPOR finds the torn fetch, and ReplayChooser reproduces it at the same step', () => {
  const subject = scenarioFile('scenarios/cmc-no-sync.yaml', []);
  const r = exploreDpor(subject, { preemptions: 2 });
  assert.equal(r.outcome, 'violation');
  const v = r.violation!;
  assert.equal(v.verdict.ok, false);
  assert.ok(!v.verdict.ok && v.verdict.hazard?.kind === 'cmc-unsynchronized');
  const again = subject.start().run(new ReplayChooser(Schedule.fromCodes(v.schedule), 2), subject.limits);
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
