// A two-vCPU machine for cross-modifying-code tests: vCPU 0 runs a 7-byte site in a loop with
// interrupts on; vCPU 1 runs a patcher. Used by the CMC and replay tests.
import { Machine, type Tier } from '../../src/machine/machine.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32, rel32 } from './bytes.ts';

export const SITE = 0x1000, PATCHER = 0x1100, SYNC = 0x1200, IPI_HANDLER = 0x1300, BP_HANDLER = 0x1380;
const ACK = 0x10000;
const SYNC_VECTOR = 0xf0;
export const OLD_SITE = hex('0f 1f 80 00 00 00 00'); // nopl 0x0(%rax)
export const NEW_SITE = hex('b8 01 00 00 00 66 90'); // mov $1,%eax; xchg %ax,%ax

/** Machine code under construction at a known address. */
export class Code {
  readonly bytes: number[] = [];
  constructor(readonly base: number) {}
  get here(): number { return this.base + this.bytes.length; }
  emit(...b: number[]): this { this.bytes.push(...b); return this; }
  call(target: number): this { return this.emit(0xe8, ...rel32(this.here + 5, target)); }
  movb(addr: number, v: number): this { return this.emit(...hex('c6 04 25'), ...le32(addr), v); }
  movw(addr: number, v: number): this { return this.emit(...hex('66 c7 04 25'), ...le32(addr), v & 0xff, v >>> 8); }
  movl(addr: number, v: number): this { return this.emit(...hex('c7 04 25'), ...le32(addr), ...le32(v)); }
}

/** sync_all(): clear ACK, fence, IPI vCPU 0 through the x2APIC ICR, spin until it acknowledges. */
function syncAll(): number[] {
  const c = new Code(SYNC).movl(ACK, 0).emit(...hex('0f ae f0')); // mfence: Linux's weak_wrmsr_fence
  c.emit(...hex('b9 30 08 00 00'), 0xb8, ...le32(SYNC_VECTOR), ...hex('31 d2 0f 30')); // ecx=ICR, eax=vector, edx=0; wrmsr
  c.emit(...hex('f3 90'), ...hex('8b 04 25'), ...le32(ACK), ...hex('85 c0 74 f3 c3')); // pause; mov ACK,%eax; test; jz; ret
  return c.bytes;
}

export function machine(patcher: number[], tier?: Tier): Machine {
  const m = new Machine({ vcpus: 2, ...(tier ? { tier } : {}) });
  m.memory.map(0x1000, 0x1000, 'rwx');
  m.memory.map(0x10000, 0x1000, 'rw');
  m.memory.map(0x20000, 0x8000, 'rw');
  m.memory.writeBytes(SITE, [...OLD_SITE, ...hex('eb f7')]); // site; jmp site
  m.memory.writeBytes(PATCHER, patcher);
  m.memory.writeBytes(SYNC, syncAll());
  // IPI handler: serialize (do_sync_core), acknowledge, iretq.
  m.memory.writeBytes(IPI_HANDLER, [...hex('0f 01 e8'), ...new Code(0).movl(ACK, 1).bytes, ...hex('48 cf')]);
  // #BP handler: text_poke_bp's emulation of the site as a whole: resume after it (addq $6,(%rsp)).
  m.memory.writeBytes(BP_HANDLER, hex('48 83 04 24 06 48 cf'));
  m.setIdt(3, BP_HANDLER);
  m.setIdt(SYNC_VECTOR, IPI_HANDLER);
  const [c0, c1] = [m.vcpu(0), m.vcpu(1)];
  c0.rip = SITE;
  c0.flags |= 0x200;
  c0.setAddr(Reg.RSP, 0x24000);
  c1.rip = PATCHER;
  c1.setAddr(Reg.RSP, 0x28000);
  return m;
}

export const done = (m: Machine) => m.vcpu(1).halted && m.vcpu(0).getReg64(Reg.RAX) === 1n;


/** The patcher in text_poke_bp order: INT3 first byte, sync, tail, sync, first byte, sync. */
export function textPokeBpOrder(): number[] {
  const p = new Code(PATCHER);
  p.movb(SITE, 0xcc).call(SYNC);
  p.movl(SITE + 1, 0x00000001).movw(SITE + 5, 0x9066).call(SYNC);
  p.movb(SITE, NEW_SITE[0]!).call(SYNC);
  return p.emit(0xf4).bytes;
}
