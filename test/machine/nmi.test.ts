// SDM 6.7.1: NMIs are blocked from delivery until the next IRET, any IRET. A breakpoint inside an
// NMI handler returns through IRET and so re-opens NMIs: a second NMI then nests (seeds 000, 002).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32 } from '../helpers/bytes.ts';

const MAIN = 0x1000, NMI = 0x1100, BP = 0x1200, COUNT = 0x10000;
const SPIN = hex('eb fe'); // jmp .
const INC_COUNT = [...hex('ff 04 25'), ...le32(COUNT)]; // incl COUNT

function machine(nmiHandler: number[]): Machine {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.map(0x10000, 0x1000, 'rw');
  m.memory.map(0x20000, 0x2000, 'rw');
  m.memory.writeBytes(MAIN, SPIN);
  m.memory.writeBytes(NMI, nmiHandler);
  m.memory.writeBytes(BP, hex('48 cf')); // iretq
  m.setIdt(2, NMI);
  m.setIdt(3, BP);
  const c = m.vcpu(0);
  c.rip = MAIN;
  c.setAddr(Reg.RSP, 0x22000);
  return m;
}

const count = (m: Machine) => m.memory.readBytes(COUNT, 1)[0];

test('a second NMI stays pending while the first handler runs', () => {
  const m = machine([...INC_COUNT, ...SPIN]);
  m.raiseNmi(0);
  m.run({ maxInstructions: 20 });
  assert.equal(count(m), 1);
  assert.ok(m.vcpu(0).nmiBlocked);
  m.raiseNmi(0);
  m.run({ maxInstructions: 20 });
  assert.equal(count(m), 1, 'blocked: not delivered');
  assert.ok(m.vcpu(0).nmiPending, 'latched');
});

test('an INT3 inside the NMI handler re-opens NMIs at the #BP IRET, and a second NMI nests', () => {
  const m = machine([...INC_COUNT, ...hex('cc'), ...SPIN]);
  m.raiseNmi(0);
  m.run({ maxInstructions: 20 });
  assert.equal(count(m), 1);
  assert.equal(m.vcpu(0).nmiBlocked, false, 'the #BP handler IRET unblocked NMIs');
  m.raiseNmi(0);
  m.run({ maxInstructions: 20 });
  assert.equal(count(m), 2, 'nested NMI delivered inside the first handler');
  const nmis = m.events.filter((e) => e.type === 'nmi');
  assert.equal(nmis.length, 2);
  // The nested NMI interrupted the first handler, not the main loop.
  assert.ok(nmis[1]!.type === 'nmi' && nmis[1]!.rip >= NMI && nmis[1]!.rip < NMI + 0x100);
});

test('IRQs are masked by IF but NMIs are not', () => {
  const m = machine([...INC_COUNT, ...SPIN]);
  m.setIdt(0x30, NMI);
  m.vcpu(0).flags &= ~0x200;
  m.raiseIrq(0, 0x30);
  m.run({ maxInstructions: 10 });
  assert.equal(count(m), 0);
  m.raiseNmi(0);
  m.run({ maxInstructions: 10 });
  assert.equal(count(m), 1);
});

test('INT3 is a trap: the frame holds the address after the 0xCC', () => {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.map(0x20000, 0x2000, 'rw');
  m.memory.writeBytes(MAIN, hex('90 cc f4'));
  m.memory.writeBytes(BP, hex('48 8b 04 24 f4')); // mov (%rsp),%rax; hlt
  m.setIdt(3, BP);
  m.vcpu(0).rip = MAIN;
  m.vcpu(0).setAddr(Reg.RSP, 0x22000);
  m.run();
  assert.equal(m.vcpu(0).getReg64(Reg.RAX), BigInt(MAIN + 2));
});
