/**
 * Boot patching as Linux 6.1 does it, pass by pass, on the tiny image and on bytes written out:
 * apply_paravirt's direct CALL, the ALT_NOT(PVUNLOCK) inline unlock with optimize_nops,
 * its_return_thunk's cacheline rule, retpoline rewriting under mitigations=off, the CALL and JMP
 * fix-ups of apply_alternatives, and the seed 001 judgement of the unlock site.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ElfFile } from '../../src/elf/elf64.ts';
import { loadVmlinux } from '../../src/elf/image.ts';
import { readPatchTables, type AltInstr } from '../../src/elf/tables.ts';
import { bootSetup, type BootOptions } from '../../src/elf/platforms.ts';
import { alternativeInstructions, siteBytes } from '../../src/elf/boot-patch.ts';
import { alternativeBytes } from '../../src/elf/apply-alternatives.ts';
import { optimizeNops } from '../../src/elf/optimize-nops.ts';
import { judgeSite } from '../../src/elf/site-analysis.ts';
import { bootCpu, parseCommandLine } from '../../src/elf/boot-cpu.ts';
import { parseCpuSpec } from '../../src/elf/cpu-models.ts';
import { featureByName } from '../../src/elf/cpufeatures.ts';
import { hexBytes } from '../../src/x86/format.ts';
import { tinyKernel, SITE_PV, SITE_RET, SITE_RETPOLINE } from './tiny-kernel.ts';

function bootTiny(o: Partial<BootOptions> = {}) {
  const image = loadVmlinux(ElfFile.parse(tinyKernel(), 'tiny'));
  const tables = readPatchTables(image);
  const setup = bootSetup(image, tables.parainstructions, { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '', ...o });
  const r = alternativeInstructions(image, tables, setup.env);
  const at = (addr: number, len: number): string => hexBytes(r.text.read(addr, len)!);
  return { r, at, setup, image, tables };
}

test('bare metal: the pv unlock site becomes movb $0,(%rdi) + a 3-byte NOP (CALL first, then ALT_NOT(PVUNLOCK))', () => {
  const { at, r } = bootTiny();
  assert.equal(at(SITE_PV, 6), 'c6 07 00 0f 1f 00');
  assert.deepEqual(r.alternatives, ['patched']);
});

test('apply_paravirt alone writes a direct CALL to pv_ops[80] and pads with Linux NOPs', () => {
  const { image, tables } = bootTiny();
  const setup = bootSetup(image, tables.parainstructions, { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '' });
  const r = alternativeInstructions(image, { ...tables, altinstructions: [] }, setup.env);
  // call SITE_PV+0x100 (the native unlock) = e8 fb 00 00 00, then the 1-byte NOP.
  assert.equal(hexBytes(r.text.read(SITE_PV, 6)!), 'e8 fb 00 00 00 90');
});

test('with ITS the return thunk is kept only in the lower half of a cacheline; at +0x20 it becomes ret; int3', () => {
  const { at, setup } = bootTiny();
  assert.equal(setup.cpu.returnThunk, 'its_return_thunk');
  assert.equal(at(SITE_RET, 5), 'c3 cc cc cc cc');
});

test('full retpolines leave the thunk call alone', () => {
  const { at, r } = bootTiny();
  assert.deepEqual(r.retpolines, ['kept']);
  assert.equal(at(SITE_RETPOLINE, 5), 'e8 bb 02 00 00');
});

test('mitigations=off: the thunk call becomes call *%rax + NOP, returns become ret + int3', () => {
  const { at, setup } = bootTiny({ cmdline: 'mitigations=off' });
  assert.equal(setup.cpu.features.has(featureByName('RETPOLINE')!.bit), false);
  assert.equal(at(SITE_RETPOLINE, 5), 'ff d0 0f 1f 00');
  assert.equal(at(SITE_RET, 5), 'c3 cc cc cc cc');
});

test('siteBytes reports {table, address, length, original, patched} for every entry', () => {
  const { r, image, tables } = bootTiny();
  const sites = siteBytes(image, tables, r.text);
  assert.deepEqual(sites.map((s) => [s.table, s.length]), [['parainstructions', 6], ['altinstructions', 6], ['retpoline_sites', 5], ['return_sites', 5]]);
  assert.equal(hexBytes(sites[0]!.original), 'ff 15 7a 02 00 01'); // pv_ops + 8*80 - (site + 6)
});

test('a copied 5-byte CALL is re-targeted by replacement - instr', () => {
  const a: AltInstr = { address: 0x1000, replacement: 0x9000, feature: 0, inverted: false, directCall: false, instrlen: 5, replacementlen: 5 };
  // call +0x10 from the replacement reaches 0x9015; from the site that is disp 0x8010.
  assert.equal(hexBytes(alternativeBytes(a, Uint8Array.of(0xe8, 0x10, 0, 0, 0))), 'e8 10 80 00 00');
});

test('a copied JMP that reaches forward within 127 bytes becomes a 2-byte JMP + NOP3 (recompute_jump)', () => {
  const a: AltInstr = { address: 0x1000, replacement: 0x1000 + 0x40, feature: 0, inverted: false, directCall: false, instrlen: 5, replacementlen: 5 };
  // jmp from replacement+5 with disp -0x20 → target 0x1025; from the site: eb 23 + 0f 1f 00.
  assert.equal(hexBytes(alternativeBytes(a, Uint8Array.of(0xe9, 0xe0, 0xff, 0xff, 0xff))), 'eb 23 0f 1f 00');
});

test('optimize_nops turns runs of 0x90 into Linux NOPs but leaves a single 0x90', () => {
  const b = Uint8Array.of(0xfa, 0x90, 0x90, 0x90, 0x90, 0x90, 0xfb, 0x90);
  optimizeNops(b, b.length, 0x1000);
  assert.equal(hexBytes(b), 'fa 0f 1f 44 00 00 fb 90');
});

test('seed 001 on Linux 6.1 bytes: the PV unlock CALL returns to offset 5, inside the native NOP; only v2 can switch it', () => {
  const native = Uint8Array.of(0xc6, 0x07, 0x00, 0x0f, 0x1f, 0x00);
  const pv = Uint8Array.of(0xe8, 0x4a, 0xff, 0x03, 0x00, 0x90);
  const j = judgeSite(0x1000, native, pv, 80);
  assert.deepEqual(j.native.boundaries, [0, 3, 6]);
  assert.deepEqual(j.paravirt.boundaries, [0, 5, 6]);
  assert.equal(j.returnHazards.length, 1);
  assert.equal(j.returnHazards[0]!.returnOffset, 5);
  assert.equal(j.textPokeBpEmulates, false);
  assert.deepEqual(j.protocols, ['v2']);
});

test('a CALL against a same-length NOP outside the lock ops is text_poke_bp-switchable (one emulatable instruction)', () => {
  const j = judgeSite(0x1000, Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00), Uint8Array.of(0xe8, 0, 0, 0, 0), 0);
  assert.deepEqual(j.protocols, ['text_poke_bp', 'v1']);
});

test('the Skylake-Client preset under TCG gets Linux 6.1.y\'s retpoline + ITS + PTI + VERW choices', () => {
  const spec = parseCpuSpec('Skylake-Client');
  const cpu = bootCpu(spec.model, [], [], parseCommandLine(''), false);
  for (const f of ['RETPOLINE', 'RETHUNK', 'PTI', 'CLEAR_CPU_BUF', 'REP_GOOD', 'RSB_CTXSW', 'FENCE_SWAPGS_KERNEL']) assert.ok(cpu.features.has(featureByName(f)!.bit), f);
  for (const f of ['RETPOLINE_LFENCE', 'INDIRECT_THUNK_ITS', 'PCID', 'XENPV', 'UNRET']) assert.ok(!cpu.features.has(featureByName(f)!.bit), f);
  assert.equal(cpu.returnThunk, 'its_return_thunk');
});

test('explicit +feat/-feat change the preset', () => {
  const spec = parseCpuSpec('Haswell,+pcid,-avx2');
  const cpu = bootCpu(spec.model, spec.add, spec.remove, parseCommandLine(''), false);
  assert.ok(cpu.features.has(featureByName('PCID')!.bit));
  assert.ok(!cpu.features.has(featureByName('AVX2')!.bit));
});

test('two CALLs to different lock slowpaths are mechanically pokeable, but lock ops switch only under v2', () => {
  const j = judgeSite(0x1000, Uint8Array.of(0xe8, 1, 0, 0, 0, 0x90), Uint8Array.of(0xe8, 2, 0, 0, 0, 0x90), 79);
  assert.equal(j.textPokeBpEmulates, true);
  assert.deepEqual(j.protocols, ['v2']);
});

test('a multi-instruction change outside the lock ops needs v1 (stop_machine lock-step)', () => {
  // One instruction differs (sti vs nop) but INT3 cannot emulate `sti` on the way back.
  const j = judgeSite(0x1000, Uint8Array.of(0xfa, 0xfb, 0x0f, 0x1f, 0x40, 0x00), Uint8Array.of(0xfa, 0x90, 0x0f, 0x1f, 0x40, 0x00), 21);
  assert.deepEqual(j.protocols, ['v1']);
  // cli; sti; nopl vs nopl5; nop: different boundaries, no CALL.
  const k = judgeSite(0x1000, Uint8Array.of(0xfa, 0xfb, 0x0f, 0x1f, 0x40, 0x00), Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00, 0x90), 21);
  assert.deepEqual(k.protocols, ['v1']);
});
