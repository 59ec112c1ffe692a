// x86-TSO (DESIGN.md §2): store buffering is observable; MFENCE forbids it; message passing works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32 } from '../helpers/bytes.ts';

const X = 0x10000, Y = 0x10040, FLAG = 0x10080, DATA = 0x100c0;
const movStore1 = (addr: number) => [...hex('c7 04 25'), ...le32(addr), ...le32(1)]; // movl $1, addr
const movLoad = (reg: 'eax' | 'ebx', addr: number) => [...hex(reg === 'eax' ? '8b 04 25' : '8b 1c 25'), ...le32(addr)];
const MFENCE = hex('0f ae f0');
const HLT = hex('f4');

function litmus(fence: boolean, seed: number, tso = true): [bigint, bigint] {
  const m = new Machine({ vcpus: 2, tso });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.map(0x10000, 0x1000, 'rw');
  const f = fence ? MFENCE : [];
  m.memory.writeBytes(0x1000, [...movStore1(X), ...f, ...movLoad('eax', Y), ...HLT]);
  m.memory.writeBytes(0x1100, [...movStore1(Y), ...f, ...movLoad('eax', X), ...HLT]);
  m.vcpu(0).rip = 0x1000;
  m.vcpu(1).rip = 0x1100;
  const r = m.run({ chooser: new RandomChooser(seed) });
  assert.equal(r.reason, 'all-halted');
  return [m.vcpu(0).getReg64(Reg.RAX), m.vcpu(1).getReg64(Reg.RAX)];
}

function outcomes(fence: boolean, tso = true): Set<string> {
  const seen = new Set<string>();
  for (let seed = 1; seed <= 400; seed++) seen.add(litmus(fence, seed, tso).join(','));
  return seen;
}

test('store buffering: both loads can read 0 with store buffers', () => {
  assert.ok(outcomes(false).has('0,0'));
});

test('store buffering: MFENCE makes both-zero unreachable', () => {
  const seen = outcomes(true);
  assert.ok(!seen.has('0,0'));
  assert.ok(seen.size >= 2); // the other interleavings are still explored
});

test('store buffering: with TSO off (sequential consistency) both-zero is unreachable', () => {
  assert.ok(!outcomes(false, false).has('0,0'));
});

test('message passing: a reader that sees the flag sees the data (TSO keeps store and load order)', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const m = new Machine({ vcpus: 2 });
    m.memory.map(0x1000, 0x1000, 'rx');
    m.memory.map(0x10000, 0x1000, 'rw');
    // writer: movl $42, data; movl $1, flag; hlt
    m.memory.writeBytes(0x1000, [...hex('c7 04 25'), ...le32(DATA), ...le32(42), ...movStore1(FLAG), ...HLT]);
    // reader: L: mov flag,%eax; test %eax,%eax; jz L; mov data,%ebx; hlt
    m.memory.writeBytes(0x1100, [...movLoad('eax', FLAG), ...hex('85 c0 74 f5'), ...movLoad('ebx', DATA), ...HLT]);
    m.vcpu(0).rip = 0x1000;
    m.vcpu(1).rip = 0x1100;
    const r = m.run({ chooser: new RandomChooser(seed) });
    assert.equal(r.reason, 'all-halted');
    assert.equal(m.vcpu(1).getReg64(Reg.RBX), 42n, `seed ${seed}`);
  }
});

test('a vCPU reads its own buffered store before it drains (store forwarding)', () => {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.map(0x10000, 0x1000, 'rw');
  m.memory.writeBytes(0x1000, [...movStore1(X), ...movLoad('eax', X), ...HLT]);
  m.vcpu(0).rip = 0x1000;
  // Never drain while the vCPU runs: a chooser that always steps, stopping at the HLT.
  const stepsOnly = { name: 'steps-only', next: (p: { actions: Int32Array; count: number }) => Array.from(p.actions.subarray(0, p.count)).findIndex((a) => (a & 3) === 0), choose: () => 0 };
  const r = m.run({ chooser: stepsOnly, until: (mm) => mm.vcpu(0).halted });
  assert.equal(r.reason, 'until');
  assert.equal(m.vcpu(0).getReg64(Reg.RAX), 1n);
  assert.equal(m.memory.readBytes(X, 1)[0], 0, 'the store is still buffered');
  assert.equal(m.vcpu(0).storeBuffer.length, 1);
});
