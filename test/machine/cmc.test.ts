// DESIGN.md §2, Intel SDM 8.1.3, seeds 001/003: vCPU 1 rewrites a 7-byte site that vCPU 0 executes
// in a loop. Without synchronization vCPU 0 may run a torn mix of bytes; in text_poke_bp order
// (0xCC first, sync, tail, sync, first byte, sync) every fetch is legal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/machine/machine.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { Reg } from '../../src/x86/registers.ts';
import { hex, le32, rel32 } from '../helpers/bytes.ts';

const SITE = 0x1000, PATCHER = 0x1100, SYNC = 0x1200, IPI_HANDLER = 0x1300, BP_HANDLER = 0x1380;
const ACK = 0x10000;
const SYNC_VECTOR = 0xf0;
const OLD_SITE = hex('0f 1f 80 00 00 00 00'); // nopl 0x0(%rax)
const NEW_SITE = hex('b8 01 00 00 00 66 90'); // mov $1,%eax; xchg %ax,%ax

/** Machine code under construction at a known address. */
class Code {
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

function machine(patcher: number[]): Machine {
  const m = new Machine({ vcpus: 2 });
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

const done = (m: Machine) => m.vcpu(1).halted && m.vcpu(0).getReg64(Reg.RAX) === 1n;

test('rewriting a 7-byte site with plain stores while another vCPU runs it raises cmc-unsynchronized', () => {
  const p = new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4);
  const m = machine(p.bytes);
  const r = m.run({ chooser: new RandomChooser(7), maxInstructions: 100_000, until: done });
  assert.equal(r.reason, 'hazard');
  const h = r.hazards[0]!;
  assert.equal(h.kind, 'cmc-unsynchronized');
  assert.ok(h.kind === 'cmc-unsynchronized');
  assert.equal(h.cpu, 0);
  assert.equal(h.address, SITE);
  assert.ok(h.unsynchronized.every((b) => b.writer === 1));
});

test('the unsynchronized rewrite is caught on every seed of a sweep', () => {
  const p = new Code(PATCHER).movl(SITE, 0x000001b8).movw(SITE + 4, 0x6600).movb(SITE + 6, 0x90).emit(0xf4);
  for (let seed = 1; seed <= 50; seed++) {
    const r = machine(p.bytes).run({ chooser: new RandomChooser(seed), maxInstructions: 100_000, until: done });
    assert.equal(r.reason, 'hazard', `seed ${seed}`);
  }
});

function textPokeBpOrder(): number[] {
  const p = new Code(PATCHER);
  p.movb(SITE, 0xcc).call(SYNC); // 1. INT3 on the first byte; sync
  p.movl(SITE + 1, 0x00000001).movw(SITE + 5, 0x9066).call(SYNC); // 2. the tail; sync
  p.movb(SITE, NEW_SITE[0]!).call(SYNC); // 3. the first byte; sync
  return p.emit(0xf4).bytes;
}

test('the same rewrite in text_poke_bp order raises no hazard on any seed of a 1,000-seed sweep', () => {
  let sawInt3 = 0;
  for (let seed = 1; seed <= 1000; seed++) {
    const m = machine(textPokeBpOrder());
    const r = m.run({ chooser: new RandomChooser(seed), maxInstructions: 200_000, until: done });
    assert.equal(r.reason, 'until', `seed ${seed}: ${r.reason} ${JSON.stringify(r.hazards[0] ?? r.error?.message)}`);
    assert.deepEqual(Array.from(m.memory.readBytes(SITE, 7)), NEW_SITE);
    if (m.events.some((e) => e.type === 'exception' && e.vector === 3)) sawInt3++;
  }
  assert.ok(sawInt3 > 0, 'some seeds make vCPU 0 hit the INT3 barrier');
});

test('skipping the sync after the tail is caught', () => {
  const p = new Code(PATCHER);
  p.movb(SITE, 0xcc).call(SYNC).movl(SITE + 1, 0x00000001).movw(SITE + 5, 0x9066); // no sync here
  p.movb(SITE, NEW_SITE[0]!).call(SYNC).emit(0xf4);
  let caught = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const r = machine(p.bytes).run({ chooser: new RandomChooser(seed), maxInstructions: 200_000, until: done });
    if (r.reason === 'hazard') caught++;
  }
  assert.ok(caught > 0);
});
