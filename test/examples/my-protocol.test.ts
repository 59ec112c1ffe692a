// Bring your own protocol (issue 9 item 6): examples/my-protocol.ts, text_poke_bp without the sync
// after the INT3, loaded the way `--protocol-file` loads it and run on a guest scenario
// (examples/retarget-slowpath.yaml). The checks catch it on seed 8 where Linux's steps are clean;
// a module of the wrong shape is one clear line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadProtocolFile } from '../../src/cli/protocol-file.ts';
import { readScenarioDoc, validateScenario } from '../../src/cli/scenario/load.ts';
import { guestScenarioSchema, type GuestScenario } from '../../src/cli/scenario/guest-schema.ts';
import { guestOptions } from '../../src/cli/commands/run-guest.ts';
import { GuestSubject } from '../../src/check/guest-subject.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { VECTOR } from '../../src/kernel/layout.ts';
import { TEXT_POKE_BP_STEPS } from '../../src/kernel/text-poke-steps.ts';
import type { Protocol } from '../../src/patching/protocol-api.ts';
import type { Hazard } from '../../src/machine/events.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const EXAMPLE = join(ROOT, 'examples', 'my-protocol.ts');
const SCENARIO_FILE = join(ROOT, 'examples', 'retarget-slowpath.yaml');
const SCENARIO = validateScenario<GuestScenario>(SCENARIO_FILE, readScenarioDoc(SCENARIO_FILE), guestScenarioSchema);

/** One run of the scenario with `custom` (undefined: the stock text_poke_bp), seeded by `seed`. */
function runScenario(seed: number, custom?: Protocol) {
  const sw = SCENARIO.switch!;
  const subject = new GuestSubject({
    name: SCENARIO_FILE,
    guest: guestOptions(SCENARIO, seed),
    switch: { protocol: 'text-poke-bp', hint: sw.hint, atStep: sw.atStep, patcherCpu: sw.patcherCpu ?? 0, ...(custom ? { custom } : {}) },
    limits: { maxInstructions: 2_000_000, inject: { nmis: SCENARIO.inject!.nmis!, irqs: SCENARIO.inject!.irqs!, irqVector: VECTOR.LOCK_IRQ } },
  });
  const exec = subject.start(seed);
  const r = exec.run(new RandomChooser(seed, { inject: {} }));
  return { r, hs: exec.switchResult! };
}

test('the example module loads as a text_poke_bp protocol overriding exactly one hook, sync', async () => {
  const { protocol } = await loadProtocolFile(EXAMPLE);
  assert.equal(protocol.kind, 'text-poke-bp');
  assert.equal(protocol.name, 'text_poke_bp without the sync after the INT3');
  assert.deepEqual(Object.keys(protocol.kind === 'text-poke-bp' ? protocol.steps ?? {} : {}), ['sync']);
});

test('text_poke_bp without the sync after the INT3 is caught on seed 8: vCPU 2 meets an INT3 it never synchronized with while the tail behind it has changed; Linux\'s steps are clean on the same seed', async () => {
  const { protocol } = await loadProtocolFile(EXAMPLE);
  // Seed 8 since random's bursts became the default (the first of 1..30 on which all of this holds).
  const bad = runScenario(8, protocol);
  assert.equal(bad.r.verdict.ok, false);
  const h = bad.r.verdict.ok ? undefined : (bad.r.verdict.hazard as Extract<Hazard, { kind: 'cmc-unsynchronized' }> | undefined);
  assert.equal(h?.kind, 'cmc-unsynchronized');
  assert.equal(h.cpu, 2);
  assert.deepEqual(h.bytes, [0xcc], 'the fetch met the INT3, with the new tail already behind it');
  assert.deepEqual(h.unsynchronized.map((b) => [b.offset, b.writer]), [[0, 0]], 'the patcher\'s 0xCC, which vCPU 2 never synchronized with');
  assert.equal(bad.hs.ipis, 0, 'the batch never got to a sync that IPIs (the INT3 one only serialized vCPU 0)');
  const good = runScenario(8);
  assert.equal(good.r.verdict.ok, true, good.r.verdict.ok ? '' : good.r.verdict.message);
  assert.equal(good.hs.ipis, 9, 'three syncs, each an IPI to the three other vCPUs');
});

test('the variant differs from Linux\'s steps in sync only: every other hook is the stock one', async () => {
  const { protocol } = await loadProtocolFile(EXAMPLE);
  assert.equal(protocol.kind, 'text-poke-bp');
  const { textPokeBpSteps } = await import('../../src/patching/protocol-api.ts');
  const steps = textPokeBpSteps(protocol as Extract<Protocol, { kind: 'text-poke-bp' }>);
  for (const k of Object.keys(TEXT_POKE_BP_STEPS) as (keyof typeof TEXT_POKE_BP_STEPS)[]) {
    if (k === 'sync') assert.notEqual(steps[k], TEXT_POKE_BP_STEPS[k]);
    else assert.equal(steps[k], TEXT_POKE_BP_STEPS[k], k);
  }
});

const dir = mkdtempSync(join(tmpdir(), 'pvpatch-protocol-'));
function moduleFile(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, body);
  return p;
}

test('a module of the wrong shape is one clear error naming the file and the fault', async () => {
  const cases: [string, RegExp][] = [
    [moduleFile('none.ts', 'export const x = 1;\n'), /none\.ts: the module has no default export/],
    [moduleFile('kind.ts', 'export default { kind: "v3", name: "x" };\n'), /kind\.ts: not a protocol: kind must be one of text-poke-bp, v1, v2, not "v3"/],
    [moduleFile('hook.ts', 'export default () => ({ kind: "text-poke-bp", name: "x", steps: { synk() {} } });\n'), /hook\.ts: not a protocol: steps\.synk is not a text-poke-bp hook \(the hooks: publish, int3, tails, firstBytes, sync, release, order, bpEmulation\)/],
    [moduleFile('order.ts', 'export default { kind: "text-poke-bp", name: "x", steps: { order: ["int3", "tail"] } };\n'), /order\.ts: not a protocol: steps\.order must be a list of int3, tails, first-bytes/],
    [moduleFile('v1.ts', 'export default { kind: "v1", name: "x", steps: {} };\n'), /v1\.ts: not a protocol: a v1 protocol overrides 'hooks', not 'steps'/],
    [moduleFile('syntax.ts', 'export default {{;\n'), /syntax\.ts: cannot load the module: /],
    [join(dir, 'missing.ts'), /missing\.ts: no such protocol file/],
  ];
  for (const [file, re] of cases) {
    await assert.rejects(loadProtocolFile(file), (err: Error) => {
      assert.match(err.message, re);
      assert.equal(err.message.includes('\n'), false, 'one line');
      return true;
    });
  }
});

test('pvpatch run --protocol-file: the example is caught on seed 8 and the replay line keeps the file; a bad module is one line and exit 2', () => {
  const bin = join(ROOT, 'bin', 'pvpatch.js');
  const r = spawnSync(process.execPath, [bin, 'run', SCENARIO_FILE, '--seeds', '1', '--seed', '8', '--protocol-file', EXAMPLE], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /seed 8: cmc-unsynchronized/);
  assert.match(r.stdout, /replay: pvpatch run \S+ --seed 8 --protocol-file \S+my-protocol\.ts --strategy random/);
  const bad = spawnSync(process.execPath, [bin, 'run', SCENARIO_FILE, '--protocol-file', moduleFile('bad.ts', 'export default 3;\n')], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr.trim(), /^pvpatch: \S+bad\.ts: not a protocol: the protocol is not an object$/);
});
