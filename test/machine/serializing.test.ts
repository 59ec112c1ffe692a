// DESIGN.md §2, SDM 8.1.3 and 9.3.1: MOV to a control register is serializing, so a vCPU that
// writes CR3 after seeing another vCPU's code stores may run the new code; without it the same
// fetch is cross-modifying code without synchronization.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32, rel32 } from '../helpers/bytes.ts';

const WAITER = 0x1000, PATCHER = 0x1400, TARGET = 0x1800, FLAG = 0x10000;
const MOV_CR3_RAX_AND_BACK = hex('0f 20 d8 0f 22 d8'); // mov %cr3,%rax; mov %rax,%cr3
const SIX_BYTES_OF_NOPS = hex('0f 1f 00 0f 1f 00');

function machine(serialize: number[]): Machine {
  const m = new Machine({ vcpus: 2 });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.map(FLAG, 0x1000, 'rw');
  // vCPU 0: spin until FLAG, serialize (or not), jump to TARGET.
  const wait = [...hex('8b 04 25'), ...le32(FLAG), ...hex('85 c0 74 f5')];
  const jmpAt = WAITER + wait.length + serialize.length;
  m.memory.writeBytes(WAITER, [...wait, ...serialize, 0xe9, ...rel32(jmpAt + 5, TARGET)]);
  m.memory.writeBytes(TARGET, hex('90 90 90 90 90 f4'));
  // vCPU 1: write `mov $1,%eax` over TARGET's NOPs, then publish FLAG and halt.
  m.memory.writeBytes(PATCHER, [...hex('c7 04 25'), ...le32(TARGET), ...le32(0x000001b8), ...hex('c6 04 25'), ...le32(TARGET + 4), 0x00, ...hex('c7 04 25'), ...le32(FLAG), ...le32(1), ...hex('0f ae f0 f4')]);
  m.vcpu(0).rip = WAITER;
  m.vcpu(0).crLo[3] = 0x5000;
  m.vcpu(1).rip = PATCHER;
  return m;
}

test('mov to %cr3 serializes: the waiter runs the other vCPU\'s new code without a hazard on every seed', () => {
  for (let seed = 1; seed <= 100; seed++) {
    const m = machine(MOV_CR3_RAX_AND_BACK);
    const r = m.run({ chooser: new RandomChooser(seed), maxInstructions: 100_000 });
    assert.equal(r.reason, 'all-halted', `seed ${seed}: ${r.reason} ${r.hazards[0]?.kind ?? ''}`);
    assert.equal(m.vcpu(0).getReg64(Reg.RAX), 1n, 'the new mov $1,%eax ran');
    assert.equal(m.vcpu(0).crLo[3], 0x5000, 'CR3 written back unchanged');
  }
});

test('without the serializing mov to %cr3 the same fetch is cmc-unsynchronized', () => {
  const m = machine(SIX_BYTES_OF_NOPS);
  const r = m.run({ chooser: new RandomChooser(1), maxInstructions: 100_000 });
  assert.equal(r.reason, 'hazard');
  assert.equal(r.hazards[0]!.kind, 'cmc-unsynchronized');
  assert.equal(r.hazards[0]!.cpu, 0);
});

test('mov from %cr3 reads the value; mov to %cr8 (TPR) is not serializing', () => {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.writeBytes(0x1000, hex('0f 20 d8 44 0f 22 c0 f4')); // mov %cr3,%rax; mov %rax,%cr8; hlt
  m.vcpu(0).rip = 0x1000;
  m.vcpu(0).crLo[3] = 0x1234000;
  m.vcpu(0).crHi[3] = 0x80000000; // bit 63: PCID no-flush
  m.run();
  assert.equal(m.vcpu(0).getReg64(Reg.RAX), 0x8000000001234000n);
  assert.equal(m.vcpu(0).crLo[8], 0x1234000);
});

test('prefetcht0/t1/t2/nta and prefetchw run as no-ops', () => {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.writeBytes(0x1000, hex('0f 18 08 0f 18 10 0f 18 18 0f 18 00 0f 0d 08 f4')); // prefetcht0..2/nta (%rax), prefetchw (%rax); hlt
  m.vcpu(0).rip = 0x1000;
  const r = m.run();
  assert.equal(r.reason, 'all-halted');
  assert.equal(r.instructions, 6);
});
