// DESIGN.md §2, SDM 8.1.3 and 9.3.1: MOV to a control register is serializing, so a vCPU that
// writes CR3 after seeing another vCPU's code stores may run the new code; without it the same
// fetch is cross-modifying code without synchronization.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { Flag, Reg } from '../../src/x86/registers.ts';
import { disassemble } from '../../src/x86/format.ts';
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

test('prefetchw (0f 0d /1) is prefetchw, and neither it nor a prefetcht0 of unmapped memory changes a register or a flag', () => {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.writeBytes(0x1000, hex('0f 0d 0b 0f 18 0b f4')); // prefetchw (%rbx); prefetcht0 (%rbx); hlt
  const c = m.vcpu(0);
  c.rip = 0x1000;
  c.setReg64(Reg.RBX, 0x7f0000000n); // unmapped: a prefetch never faults
  c.flags |= Flag.CF | Flag.ZF;
  const flags = c.flags;
  assert.equal(disassemble(m.memory.readBytes(0x1000, 3), 0x1000)[0]!.text, 'prefetchw (%rbx)');
  assert.equal(m.run().reason, 'all-halted');
  assert.equal(c.flags, flags);
  assert.equal(c.getReg64(Reg.RBX), 0x7f0000000n);
});

/** Run `verw %ax` with AX = `selector` (and CF set, which VERW must leave alone); return ZF. */
function verwZf(selector: number): boolean {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.writeBytes(0x1000, hex('0f 00 e8 f4')); // verw %ax; hlt
  const c = m.vcpu(0);
  c.rip = 0x1000;
  c.setReg64(Reg.RAX, BigInt(selector));
  c.flags = (c.flags | Flag.CF) & ~Flag.ZF;
  assert.equal(m.run().reason, 'all-halted');
  assert.ok((c.flags & Flag.CF) !== 0, 'VERW changes only ZF');
  return (c.flags & Flag.ZF) !== 0;
}

test('verw sets ZF exactly for a selector of a segment writable at CPL 0 in Linux\'s GDT (SDM VERR/VERW)', () => {
  assert.equal(verwZf(0x18), true, '__KERNEL_DS');
  assert.equal(verwZf(0x2b), true, '__USER_DS (DPL 3 >= RPL 3 >= CPL 0)');
  assert.equal(verwZf(0x10), false, '__KERNEL_CS: code is never writable');
  assert.equal(verwZf(0x1b), false, '__KERNEL_DS with RPL 3: DPL 0 < RPL');
  assert.equal(verwZf(0x00), false, 'the null selector');
  assert.equal(verwZf(0x7b), false, 'GDT_ENTRY_CPUNODE: read-only data');
  assert.equal(verwZf(0x40), false, 'GDT_ENTRY_TSS: a system segment');
  assert.equal(verwZf(0x80), false, 'beyond GDT_ENTRIES');
  assert.equal(verwZf(0x1c), false, 'TI = 1: no LDT');
});

test('verw with a memory operand reads the selector there (Linux\'s CLEAR_CPU_BUFFERS: verw mds_verw_sel(%rip))', () => {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.writeBytes(0x1000, hex('0f 00 2d 01 00 00 00 f4 18 00')); // verw 0x1(%rip) -> the word at 0x1008 (__KERNEL_DS); hlt
  const c = m.vcpu(0);
  c.rip = 0x1000;
  c.flags &= ~Flag.ZF;
  assert.equal(m.run().reason, 'all-halted');
  assert.ok((c.flags & Flag.ZF) !== 0);
  const bad = new Machine({ vcpus: 1 });
  bad.memory.map(0x1000, 0x1000, 'rwx');
  bad.memory.writeBytes(0x1000, hex('0f 00 2c 25 00 00 00 70 f4')); // verw 0x70000000: unmapped
  bad.vcpu(0).rip = 0x1000;
  const r = bad.run();
  assert.equal(r.reason, 'error');
  assert.match(r.error!.message, /unmapped/);
});

test('verw is not serializing: in place of the mov to %cr3 the fetch of the new code is cmc-unsynchronized', () => {
  const m = machine(hex('0f 00 e8 0f 00 e8')); // verw %ax; verw %ax (6 bytes, as the CR3 pair)
  const r = m.run({ chooser: new RandomChooser(1), maxInstructions: 100_000 });
  assert.equal(r.reason, 'hazard');
  assert.equal(r.hazards[0]!.kind, 'cmc-unsynchronized');
  assert.equal(r.hazards[0]!.cpu, 0);
});
