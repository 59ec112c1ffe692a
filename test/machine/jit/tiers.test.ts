// Issue 12 item 2: the compiled tier against the interpreter (the reference). The same random
// instruction sequences (test/x86/sequence-gen.ts, the native differential test's generator) run
// on a machine of each tier and must leave the same run result, registers, flags, RIP, retired
// count, store buffer, scratch memory and decision log; also as loops (a block that jumps back to
// its own start keeps registers in locals across iterations), under a chooser with a per-step
// observe (timed), with and without store buffers, and under any instruction budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { Machine, type Tier } from '../../../src/machine/machine.ts';
import { TimedChooser } from '../../../src/sched/timed.ts';
import { Asm, dword, mem, r15, rip } from '../../../src/x86/asm.ts';
import { decodeInsn } from '../../../src/x86/decode.ts';
import { Flag, STATUS_FLAGS, RFLAGS_FIXED } from '../../../src/x86/registers.ts';
import { compilable } from '../../../src/machine/jit/emit.ts';
import { CODE_BASE, GS_BASE, SCRATCH_BASE, SCRATCH_SIZE, scratchImage } from '../../native/native-runner.ts';
import { SequenceGenerator, assembleSequence, type Sequence } from '../../x86/sequence-gen.ts';

const HLT = 0xf4;
/** The loop counter's slot: past the 60 KiB the generated memory operands reach, below the stack. */
const COUNTER = 0xf400;

interface Setup {
  seq: Sequence;
  code: Uint8Array;
  tso: boolean;
  timed: boolean;
  maxInstructions: number;
  /** Loop iterations (written to the counter slot), for loop bodies. */
  iterations?: number;
}

function machineFor(s: Setup, tier: Tier): Machine {
  const m = new Machine({ vcpus: 1, tso: s.tso, tier });
  m.memory.map(CODE_BASE, 0x10000, 'rwx');
  m.memory.map(SCRATCH_BASE, SCRATCH_SIZE, 'rw');
  m.memory.writeBytes(SCRATCH_BASE, scratchImage(s.seq.memSeed, s.seq.patches));
  if (s.iterations !== undefined) m.memory.writeBytes(SCRATCH_BASE + COUNTER, [s.iterations, 0, 0, 0]);
  const body = new Uint8Array(s.code.length + 1);
  body.set(s.code);
  body[s.code.length] = HLT;
  m.memory.writeBytes(CODE_BASE, body);
  const c = m.vcpus[0]!;
  s.seq.regs.forEach((v, r) => c.setReg64(r, v));
  c.rip = CODE_BASE;
  c.gsBase = GS_BASE;
  c.flags = (s.seq.rflags & STATUS_FLAGS) | RFLAGS_FIXED | Flag.IF;
  return m;
}

/** Everything a run leaves that either tier could get wrong. */
function outcome(s: Setup, tier: Tier): { state: unknown; compiled: number } {
  const m = machineFor(s, tier);
  const r = m.run({ maxInstructions: s.maxInstructions, ...(s.timed ? { chooser: new TimedChooser({ seed: s.seq.index }) } : {}) });
  const c = m.vcpus[0]!;
  const scratch = createHash('sha256');
  for (let off = 0; off < SCRATCH_SIZE; off += 0x1000) scratch.update(m.memory.page(SCRATCH_BASE + off)!.data);
  return {
    compiled: m.compiledInstructions,
    state: {
      reason: r.reason, steps: r.steps, instructions: r.instructions, error: r.error?.message,
      regs: Array.from({ length: 16 }, (_, i) => c.getReg64(i).toString(16)),
      flags: c.flags, rip: c.rip, retired: c.retired, lastPause: c.lastPause, time: c.time,
      storeBuffer: c.storeBuffer.map((b) => ({ ...b })), returns: [...c.returns.keys()],
      scratch: scratch.digest('hex'), decisions: [...m.decisions],
    },
  };
}

/** The sequence's single-instruction steps that a block can hold, then `dec [r15+COUNTER]; jnz top`. */
function loopBody(seq: Sequence): Uint8Array {
  const a = new Asm(CODE_BASE);
  const top = a.label('top');
  a.bind(top);
  for (const step of seq.steps) {
    if (step.items.length !== 1 || step.items[0]!.t !== 'insn') continue;
    const insn = step.items[0]!.insn;
    const one = new Asm(CODE_BASE);
    (insn.lock ? one.lock() : one).ins(insn.name, ...insn.ops);
    if (!compilable(decodeInsn(one.assemble().bytes, CODE_BASE))) continue;
    (insn.lock ? a.lock() : a).ins(insn.name, ...insn.ops);
  }
  a.dec(dword(mem(r15, COUNTER))).jne(top);
  return a.assemble().bytes;
}

const gen = new SequenceGenerator(12);

const setup = fc.record({
  index: fc.nat(1_000_000),
  tso: fc.boolean(),
  timed: fc.boolean(),
  maxInstructions: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constant(10_000)),
});

test('the compiled tier leaves what the interpreter leaves on random sequences', () => {
  let compiled = 0;
  fc.assert(
    fc.property(setup, ({ index, tso, timed, maxInstructions }) => {
      const seq = gen.sequence(index);
      const s: Setup = { seq, code: assembleSequence(seq), tso, timed, maxInstructions };
      const a = outcome(s, 'interp'), b = outcome(s, 'compiled');
      compiled += b.compiled;
      assert.deepEqual(b.state, a.state);
    }),
    { seed: 12, numRuns: 80 },
  );
  assert.ok(compiled > 300, `the compiled tier ran only ${compiled} instructions: the comparison would prove nothing`);
});

test('the compiled tier leaves what the interpreter leaves on random loops (blocks that jump to their own start)', () => {
  let compiled = 0;
  fc.assert(
    fc.property(setup, fc.integer({ min: 1, max: 40 }), ({ index, tso, timed, maxInstructions }, iterations) => {
      const seq = gen.sequence(index);
      const s: Setup = { seq, code: loopBody(seq), tso, timed, maxInstructions, iterations };
      const a = outcome(s, 'interp'), b = outcome(s, 'compiled');
      compiled += b.compiled;
      assert.deepEqual(b.state, a.state);
    }),
    { seed: 13, numRuns: 80 },
  );
  assert.ok(compiled > 3000, `the compiled tier ran only ${compiled} instructions`);
});

test('runCompiled(c, max) runs 1..max instructions exactly as that many interpreter steps', () => {
  fc.assert(
    fc.property(setup, fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 50 }), ({ index, tso }, iterations, max) => {
      const seq = gen.sequence(index);
      const s: Setup = { seq, code: loopBody(seq), tso, timed: false, maxInstructions: 0, iterations };
      const mi = machineFor(s, 'interp'), mc = machineFor(s, 'compiled');
      const ci = mi.vcpus[0]!, cc = mc.vcpus[0]!;
      for (let round = 0; round < 20 && !cc.halted; round++) {
        let k = mc.runCompiled(cc, max);
        assert.ok(k >= 0 && k <= max);
        if (k === 0) { mc.stepCpu(cc); k = 1; }
        for (let j = 0; j < k; j++) mi.stepCpu(ci);
        assert.deepEqual([cc.rip, cc.retired, cc.flags, [...cc.lo], [...cc.hi], cc.storeBuffer.length], [ci.rip, ci.retired, ci.flags, [...ci.lo], [...ci.hi], ci.storeBuffer.length]);
      }
    }),
    { seed: 14, numRuns: 50 },
  );
});

test('a store into its own block ends the block: the next instruction runs the new bytes', () => {
  // mov dword [rip+site], 0xc8ff overwrites the following `inc eax` (ff c0) with `dec eax` (ff c8).
  for (const tso of [true, false]) {
    const runs = (['interp', 'compiled'] as const).map((tier) => {
      const m = new Machine({ vcpus: 1, tso, tier });
      m.memory.map(CODE_BASE, 0x1000, 'rwx');
      const a = new Asm(CODE_BASE);
      const site = a.label('site');
      a.mov(dword(rip(site)), 0xc8ff).bind(site).bytes([0xff, 0xc0, 0x90, 0x90]).bytes([HLT]);
      m.memory.writeBytes(CODE_BASE, a.assemble().bytes);
      m.vcpus[0]!.rip = CODE_BASE;
      const r = m.run({ maxInstructions: 100 });
      return [r.reason, r.instructions, m.vcpus[0]!.lo[0], m.vcpus[0]!.rip];
    });
    assert.deepEqual(runs[1], runs[0]);
    assert.equal(runs[0]![2], -1, 'the rewritten instruction (dec eax) ran');
  }
});
