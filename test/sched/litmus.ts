// Machine-level litmus shapes (x86-TSO, DESIGN.md §2) built as real bytes on a two-vCPU machine:
// each vCPU runs a few stores and loads into registers and halts; the outcome is the registers.
import { Machine } from '../../src/machine/machine.ts';
import type { Chooser } from '../../src/machine/chooser.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32 } from '../helpers/bytes.ts';

const X = 0x10000, Y = 0x10040;
const store1 = (addr: number) => [...hex('c7 04 25'), ...le32(addr), ...le32(1)]; // movl $1, addr
const loadEax = (addr: number) => [...hex('8b 04 25'), ...le32(addr)]; // mov addr, %eax
const loadEbx = (addr: number) => [...hex('8b 1c 25'), ...le32(addr)]; // mov addr, %ebx
const MFENCE = hex('0f ae f0');
const HLT = hex('f4');

export interface Litmus {
  name: string;
  /** Code of vCPU 0 and vCPU 1. */
  threads: [number[], number[]];
  /** Outcome registers, read after both halt: [cpu, reg]. */
  observe: [number, Reg][];
  /** Every outcome x86-TSO allows (each "a,b"). */
  allowed: string[];
}

export const LITMUS: Litmus[] = [
  // SB: both loads may read 0 (each store still buffered): the one reordering x86-TSO has.
  { name: 'store buffering', threads: [[...store1(X), ...loadEax(Y), ...HLT], [...store1(Y), ...loadEax(X), ...HLT]],
    observe: [[0, Reg.RAX], [1, Reg.RAX]], allowed: ['0,0', '0,1', '1,0', '1,1'] },
  { name: 'store buffering with MFENCE', threads: [[...store1(X), ...MFENCE, ...loadEax(Y), ...HLT], [...store1(Y), ...MFENCE, ...loadEax(X), ...HLT]],
    observe: [[0, Reg.RAX], [1, Reg.RAX]], allowed: ['0,1', '1,0', '1,1'] },
  // MP: data then flag; the reader loads flag then data: flag=1 with data=0 is forbidden.
  { name: 'message passing', threads: [[...store1(X), ...store1(Y), ...HLT], [...loadEax(Y), ...loadEbx(X), ...HLT]],
    observe: [[1, Reg.RAX], [1, Reg.RBX]], allowed: ['0,0', '0,1', '1,1'] },
  // LB: each loads then stores the other's variable: both reading 1 is forbidden (loads are not reordered with later stores).
  { name: 'load buffering', threads: [[...loadEax(X), ...store1(Y), ...HLT], [...loadEax(Y), ...store1(X), ...HLT]],
    observe: [[0, Reg.RAX], [1, Reg.RAX]], allowed: ['0,0', '0,1', '1,0'] },
];

export function litmusMachine(t: Litmus): Machine {
  const m = new Machine({ vcpus: 2 });
  m.memory.map(0x1000, 0x1000, 'rx');
  m.memory.map(0x10000, 0x1000, 'rw');
  m.memory.writeBytes(0x1000, t.threads[0]);
  m.memory.writeBytes(0x1100, t.threads[1]);
  m.vcpu(0).rip = 0x1000;
  m.vcpu(1).rip = 0x1100;
  return m;
}

/** Run the test once; its outcome, or throws if it did not run to both HLTs. */
export function litmusOutcome(t: Litmus, chooser: Chooser): { outcome: string; steps: number } {
  const m = litmusMachine(t);
  const r = m.run({ chooser, maxInstructions: 1000 });
  if (r.reason !== 'all-halted') throw new Error(`${t.name}: ${r.reason}`);
  return { outcome: t.observe.map(([c, reg]) => m.vcpu(c).getReg64(reg).toString()).join(','), steps: r.steps };
}
