// The native harness alone: hand-written sequences on the real CPU give the answers the manual
// gives. Skipped with a reason where the harness cannot be built (no `cc`, not x86-64 Linux).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Asm, mem, qword, rax, rbx, r15, ecx } from '../../src/x86/asm.ts';
import { Flag, Reg } from '../../src/x86/registers.ts';
import {
  CODE_BASE, SCRATCH_BASE, STACK_TOP, harnessBinary, runNative, scratchImage, type NativeCase, type NativeResult,
} from '../native/native-runner.ts';

const skip = ((): string | false => {
  const b = harnessBinary();
  return typeof b === 'string' ? false : b.skip;
})();

function regs(init: Partial<Record<Reg, bigint>> = {}): bigint[] {
  const r = Array.from({ length: 16 }, () => 0n);
  r[Reg.R15] = BigInt(SCRATCH_BASE);
  for (const [k, v] of Object.entries(init)) r[Number(k)] = v as bigint;
  return r;
}

function code(build: (a: Asm) => void): Uint8Array {
  const a = new Asm(CODE_BASE);
  build(a);
  return a.assemble().bytes;
}

async function run1(c: NativeCase): Promise<NativeResult> {
  const out = await runNative([c]);
  if (!Array.isArray(out)) throw new Error(out.skip);
  return out[0]!;
}

/** The scratch region after the case: the initial image with the reported runs applied. */
function finalMemory(c: NativeCase, r: NativeResult): DataView {
  const img = scratchImage(c.memSeed, c.patches);
  for (const d of r.memDiff) img.set(d.bytes, d.offset);
  return new DataView(img.buffer);
}

test('add 0x7fffffffffffffff + 1 overflows: OF and SF set, ZF and CF clear', { skip }, async () => {
  const r = await run1({ regs: regs({ [Reg.RAX]: 0x7fffffffffffffffn }), rflags: 0, memSeed: 1n, code: code((a) => a.add(rax, 1)) });
  assert.equal(r.status, 'ok');
  assert.equal(r.regs[Reg.RAX], 0x8000000000000000n);
  assert.equal(r.rflags & (Flag.OF | Flag.SF | Flag.ZF | Flag.CF), Flag.OF | Flag.SF);
});

test('mov rax,5; push rax; pop rbx leaves rbx=5, rsp back at the top and 5 in the stack slot', { skip }, async () => {
  const c: NativeCase = { regs: regs(), rflags: 0, memSeed: 2n, code: code((a) => a.mov(rax, 5).push(rax).pop(rbx)) };
  const r = await run1(c);
  assert.equal(r.status, 'ok');
  assert.equal(r.regs[Reg.RBX], 5n);
  assert.equal(r.regs[Reg.RSP], BigInt(STACK_TOP));
  assert.equal(finalMemory(c, r).getBigUint64(STACK_TOP - 8 - SCRATCH_BASE, true), 5n);
});

test('a store through r15 lands in the scratch region and is the only change', { skip }, async () => {
  const c: NativeCase = {
    regs: regs({ [Reg.RBX]: 0x1122334455667788n }),
    rflags: 0,
    memSeed: 3n,
    patches: [{ offset: 0x100, bytes: new Uint8Array(8) }],
    code: code((a) => a.mov(qword(mem(r15, 0x100)), rbx)),
  };
  const r = await run1(c);
  assert.deepEqual(r.memDiff, [{ offset: 0x100, bytes: Uint8Array.from([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]) }]);
});

test('initial flags reach the code: adc with CF=1 adds one more', { skip }, async () => {
  const r = await run1({ regs: regs({ [Reg.RAX]: 1n }), rflags: Flag.CF, memSeed: 4n, code: code((a) => a.adc(rax, 1)) });
  assert.equal(r.regs[Reg.RAX], 3n);
});

test('registers not touched by the code come back unchanged', { skip }, async () => {
  const init = regs();
  for (let i = 0; i < 15; i++) if (i !== Reg.RSP) init[i] = 0x0101010101010101n * BigInt(i + 1);
  const r = await run1({ regs: init, rflags: 0, memSeed: 5n, code: code((a) => a.nop(4)) });
  for (let i = 0; i < 16; i++) assert.equal(r.regs[i], i === Reg.RSP ? BigInt(STACK_TOP) : init[i], `register ${i}`);
});

test('faults are reported per case, and the next case still runs', { skip }, async () => {
  const out = await runNative([
    { regs: regs(), rflags: 0, memSeed: 6n, code: code((a) => a.mov(rax, qword(mem(rbx, 8)))) },
    { regs: regs(), rflags: 0, memSeed: 6n, code: code((a) => a.ud2()) },
    { regs: regs(), rflags: 0, memSeed: 6n, code: code((a) => a.mov(ecx, 7)) },
  ]);
  assert.ok(Array.isArray(out));
  assert.equal(out[0]!.status, 'segv');
  assert.equal(out[0]!.faultAddr, 8n);
  assert.equal(out[0]!.faultRip, BigInt(CODE_BASE));
  assert.equal(out[1]!.status, 'ill');
  assert.equal(out[2]!.status, 'ok');
  assert.equal(out[2]!.regs[Reg.RCX], 7n);
});

test('throughput: 20,000 cases in one harness process', { skip }, async (t) => {
  const body = code((a) => a.add(rax, rbx).mov(qword(mem(r15, 0x40)), rax));
  const cases: NativeCase[] = Array.from({ length: 20_000 }, (_, i) => ({ regs: regs({ [Reg.RBX]: BigInt(i) }), rflags: 0, memSeed: 7n, code: body }));
  const t0 = performance.now();
  const out = await runNative(cases);
  const ms = performance.now() - t0;
  assert.ok(Array.isArray(out));
  assert.equal(out.length, cases.length);
  assert.equal(out[19_999]!.regs[Reg.RAX], 19_999n);
  t.diagnostic(`${Math.round(cases.length / (ms / 1000))} native cases/s`);
});
