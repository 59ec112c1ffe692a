// DESIGN.md §3: a booted machine forks cheaply (copy-on-write) and forks do not disturb each other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RandomChooser } from '../../src/sched/random.ts';
import { machine, done, textPokeBpOrder, SITE, OLD_SITE, NEW_SITE } from '../helpers/site-machine.ts';

test('forks run independently from one boot and leave the parent untouched', () => {
  const boot = machine(textPokeBpOrder());
  const a = boot.fork();
  const b = boot.fork();
  a.run({ chooser: new RandomChooser(1), until: done });
  assert.deepEqual(Array.from(a.memory.readBytes(SITE, 7)), NEW_SITE);
  assert.deepEqual(Array.from(b.memory.readBytes(SITE, 7)), OLD_SITE);
  assert.deepEqual(Array.from(boot.memory.readBytes(SITE, 7)), OLD_SITE);
  assert.equal(boot.vcpu(0).retired, 0);
  b.run({ chooser: new RandomChooser(1), until: done });
  assert.deepEqual(a.events, b.events, 'same seed from the same snapshot: same trace');
});

test('a fork of a fork behaves like a fresh machine', () => {
  const boot = machine(textPokeBpOrder());
  const fresh = machine(textPokeBpOrder());
  const grandchild = boot.fork().fork();
  grandchild.run({ chooser: new RandomChooser(17), until: done });
  fresh.run({ chooser: new RandomChooser(17), until: done });
  assert.deepEqual(grandchild.events, fresh.events);
  assert.deepEqual(grandchild.decisions, fresh.decisions);
});
