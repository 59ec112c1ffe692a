// Stateful DPOR (src/check/dpor-cache.ts): caching explored states must not change what the
// search reaches. With the cache, the litmus tests reach exactly the final states they reach
// without it (and that plain DFS reaches), within every preemption bound; the cache is used; a
// subject whose state the hash cannot see is not cached; a full cache keeps the result; the state
// hash covers the text bytes' cross-modifying-code record.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exploreDpor } from '../../src/check/dpor.ts';
import { machineSubject } from '../../src/check/machine-subject.ts';
import { buildMachine } from '../../src/cli/scenario/build-machine.ts';
import { validateScenario, type MachineScenario } from '../../src/cli/scenario/load.ts';
import { machineScenarioSchema } from '../../src/cli/scenario/schema.ts';
import { Reg } from '../../src/x86/registers.ts';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { litmus, scenarioFile, scenarioSubject } from './machine-subject.ts';
import { FootprintRecorder } from '../../src/machine/footprint.ts';
import { machineStateHash } from '../../src/check/state-hash.ts';


const keys = (m: Map<string, number>) => [...m.keys()].sort();

test('with the state cache on, SB and MP reach exactly their x86-TSO outcomes, exhausted', () => {
  const sb = exploreDpor(scenarioFile('scenarios/store-buffering.yaml', [[0, Reg.RAX], [1, Reg.RAX]]));
  assert.equal(sb.outcome, 'exhausted');
  assert.deepEqual(keys(sb.states), ['0:RAX=0 1:RAX=0', '0:RAX=0 1:RAX=1', '0:RAX=1 1:RAX=0', '0:RAX=1 1:RAX=1']);
  const mp = exploreDpor(scenarioSubject('mp', litmus('mp', 'mov dword [0x10000], 1\nmov dword [0x10040], 1\nhlt', 'mov eax, dword [0x10040]\nmov ebx, dword [0x10000]\nhlt'), [[1, Reg.RAX], [1, Reg.RBX]]));
  assert.equal(mp.outcome, 'exhausted');
  assert.deepEqual(keys(mp.states), ['1:RAX=0 1:RBX=0', '1:RAX=0 1:RBX=1', '1:RAX=1 1:RBX=1']);
  // On, though these trees are too small to revisit a state (the next test's are not).
  assert.ok(sb.cache !== undefined && mp.cache !== undefined);
});

test('within every preemption bound, DPOR with the cache reaches the same final states as without it', () => {
  const cases = [
    scenarioSubject('2w', litmus('2w', 'mov dword [0x10000], 1\nmov eax, dword [0x10000]\nmov ebx, dword [0x10040]\nhlt', 'mov dword [0x10000], 2\nmov dword [0x10040], 1\nmov eax, dword [0x10000]\nhlt'), [[0, Reg.RAX], [0, Reg.RBX], [1, Reg.RAX]]),
    scenarioSubject('rmw', litmus('rmw', 'lock inc dword [0x10000]\nmov eax, dword [0x10040]\nhlt', 'mov eax, dword [0x10000]\nmov dword [0x10040], eax\nmov ebx, dword [0x10000]\nhlt'), [[0, Reg.RAX], [1, Reg.RAX], [1, Reg.RBX]]),
    // A flag handshake with a spin loop: states repeat across executions, and the spin's cycles.
    scenarioSubject('spin', litmus('spin', 'mov dword [0x10000], 1\nmov eax, dword [0x10040]\nhlt', 'wait:\npause\nmov eax, dword [0x10000]\ntest eax, eax\njz wait\nmov dword [0x10040], 2\nhlt'), [[0, Reg.RAX], [1, Reg.RAX]]),
  ];
  let hits = 0;
  for (const subject of cases) {
    for (const preemptions of [0, 1, 2, undefined]) {
      const what = `${subject.name} within ${preemptions ?? 'any number of'} preemptions`;
      const cached = exploreDpor(subject, { preemptions });
      const plain = exploreDpor(subject, { preemptions }, { cache: false });
      assert.equal(cached.outcome, 'exhausted', what);
      assert.equal(plain.outcome, 'exhausted', what);
      assert.deepEqual(keys(cached.states), keys(plain.states), what);
      assert.deepEqual(keys(cached.verdicts), keys(plain.verdicts), what);
      assert.equal(plain.cache, undefined);
      hits += cached.cache!.hits;
    }
  }
  assert.ok(hits > 0, 'the cache was hit');
});

test('a full cache stops taking states and the search still reaches every outcome', () => {
  const sb = scenarioFile('scenarios/store-buffering.yaml', [[0, Reg.RAX], [1, Reg.RAX]]);
  const small = exploreDpor(sb, {}, { maxStates: 2 });
  assert.equal(small.outcome, 'exhausted');
  assert.equal(small.cache!.full, true);
  assert.equal(small.cache!.states, 2);
  assert.deepEqual(keys(small.states), ['0:RAX=0 1:RAX=0', '0:RAX=0 1:RAX=1', '0:RAX=1 1:RAX=0', '0:RAX=1 1:RAX=1']);
});

test('a subject whose future its state hash cannot see (a probe on its machine) is explored without the cache', () => {
  const path = 'scenarios/store-buffering.yaml';
  const boot = buildMachine(path, validateScenario<MachineScenario>(path, parseYaml(readFileSync(path, 'utf8')), machineScenarioSchema));
  boot.machine.probe(boot.machine.vcpus[0]!.rip, () => undefined);
  const subject = machineSubject({ name: path, machine: boot.machine, limits: { maxInstructions: boot.run.maxInstructions }, observe: boot.observe, ...(boot.run.until ? { until: boot.run.until } : {}) });
  assert.equal(subject.start().stateHash?.(), undefined);
  const r = exploreDpor(subject);
  assert.equal(r.cache!.states, 0);
  assert.equal(r.cache!.hits, 0);
  assert.equal(r.outcome, 'exhausted');
});

test('the state hash sees who last wrote a text byte, not only its value (the cross-modifying-code record decides the future)', () => {
  const path = 'scenarios/text-poke-order.yaml';
  const boot = buildMachine(path, validateScenario<MachineScenario>(path, parseYaml(readFileSync(path, 'utf8')), machineScenarioSchema));
  const hashAfter = (writer: number) => {
    const m = boot.machine.fork();
    const rec = new FootprintRecorder(m.memory, m.vcpus.length);
    m.recordFootprints(rec);
    // INT3 on the site's first byte and back: same bytes, same text write count, another writer.
    m.memory.poke(0x1000, [0xcc], writer);
    m.memory.poke(0x1000, [0x0f], writer);
    return machineStateHash(m, rec, [], [0x1000]);
  };
  assert.equal(hashAfter(1), hashAfter(1));
  assert.notEqual(hashAfter(1), hashAfter(0));
});
