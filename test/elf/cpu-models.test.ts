// The CPU presets come from real boots (scripts/cpu-models-qemu.ts → src/elf/cpu-models.json), not
// from a hand table: the parser keeps CPU 0's CPUID-word flags and its bugs line, and the loaded
// presets are exactly the generated file's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CPU_MODELS, CPU_MODELS_SOURCE, parseCpuSpec } from '../../src/elf/cpu-models.ts';
import { CPUID_WORDS, DEFAULT_MODELS, parseCpuinfo } from '../../scripts/cpu-models-qemu.ts';
import { featureByName } from '../../src/elf/cpufeatures.ts';
import generated from '../../src/elf/cpu-models.json' with { type: 'json' };

const CPUINFO = `boot noise
PVPATCH-CPUINFO-BEGIN
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 94
flags\t\t: fpu sse2 ht syscall nx rep_good nopl cpuid pni pcid hypervisor pti avx2 arat xgetbv1
bugs\t\t: cpu_meltdown spectre_v1 spectre_v2 mds

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 94
flags\t\t: fpu
bugs\t\t: spectre_v1

PVPATCH-CPUINFO-END
`;

test('parseCpuinfo: CPU 0, only the CPUID words (no rep_good, nopl, cpuid, pti), bugs in X86_BUG names', () => {
  const m = parseCpuinfo('Skylake-Client', CPUINFO);
  assert.deepEqual({ ...m, cpuid: [...m.cpuid] }, {
    name: 'Skylake-Client', vendor: 'intel', family: 6, model: 94,
    cpuid: ['fpu', 'sse2', 'ht', 'syscall', 'nx', 'pni', 'pcid', 'hypervisor', 'avx2', 'arat', 'xgetbv1'],
    bugs: ['CPU_MELTDOWN', 'SPECTRE_V1', 'SPECTRE_V2', 'MDS'],
  });
  assert.throws(() => parseCpuinfo('x', CPUINFO.replace('fpu sse2', 'fpu warp_drive')), /flag 'warp_drive' is not a Linux 6\.1\.y feature/);
  assert.throws(() => parseCpuinfo('x', CPUINFO.replace(/vendor_id\t: GenuineIntel/g, 'vendor_id\t: CentaurHauls')), /neither Intel nor AMD/);
});

test('the presets are the generated file\'s: every model the project uses, CPUID-word flags only, from a TCG boot of Linux 6.1', () => {
  assert.deepEqual(CPU_MODELS.map((m) => m.name), DEFAULT_MODELS);
  assert.equal(CPU_MODELS_SOURCE.accel, 'tcg');
  assert.match(CPU_MODELS_SOURCE.kernel, /^6\.1\./);
  for (const [i, m] of CPU_MODELS.entries()) {
    assert.deepEqual([...m.cpuid], generated.models[i]!.cpuid);
    assert.deepEqual([...m.bugs], generated.models[i]!.bugs);
    for (const f of m.cpuid) assert.ok(CPUID_WORDS.has(Math.floor(featureByName(f.toUpperCase())!.bit / 32)), `${m.name}: ${f}`);
    for (const b of m.bugs) assert.ok(featureByName(`BUG_${b}`) !== undefined, `${m.name}: bug ${b}`);
    assert.ok(m.cpuid.includes('hypervisor'), `${m.name}: a TCG guest sees the hypervisor bit`);
  }
  assert.equal(parseCpuSpec('').model.name, 'Skylake-Client');
  assert.equal(parseCpuSpec('EPYC,-avx2').model.vendor, 'amd');
});
