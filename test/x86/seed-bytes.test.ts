// Seed 001: the two forms of the queued_spin_unlock site.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeInsn } from '../../src/x86/decode.ts';
import { disassemble } from '../../src/x86/format.ts';
import { linuxNop } from '../../src/x86/nops.ts';
import { Op } from '../../src/x86/insn.ts';
import { Machine } from '../../src/machine/machine.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, rel32 } from '../helpers/bytes.ts';

const TEXT = 0x100000;
const DATA = 0x200000;
const STACK_TOP = 0x300000;

function machine(code: number[]): Machine {
  const m = new Machine({ vcpus: 1 });
  m.memory.map(TEXT, 0x1000, 'rx');
  m.memory.map(DATA, 0x1000, 'rw');
  m.memory.map(STACK_TOP - 0x1000, 0x1000, 'rw');
  m.memory.writeBytes(TEXT, code);
  const c = m.vcpu(0);
  c.rip = TEXT;
  c.setAddr(Reg.RSP, STACK_TOP);
  return m;
}

test('native unlock c6 07 00 + 0f 1f 40 00 decodes as movb $0,(%rdi) and a 4-byte NOP', () => {
  const lines = disassemble(Uint8Array.from(hex('c6 07 00 0f 1f 40 00')), TEXT);
  assert.deepEqual(lines.map((l) => l.text), ['movb $0,(%rdi)', 'nopl 0(%rax)']);
  assert.deepEqual(Array.from(linuxNop(4)), hex('0f 1f 40 00'));
  assert.equal(decodeInsn(Uint8Array.from(hex('c6 07 00')), TEXT).op, Op.MOV);
  assert.equal(decodeInsn(Uint8Array.from(hex('0f 1f 40 00')), TEXT).op, Op.NOP);
});

test('native unlock clears only the locked byte of the lock word', () => {
  const m = machine([...hex('c6 07 00 0f 1f 40 00'), ...hex('f4')]);
  m.memory.writeBytes(DATA, hex('01 01 34 12')); // locked=1, pending=1, tail=0x1234
  m.vcpu(0).setReg64(Reg.RDI, BigInt(DATA));
  const r = m.run();
  assert.equal(r.reason, 'all-halted');
  assert.deepEqual(Array.from(m.memory.readBytes(DATA, 4)), hex('00 01 34 12'));
  assert.equal(m.vcpu(0).rip, TEXT + 8);
});

test('PV unlock e8 rel32 + 66 90 calls the callee and returns to offset 5', () => {
  const callee = TEXT + 0x100;
  const site = [0xe8, ...rel32(TEXT + 5, callee), ...hex('66 90'), ...hex('f4')];
  assert.deepEqual(disassemble(Uint8Array.from(site), TEXT).map((l) => l.text), [`call 0x${callee.toString(16)}`, 'xchg %ax,%ax', 'hlt']);
  const m = machine(site);
  // callee: lock cmpxchg %cl,(%rdi) with al=1, cl=0 (the PV unlock's cmpxchg 1 -> 0), then ret.
  m.memory.writeBytes(callee, hex('b0 01 31 c9 f0 0f b0 0f c3'));
  m.memory.writeBytes(DATA, hex('01'));
  m.vcpu(0).setReg64(Reg.RDI, BigInt(DATA));
  const r = m.run();
  assert.equal(r.reason, 'all-halted');
  assert.equal(r.hazards.length, 0);
  assert.equal(m.memory.readBytes(DATA, 1)[0], 0);
  assert.equal(m.vcpu(0).rip, TEXT + 8); // after hlt at offset 7
  assert.equal(m.vcpu(0).getAddr(Reg.RSP), STACK_TOP);
});
