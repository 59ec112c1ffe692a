// Seed 001: a vCPU is inside the PV unlock CALL (e8 rel32 + 66 90) when another CPU rewrites the
// site to native (c6 07 00 + 0f 1f 40 00); the CALL returns to offset 5, now the middle of a NOP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, rel32 } from '../helpers/bytes.ts';

const SITE = 0x1000, CALLEE = 0x1100, OTHER = 0x1200, LOCK = 0x10000;
const PV_SITE = (target: number) => [0xe8, ...rel32(SITE + 5, target), ...hex('66 90')];
const NATIVE_SITE = hex('c6 07 00 0f 1f 40 00');

function machine(): Machine {
  const m = new Machine({ vcpus: 2 });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.map(0x10000, 0x1000, 'rw');
  m.memory.map(0x20000, 0x2000, 'rw');
  m.memory.writeBytes(SITE, [...PV_SITE(CALLEE), ...hex('f4')]);
  // callee: a few instructions, then a serializing CPUID (so only the return is at fault), then ret.
  m.memory.writeBytes(CALLEE, hex('90 90 31 c0 0f a2 c3'));
  m.memory.writeBytes(OTHER, hex('90 90 31 c0 0f a2 c3'));
  const c = m.vcpu(0);
  c.rip = SITE;
  c.setAddr(Reg.RSP, 0x22000);
  c.setReg64(Reg.RDI, BigInt(LOCK));
  m.vcpu(1).halted = true;
  return m;
}

test('returning to offset 5 of a site rewritten to native raises return-into-rewritten', () => {
  const m = machine();
  m.run({ until: (mm) => mm.vcpu(0).rip === CALLEE + 1 });
  m.memory.poke(SITE, NATIVE_SITE, 1); // vCPU 1's text_poke
  const r = m.run();
  assert.equal(r.reason, 'hazard');
  const h = r.hazards[0]!;
  assert.equal(h.kind, 'return-into-rewritten');
  assert.ok(h.kind === 'return-into-rewritten');
  assert.equal(h.returnAddress, SITE + 5);
  assert.deepEqual(h.before, hex('66 90'));
  assert.deepEqual(h.after, hex('40 00'));
});

test('no hazard when the rewrite keeps offset 5 an instruction boundary (PV call to another target)', () => {
  const m = machine();
  m.run({ until: (mm) => mm.vcpu(0).rip === CALLEE + 1 });
  m.memory.poke(SITE, PV_SITE(OTHER), 1);
  const r = m.run();
  assert.equal(r.reason, 'all-halted');
  assert.equal(r.hazards.length, 0);
});

test('no hazard when the site is rewritten after the CALL has returned', () => {
  const m = machine();
  m.run({ until: (mm) => mm.vcpu(0).rip === SITE + 5 });
  m.memory.poke(SITE, NATIVE_SITE, 1);
  // vCPU 0 now executes the rewritten code without serializing: that is the CMC rule's business.
  const r = m.run();
  assert.equal(r.hazards.filter((h) => h.kind === 'return-into-rewritten').length, 0);
});
