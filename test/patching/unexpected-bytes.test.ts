// A switch that meets a site whose bytes are not the ones it expects (another patcher was there)
// refuses, reports the site and its bytes as the result, writes nothing, and the guest runs on,
// on its old ops, to the end: no hang, no half-patched text (issue 4; Linux's jump_label BUG()s).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { TEXT_BASE, VECTOR } from '../../src/kernel/layout.ts';
import { PvOp } from '../../src/kernel/pv-ops.ts';
import { switchLockOpsV2 } from '../../src/patching/v2.ts';
import { switchLockOpsV1 } from '../../src/patching/v1.ts';
import { foreignEncoding } from '../../src/patching/broken.ts';
import { installHintSwitch, runHintSwitch, SWITCH_PROTOCOLS } from '../../src/patching/hint-switch.ts';

const INJECT = { nmis: 2, irqs: 4, irqVector: VECTOR.LOCK_IRQ };

function corrupted(seed: number): { g: Guest; before: Uint8Array; site: number } {
  const g = new Guest({ vcpus: 4, host: { realtime: true }, spinThreshold: 64, seed, workload: { iterations: 6, lockopCheckpoint: true } });
  const site = g.image.sites.findIndex((s) => s.type === PvOp.QueuedSpinUnlock);
  foreignEncoding(g, site);
  return { g, before: g.machine.memory.readBytes(TEXT_BASE, g.image.text.length).slice(), site };
}

function textOf(g: Guest): Uint8Array {
  return g.machine.memory.readBytes(TEXT_BASE, g.image.text.length);
}

test('v2 refuses a site with foreign NOPs: unexpected-bytes with the site and both byte strings; nothing written; the guest finishes on native ops (10 seeds)', () => {
  for (let seed = 1; seed <= 10; seed++) {
    const { g, before } = corrupted(seed);
    const r = switchLockOpsV2(g, 'pv', { patcherCpu: seed % 4, run: { chooser: new RandomChooser(seed), inject: INJECT } });
    assert.equal(r.reason, 'unexpected-bytes', `seed ${seed}: ${r.reason} ${r.detail ?? ''}`);
    assert.match(r.detail!, /native -> pv refused: queued_spin_unlock site at 0x[0-9a-f]+ holds \[c6 07 00 66 66 90\], not the native bytes \[c6 07 00 0f 1f 00\]/);
    assert.equal(r.flavor, 'native');
    assert.deepEqual(r.switches[0]!.phases.map((p) => p.phase), ['start'], 'no INT3 was written');
    assert.ok(Buffer.from(textOf(g)).equals(Buffer.from(before)), 'the text is as it was');
    assert.ok(g.tasksDone && r.locks.every((l) => l.ok), 'the guest ran on to the end, locks intact');
    assert.equal(r.run.hazards.length, 0);
  }
});

test('v1 refuses it too: no stop_machine, the guest runs on', () => {
  const { g, before } = corrupted(3);
  const r = switchLockOpsV1(g, 'pv', { run: { chooser: new RandomChooser(3), inject: INJECT } });
  assert.equal(r.reason, 'unexpected-bytes');
  assert.equal(r.switched, false);
  assert.equal(r.stats.ipis, 0, 'no STOP IPI was sent');
  assert.ok(Buffer.from(textOf(g)).equals(Buffer.from(before)));
  assert.ok(g.tasksDone && r.locks.every((l) => l.ok));
});

for (const protocol of SWITCH_PROTOCOLS) {
  test(`the hint-triggered ${protocol} reports unexpected-bytes and the guest finishes`, () => {
    const { g, before, site } = corrupted(5);
    // text_poke_bp only touches the slowpath sites: corrupt one of those for it.
    if (protocol === 'text-poke-bp') foreignEncoding(g, g.image.sites.findIndex((s) => s.type === PvOp.QueuedSpinLockSlowpath));
    const expectText = protocol === 'text-poke-bp' ? textOf(g).slice() : before;
    const sw = installHintSwitch(g, protocol, { patcherCpu: 1 });
    const r = runHintSwitch(g, sw, { atStep: 20, hint: 'revoke' }, { chooser: new RandomChooser(5), inject: INJECT });
    assert.equal(r.switches.length, 1, 'the hint asked for a switch');
    assert.equal(r.reason, 'unexpected-bytes', `${r.reason} ${r.detail ?? ''}`);
    assert.match(r.detail!, /refused: .* site at 0x[0-9a-f]+ holds \[/);
    assert.equal(r.flavor, 'native');
    assert.ok(Buffer.from(textOf(g)).equals(Buffer.from(expectText)), 'nothing was written');
    assert.ok(g.tasksDone && r.locks.every((l) => l.ok));
    assert.ok(site >= 0);
  });
}
