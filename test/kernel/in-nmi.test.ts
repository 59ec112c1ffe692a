// "In NMI" as the guest tracks it (Linux's in_nmi(): preempt_count's NMI bits, which nmi_enter()
// sets), independent of the machine's NMI blocking, and Linux 6.1's kvm_wait(), which returns at
// once in NMI context (`if (in_nmi()) return;`): a PV waiter in an NMI handler spins, never halts.
// The setting: the NMI lock is held (by a context the NMI interrupted, say) when an NMI on vCPU 0
// wants it; the holder lets go at step 4,000 with a plain store (no kick).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Guest } from '../../src/kernel/guest.ts';
import { RandomChooser } from '../../src/sched/random.ts';
import { PERCPU, VECTOR, lockAddress } from '../../src/kernel/layout.ts';
import { inNmi } from '../../src/kernel/preempt-count.ts';
import { Q_LOCKED_VAL } from '../../src/kernel/qspinlock-word.ts';

const SEEDS = [1, 2, 3, 4];

function run(seed: number, withoutCheck: boolean) {
  const g = new Guest({ vcpus: 2, flavor: 'pv', spinThreshold: 1, workload: { iterations: 3 }, seed });
  const m = g.machine;
  const wait = g.symbol('kvm_wait');
  if (withoutCheck) {
    // The deliberately wrong setup: kvm_wait without its in_nmi() test (the TEST and JNE become NOPs).
    const len = m.instructionAt(wait)!.len + m.instructionAt(wait + m.instructionAt(wait)!.len)!.len;
    m.memory.writeBytes(wait, Array(len).fill(0x90));
  }
  let nmiHalts = 0, taskHalts = 0;
  for (let a = wait; a < g.symbol('kvm_kick_cpu');) {
    const insn = m.instructionAt(a)!;
    if (insn.bytes[0] === 0xf4) m.probe(a, (c) => { if (inNmi(m.memory, c)) nmiHalts++; else taskHalts++; return undefined; });
    a += insn.len;
  }
  const nmiLock = lockAddress(g.image.nmiLock);
  m.memory.writeBytes(nmiLock, [Q_LOCKED_VAL, 0, 0, 0]);
  let released = false;
  const r = g.run({
    chooser: new RandomChooser(seed), inject: { nmis: 1, irqs: 0, irqVector: VECTOR.LOCK_IRQ, cpus: [0] }, maxInstructions: 100_000,
    until: (x) => {
      if (!released && x.step >= 4_000) { x.memory.writeBytes(nmiLock, [0]); released = true; }
      return false;
    },
  });
  const preempt = m.vcpus.map((c) => m.memory.readU64(c.gsBase + PERCPU.preemptCount) % 2 ** 32);
  return { g, r, nmiHalts, taskHalts, preempt };
}

test('kvm_wait without its in_nmi() test (a deliberately wrong setup): the PV waiter in the NMI halts, and nothing wakes it', () => {
  let halted = 0;
  for (const seed of SEEDS) {
    const { g, nmiHalts } = run(seed, true);
    if (nmiHalts > 0) {
      halted++;
      assert.equal(g.tasksDone, false, `seed ${seed}: the NMI never returns to vCPU 0's task`);
    }
  }
  assert.ok(halted >= 2, `the NMI waiter halted on ${halted} of ${SEEDS.length} seeds`);
});

test('Linux 6.1\'s kvm_wait: the PV waiter in the NMI never halts; it takes the lock once it is free, and every task finishes', () => {
  let took = 0;
  for (const seed of SEEDS) {
    const { g, r, nmiHalts, preempt } = run(seed, false);
    assert.equal(nmiHalts, 0, `seed ${seed}`);
    assert.ok(g.tasksDone, `seed ${seed}: ${r.reason}`);
    assert.deepEqual(preempt, [0, 0], `seed ${seed}: in_nmi() cleared when the NMI left`);
    const nmis = g.machine.events.filter((e) => e.type === 'nmi').length;
    assert.equal(g.checkLocks().find((l) => l.role === 'nmi')!.counter, nmis, `seed ${seed}: every NMI took its lock`);
    if (nmis > 0) took++;
  }
  assert.ok(took >= 2, `an NMI was delivered on ${took} of ${SEEDS.length} seeds`);
});
