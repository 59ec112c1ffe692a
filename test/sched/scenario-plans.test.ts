// Injection plans stated in a scenario (src/cli/scenario/injection-plan.ts): `inject.nmi.when`
// names code by label or code block and reaches the strategies as address ranges; a preemption
// budget in `inject` reaches the run; a name that does not exist is one error line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { buildMachine, makeChooser } from '../../src/cli/scenario/build-machine.ts';
import { validateScenario, type MachineScenario } from '../../src/cli/scenario/load.ts';
import { machineScenarioSchema } from '../../src/cli/scenario/schema.ts';
import { ActionKind, actionKind } from '../../src/machine/chooser.ts';

// vCPU 0 loops in `work`, vCPU 1 halts at once; NMIs go to vCPU 0 only inside `hot`.
const SCENARIO = `
machine: { vcpus: 2 }
memory:
  - { at: 0x1000, size: 0x1000, perms: rx }
  - { at: 0x20000, size: 0x1000, perms: rw }
code:
  - at: 0x1000
    name: work
    asm: |
      mov ecx, 200
      spin:
        dec ecx
        jnz spin
      hot:
        nop
        nop
      hlt
  - at: 0x1100
    name: handler
    asm: |
      nmi_entry:
        iretq
  - { at: 0x1200, hex: "f4" }
vcpus:
  - { rip: 0x1000, rsp: 0x20800 }
  - { rip: 0x1200 }
idt: { "2": nmi_entry }
inject: { nmis: 1, preemptions: 1, nmi: { when: { cpu: 0, inside: [hot] } }, preempt: { when: { cpu: 0, inside: [work] } } }
`;

function load(text: string): MachineScenario {
  return validateScenario<MachineScenario>('t.yaml', parseYaml(text), machineScenarioSchema);
}

test("a scenario's conditional NMI lands at its label, and its preemption budget reaches the run", () => {
  const boot = buildMachine('t.yaml', load(SCENARIO));
  assert.deepEqual(boot.plans.nmi, [{ when: { cpu: 0, inside: [{ from: boot.labels.get('hot')!, to: boot.labels.get('hot')! + 1 }] } }]);
  assert.equal(boot.run.inject?.preemptions, 1);
  for (const strategy of ['random', 'pct'] as const) {
    const m = boot.machine.fork();
    const r = m.run({ ...boot.run, chooser: makeChooser(strategy, 1, 2, undefined, boot.plans) });
    assert.equal(r.reason, 'all-halted');
    const nmi = m.events.find((e) => e.type === 'nmi');
    assert.ok(nmi && nmi.type === 'nmi' && nmi.rip === boot.labels.get('hot'), `${strategy}: the NMI was taken at 'hot'`);
    assert.ok(m.decisions.some((d, i) => i % 2 === 0 && d >= 0 && actionKind(d) === ActionKind.Preempt), `${strategy}: the host preempted`);
  }
});

test('a plan naming code that does not exist is one error line, no stack trace', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvpatch-plans-'));
  const p = join(dir, 'bad.yaml');
  writeFileSync(p, SCENARIO.replace('inside: [hot]', 'inside: [hott]'));
  const r = spawnSync(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'pvpatch.js'), 'run', p], { encoding: 'utf8', env: { ...process.env, PVPATCH_DEBUG: '' } });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr.trim(), /^[^\n]*\/inject\/nmi\/when\/inside\/0: no code named 'hott' \(code blocks: work, handler; labels: [^\n]*\)$/);
});
