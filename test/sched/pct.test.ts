// Spin-aware PCT (issue 9): change points over the measured run length reach every x86-TSO
// outcome of the litmus shapes; a spinner steps aside so the vCPU it waits for runs; NMIs land
// while other vCPUs can still run, spread over the run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { PctChooser } from '../../src/sched/pct.ts';
import { measureRunLength } from '../../src/sched/run-length.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32 } from '../helpers/bytes.ts';
import { LITMUS, litmusOutcome } from './litmus.ts';

const SEEDS = 12;

for (const t of LITMUS) {
  test(`PCT over ${SEEDS} seeds reaches every x86-TSO outcome of ${t.name} (${t.allowed.join(' ')}) and no other`, () => {
    const length = measureRunLength((l) => litmusOutcome(t, new PctChooser({ seed: 0, length: l })).steps);
    assert.ok(length < 20, `the measured length is the litmus test's own (${length} steps)`);
    const seen = new Set<string>();
    for (let seed = 1; seed <= SEEDS; seed++) seen.add(litmusOutcome(t, new PctChooser({ seed, length })).outcome);
    assert.deepEqual([...seen].sort(), [...t.allowed].sort());
  });
}

test('PCT with change points drawn over 10,000 steps (the old default) misses a store-buffering outcome on the same seeds', () => {
  const sb = LITMUS[0]!;
  const seen = new Set<string>();
  for (let seed = 1; seed <= SEEDS; seed++) seen.add(litmusOutcome(sb, new PctChooser({ seed, length: 10_000 })).outcome);
  assert.ok(seen.size < sb.allowed.length, `reached only ${[...seen].join(' ')}`);
});

const FLAG = 0x10000;

/** vCPU 0 spins with PAUSE until vCPU 1, after some work, sets the flag. */
function spinWait(): Machine {
  const m = new Machine({ vcpus: 2 });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.map(0x10000, 0x1000, 'rw');
  // 0x1000: pause; mov FLAG,%eax; test %eax,%eax; jz 0x1000; hlt
  m.memory.writeBytes(0x1000, [...hex('f3 90 8b 04 25'), ...le32(FLAG), ...hex('85 c0 74 f3 f4')]);
  // 0x1100: mov $50,%ecx; L: dec %ecx; jnz L; movl $1,FLAG; hlt
  m.memory.writeBytes(0x1100, [...hex('b9 32 00 00 00 ff c9 75 fc c7 04 25'), ...le32(FLAG), ...le32(1), ...hex('f4')]);
  m.vcpu(0).rip = 0x1000;
  m.vcpu(1).rip = 0x1100;
  return m;
}

test('a vCPU spinning on PAUSE steps aside: the vCPU it waits for runs, on every seed, with no change point in reach', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const m = spinWait();
    const r = m.run({ chooser: new PctChooser({ seed, length: 1e9 }), maxInstructions: 5_000 });
    assert.equal(r.reason, 'all-halted', `seed ${seed}: ${r.reason} after ${r.instructions} instructions`);
    assert.equal(m.vcpu(0).getReg64(Reg.RAX), 1n);
  }
});

test('PCT injects NMIs while other actions can run, spread over the run (not only when nothing else can)', () => {
  const steps: number[] = [];
  for (let seed = 1; seed <= 10; seed++) {
    const m = new Machine({ vcpus: 2 });
    m.memory.map(0x1000, 0x1000, 'rx');
    m.memory.map(0x20000, 0x2000, 'rw');
    // Each vCPU counts down 300 iterations and halts; the NMI handler is a bare iretq.
    for (const base of [0x1000, 0x1100]) m.memory.writeBytes(base, hex('b9 2c 01 00 00 ff c9 75 fc f4'));
    m.memory.writeBytes(0x1200, hex('48 cf'));
    m.setIdt(2, 0x1200);
    m.vcpu(0).rip = 0x1000;
    m.vcpu(1).rip = 0x1100;
    m.vcpu(0).setAddr(Reg.RSP, 0x21000);
    m.vcpu(1).setAddr(Reg.RSP, 0x22000);
    const r = m.run({ chooser: new PctChooser({ seed, length: 600 }), inject: { nmis: 4 } });
    assert.equal(r.reason, 'all-halted');
    const nmis = m.events.filter((e) => e.type === 'nmi');
    assert.equal(nmis.length, 4, `seed ${seed}: the whole budget landed while the vCPUs ran`);
    steps.push(...nmis.map((e) => e.step));
  }
  steps.sort((a, b) => a - b);
  const median = steps[steps.length >> 1]!;
  assert.ok(median > 150 && median < 450, `NMIs spread over the 600-step run (median step ${median})`);
});
