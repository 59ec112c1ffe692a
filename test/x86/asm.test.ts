// The assembler DSL: each test names one behaviour and writes out the bytes GAS would produce.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Asm, AsmError, mem, rip, byte, dword, qword, gs, abs,
  rax, rbx, rcx, rdi, rsp, rbp, r12, r13, eax, ecx, ebx, cl, al, ah, r8b,
} from '../../src/x86/asm.ts';
import { hex, rel32 } from '../helpers/bytes.ts';

const KTEXT = 0xffffffff81000000n;

function bytesOf(build: (a: Asm) => void, base: number | bigint = 0x1000): number[] {
  const a = new Asm(base);
  build(a);
  return Array.from(a.assemble().bytes);
}

test('native unlock: movb $0,(%rdi) + nop(4) is c6 07 00 0f 1f 40 00 (seed 001)', () => {
  assert.deepEqual(bytesOf((a) => a.mov(byte(mem(rdi)), 0).nop(4)), hex('c6 07 00 0f 1f 40 00'));
});

test('PV unlock: call to the callee is e8 rel32 + nop(2) 66 90, rel32 reaching the target', () => {
  const callee = 0xffffffff81200000n;
  const out = (() => { const a = new Asm(KTEXT); a.call(callee).nop(2); return a.assemble(); })();
  const want = [0xe8, ...rel32(Number(BigInt.asIntN(64, KTEXT)) + 5, Number(BigInt.asIntN(64, callee))), 0x66, 0x90];
  assert.deepEqual(Array.from(out.bytes), want);
  const rel = new DataView(out.bytes.buffer, out.bytes.byteOffset).getInt32(1, true);
  assert.equal(KTEXT + 5n + BigInt(rel), callee);
});

test('call *pv_ops_slot(%rip) is ff 15 rel32 to the absolute slot address', () => {
  const slot = 0xffffffff82000010n;
  const viaOption = bytesOf((a) => a.call(rip(slot), { indirect: true }), KTEXT);
  const viaMethod = bytesOf((a) => a.callIndirect(rip(slot)), KTEXT);
  // rel32 = slot - (site + 6) = 0x82000010 - 0x81000006
  assert.deepEqual(viaOption, hex('ff 15 0a 00 00 01'));
  assert.deepEqual(viaMethod, viaOption);
});

test('call to a far absolute target stays e8 and is refused when rel32 cannot reach', () => {
  assert.throws(() => bytesOf((a) => a.call(0xffffffff81000000n), 0x20000000), AsmError);
});

test('vcpu_is_preempted native forms: xor eax,eax is 31 c0, xor rax,rax is 48 31 c0', () => {
  assert.deepEqual(bytesOf((a) => a.xor(eax, eax)), hex('31 c0'));
  assert.deepEqual(bytesOf((a) => a.xor(rax, rax)), hex('48 31 c0'));
});

test('immediates take the shortest form: sign-extended imm8, accumulator form, imm64 when needed', () => {
  assert.deepEqual(bytesOf((a) => a.add(rax, -1)), hex('48 83 c0 ff'));
  assert.deepEqual(bytesOf((a) => a.add(eax, 0x1000)), hex('05 00 10 00 00'));
  assert.deepEqual(bytesOf((a) => a.mov(rax, 5)), hex('48 c7 c0 05 00 00 00'));
  assert.deepEqual(bytesOf((a) => a.mov(rax, 0x80000000)), hex('48 b8 00 00 00 80 00 00 00 00'));
  assert.deepEqual(bytesOf((a) => a.mov(eax, 0xffffffff)), hex('b8 ff ff ff ff'));
  assert.deepEqual(bytesOf((a) => a.shl(rax, 1)), hex('48 d1 e0'));
  assert.deepEqual(bytesOf((a) => a.push(5)), hex('6a 05'));
});

test('a backward label: jne to the top of a loop is a short jump back', () => {
  const a = new Asm(0x1000);
  const top = a.here('top');
  a.dec(ecx).jne(top);
  const out = a.assemble();
  assert.deepEqual(Array.from(out.bytes), hex('ff c9 75 fc'));
  assert.equal(out.address('top'), 0x1000);
});

test('a forward label, also bound after the last instruction', () => {
  const a = new Asm(0x1000);
  const done = a.label('done');
  a.jcc('z', done).mov(eax, 1).bind(done);
  const out = a.assemble();
  assert.deepEqual(Array.from(out.bytes), hex('74 05 b8 01 00 00 00'));
  assert.equal(out.address('done'), 0x1007);
});

test('jmp {near: true} and jcc {near: true} keep the rel32 form', () => {
  const a = new Asm(0x1000);
  const next = a.label();
  a.jmp(next, { near: true }).bind(next).jcc('ne', next, { near: true });
  assert.deepEqual(Array.from(a.assemble().bytes), hex('e9 00 00 00 00 0f 85 fa ff ff ff'));
});

test('rip(label) addresses data placed after the code', () => {
  const a = new Asm(0x1000);
  const slot = a.label('slot');
  a.mov(rax, qword(rip(slot))).ret().bind(slot).bytes([1, 2, 3, 4, 5, 6, 7, 8]);
  const out = a.assemble();
  assert.deepEqual(Array.from(out.bytes), hex('48 8b 05 01 00 00 00 c3 01 02 03 04 05 06 07 08'));
  assert.equal(out.address('slot'), 0x1008);
});

test('lock cmpxchg %cl,(%rdi) is f0 0f b0 0f (the PV unlock cmpxchg)', () => {
  assert.deepEqual(bytesOf((a) => a.lock().cmpxchg(byte(mem(rdi)), cl)), hex('f0 0f b0 0f'));
  assert.deepEqual(bytesOf((a) => a.lock().bts(qword(mem(rdi)), 3)), hex('f0 48 0f ba 2f 03'));
});

test('gs-relative loads: absolute %gs:0x10 and %gs:8(%rax)', () => {
  assert.deepEqual(bytesOf((a) => a.mov(eax, dword(gs(0x10)))), hex('65 8b 04 25 10 00 00 00'));
  assert.deepEqual(bytesOf((a) => a.mov(rax, gs(mem(rax, 8)))), hex('65 48 8b 40 08'));
});

test('memory forms: rbp/r13 bases get a zero disp8, r12 needs a SIB byte, abs() is [disp32]', () => {
  assert.deepEqual(bytesOf((a) => a.mov(al, byte(mem(rbp)))), hex('8a 45 00'));
  assert.deepEqual(bytesOf((a) => a.mov(al, byte(mem(r13)))), hex('41 8a 45 00'));
  assert.deepEqual(bytesOf((a) => a.mov(rax, mem(r12, 0x200))), hex('49 8b 84 24 00 02 00 00'));
  assert.deepEqual(bytesOf((a) => a.mov(dword(abs(0x10000)), 1)), hex('c7 04 25 00 00 01 00 01 00 00 00'));
  assert.deepEqual(bytesOf((a) => a.lea(rax, mem({ base: rdi, index: rbx, scale: 8, disp: 16 }))), hex('48 8d 44 df 10'));
});

test('xchg eax,eax is 87 c0, never 90 (which is NOP and does not zero-extend)', () => {
  assert.deepEqual(bytesOf((a) => a.xchg(eax, eax)), hex('87 c0'));
  assert.deepEqual(bytesOf((a) => a.xchg(eax, ecx)), hex('91'));
});

test('the generic ins() reaches any legacy mnemonic, with GAS aliases', () => {
  assert.deepEqual(bytesOf((a) => a.ins('bts', qword(mem(rdi)), 3)), hex('48 0f ba 2f 03'));
  assert.deepEqual(bytesOf((a) => a.ins('setnz', al)), hex('0f 95 c0'));
  assert.deepEqual(bytesOf((a) => a.ins('sal', rax, 3)), hex('48 c1 e0 03'));
  assert.deepEqual(bytesOf((a) => a.push(qword(mem(rsp, 8)))), hex('ff 74 24 08'));
});

test('system instructions encode as the manuals give them', () => {
  assert.deepEqual(
    bytesOf((a) => a.int3().hlt().pause().cpuid().mfence().vmcall().vmmcall().iretq().cli().sti().pushfq().popfq().serialize().endbr64()),
    hex('cc f4 f3 90 0f a2 0f ae f0 0f 01 c1 0f 01 d9 48 cf fa fb 9c 9d 0f 01 e8 f3 0f 1e fa'),
  );
});

test('labels report canonical signed addresses for kernel text', () => {
  const a = new Asm(KTEXT);
  a.nop(1);
  a.here('after');
  a.ret();
  const out = a.assemble();
  assert.equal(out.address('after'), -0x7effffff);
  assert.equal(out.addressU64('after'), 0xffffffff81000001n);
  assert.match(out.listing(), /after:\n {2}ffffffff81000001 {2}c3/);
});

test('errors: no encoding names mnemonic and operand kinds', () => {
  assert.throws(() => bytesOf((a) => a.mov(rax, al)), { name: 'AsmError', message: "no encoding of 'mov' for operands (r64, r8)" });
});

test('errors: a memory operand without a size where nothing implies one', () => {
  assert.throws(() => bytesOf((a) => a.mov(mem(rdi), 0)), /needs an operand size/);
});

test('errors: immediate out of range', () => {
  assert.throws(() => bytesOf((a) => a.add(al, 300)), /immediate out of range/);
  assert.throws(() => bytesOf((a) => a.and(rax, 0xffffffff)), /immediate out of range/);
});

test('errors: unknown label, unknown mnemonic, bad lock, unencodable register mix', () => {
  assert.throws(() => bytesOf((a) => a.jne(a.label('nowhere'))), /unknown label 'nowhere'/);
  assert.throws(() => bytesOf((a) => a.ins('frobnicate')), /unknown mnemonic 'frobnicate'/);
  assert.throws(() => bytesOf((a) => a.lock().inc(eax)), /lock prefix is not allowed/);
  assert.throws(() => bytesOf((a) => a.mov(ah, r8b)), /cannot encode 'mov ah, r8b'/);
  assert.throws(() => bytesOf((a) => a.bind(a.label('x')).bind(a.label('x'))), /bound twice/);
});

test('AsmError is user-facing', () => {
  try {
    bytesOf((a) => a.mov(ebx, rcx));
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(e instanceof AsmError);
    assert.equal(e.userFacing, true);
  }
});
