/**
 * Modules are read through their relocations: in a .ko the `instr` pointers of
 * .parainstructions and the s32 offsets of .return_sites are zero until RELA entries fill them in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ElfFile } from '../../src/elf/elf64.ts';
import { loadVmlinux } from '../../src/elf/image.ts';
import { loadModule, MODULE_BASE } from '../../src/elf/module.ts';
import { readPatchTables } from '../../src/elf/tables.ts';
import { bootSetup } from '../../src/elf/platforms.ts';
import { alternativeInstructions } from '../../src/elf/boot-patch.ts';
import { inspect } from '../../src/elf/inspect.ts';
import { hexBytes } from '../../src/x86/format.ts';
import { tinyModule } from './tiny-module.ts';
import { tinyKernel } from './tiny-kernel.ts';
import { realKernel } from './kernel-fixture.ts';
import { join } from 'node:path';

test('a module\'s sites appear only after relocation, at its laid-out text', () => {
  const m = loadModule(ElfFile.parse(tinyModule(), 'tiny.ko'));
  const t = readPatchTables(m);
  assert.equal(m.section('.text')!.addr, MODULE_BASE);
  assert.deepEqual(t.parainstructions, [{ address: MODULE_BASE, type: 80, len: 6 }]);
  assert.deepEqual(t.returnSites, [MODULE_BASE + 8]);
  assert.deepEqual([...m.unresolvedImports.values()].sort(), ['__x86_return_thunk', 'pv_ops']);
});

test('imports resolve against the vmlinux, and module_finalize\'s passes patch the module', () => {
  const kernel = loadVmlinux(ElfFile.parse(tinyKernel(), 'tiny'));
  const m = loadModule(ElfFile.parse(tinyModule(), 'tiny.ko'), kernel.symbols);
  const t = readPatchTables(m);
  const env = bootSetup(kernel, readPatchTables(kernel).parainstructions, { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '' }).env;
  const r = alternativeInstructions(m, t, env);
  // call to the kernel's native unlock (0xffffffff81000100) from 0xffffffffc0000000 + 5.
  assert.equal(hexBytes(r.text.read(MODULE_BASE, 6)!), 'e8 fb 00 00 c1 90');
  // MODULE_BASE + 8 has bit 5 clear: its_return_thunk is kept there (a JMP to the chosen thunk).
  assert.equal(r.returns[0], 'patched');
  // jmp its_return_thunk (0xffffffff81000260) from 0xffffffffc0000008 + 5.
  assert.equal(hexBytes(r.text.read(MODULE_BASE + 8, 5)!), 'e9 53 02 00 c1');
});

test('a real Debian module (kvm.ko) is read through its relocations and its sites listed', (t) => {
  const { kernel, reason } = realKernel();
  if (kernel === undefined) return t.skip(reason);
  const r = inspect(join(kernel.modules, 'arch/x86/kvm/kvm.ko'), { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '' });
  assert.equal(r.kind, 'module');
  for (const c of r.counts.filter((c) => c.sectionBytes !== undefined)) assert.equal(c.entries, c.sectionBytes! / c.entrySize!);
  assert.ok(r.tables.parainstructions.length > 0);
  // Every relocated pv site lies in the module's text and starts as `call *disp(%rip)`.
  for (const p of r.tables.parainstructions) assert.deepEqual([...r.image.read(p.address, 2)!], [0xff, 0x15]);
  assert.ok(r.boot !== undefined, 'the vmlinux beside the module is found');
  assert.ok(r.sites.every((s) => s.patched !== undefined && s.patched.length === s.length));
});
