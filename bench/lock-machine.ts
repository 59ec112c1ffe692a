/** Builds an N-vCPU machine running LOCK_LOOP on one shared lock and counter. */
import { Machine, type Tier } from '../src/machine/machine.ts';
import { Reg } from '../src/x86/registers.ts';
import { LOCK_LOOP } from './programs.ts';

export const LOCK = 0x200000;
export const COUNTER = 0x200040;

export function lockMachine(vcpus: number, iterations: number, tier: Tier = 'compiled'): Machine {
  const m = new Machine({ vcpus, tso: true, tier });
  m.memory.map(0x100000, 0x1000, 'rx');
  m.memory.map(0x200000, 0x1000, 'rw');
  m.memory.map(0x400000, vcpus * 0x1000, 'rw');
  m.memory.writeBytes(0x100000, LOCK_LOOP);
  for (const c of m.vcpus) {
    c.rip = 0x100000;
    c.setAddr(Reg.RSP, 0x400000 + (c.id + 1) * 0x1000);
    c.setAddr(Reg.RDI, LOCK);
    c.setAddr(Reg.RSI, COUNTER);
    c.setReg64(Reg.RCX, BigInt(iterations));
  }
  return m;
}
