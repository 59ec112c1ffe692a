// SDM Vol. 3A 8.1.3 (self-modifying code): a store to code, then a jump to it, runs the new code on
// the same CPU, even while the store still sits in that CPU's store buffer (the fetch sees it, as
// its loads do). Another vCPU sees the bytes only when they drain, and then under the
// cross-modifying-code rule: without a serializing instruction, cmc-unsynchronized.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { ActionKind, actionKind, type Chooser, type SchedulingPoint } from '../../src/machine/chooser.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32 } from '../helpers/bytes.ts';

const CODE = 0x1000, TARGET = 0x1080, SPINNER = 0x1100;
const OLD = hex('b8 07 00 00 00'); // mov $7,%eax
const STORE_NEW = [...hex('c7 04 25'), ...le32(TARGET), ...hex('b8 2a 00 00')]; // movl $0x00002ab8,TARGET: mov $42,%eax
const JMP_TARGET = [0xe9, ...le32(TARGET - (CODE + STORE_NEW.length + 5))]; // jmp TARGET

/** Never drains a store buffer while a vCPU can step: the store is still buffered at the fetch. */
const noDrain: Chooser = {
  name: 'no-drain',
  next(p: SchedulingPoint) {
    for (let i = 0; i < p.count; i++) if (actionKind(p.actions[i]!) === ActionKind.Step) return i;
    return 0;
  },
  choose: () => 0,
};

function machine(vcpus: number): Machine {
  const m = new Machine({ vcpus });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.map(0x20000, 0x4000, 'rw');
  m.memory.writeBytes(CODE, [...STORE_NEW, ...JMP_TARGET]);
  m.memory.writeBytes(TARGET, [...OLD, 0xf4]); // hlt after it
  for (const c of m.vcpus) c.setAddr(Reg.RSP, 0x22000 + 0x1000 * c.id);
  m.vcpu(0).rip = CODE;
  return m;
}

test('a vCPU that stores to code and jumps to it runs the new bytes while the store is still in its store buffer', () => {
  const m = machine(1);
  const r = m.run({ chooser: noDrain, maxInstructions: 100, until: (x) => x.vcpu(0).halted });
  assert.equal(r.reason, 'until');
  assert.equal(r.hazards.length, 0, 'its own stores need no serialization');
  assert.ok(m.vcpu(0).storeBuffer.length > 0, 'the store has not drained');
  assert.deepEqual(Array.from(m.memory.readBytes(TARGET, 5)), Array.from(OLD), 'memory still holds the old instruction');
  assert.equal(m.vcpu(0).getReg64(Reg.RAX), 42n, 'the new instruction ran (mov $42), not the old one (mov $7)');
});

test('another vCPU running the code without serializing meets the drained bytes as cmc-unsynchronized, on every seed; the writer never does', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const m = machine(2);
    m.memory.writeBytes(SPINNER, [0xe9, ...le32(TARGET - (SPINNER + 5))]); // jmp TARGET
    m.memory.writeBytes(TARGET + 5, hex('eb f9')); // jmp TARGET: both vCPUs loop over it
    m.vcpu(1).rip = SPINNER;
    const r = m.run({ chooser: new RandomChooser(seed), maxInstructions: 5_000 });
    assert.equal(r.reason, 'hazard', `seed ${seed}: ${r.reason}`);
    const h = r.hazards[0]!;
    assert.ok(h.kind === 'cmc-unsynchronized');
    assert.equal(h.cpu, 1, `seed ${seed}`);
    assert.equal(h.address, TARGET);
    assert.ok(h.unsynchronized.every((b) => b.writer === 0));
  }
});
