/**
 * Modules are read through their relocations: in a .ko the `instr` pointers of
 * .parainstructions and the s32 offsets of .return_sites are zero until RELA entries fill them in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ElfFile, R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32 } from '../../src/elf/elf64.ts';
import { loadVmlinux } from '../../src/elf/image.ts';
import { loadModule, MODULE_BASE } from '../../src/elf/module.ts';
import { readPatchTables } from '../../src/elf/tables.ts';
import { bootSetup } from '../../src/elf/platforms.ts';
import { alternativeInstructions } from '../../src/elf/boot-patch.ts';
import { inspect } from '../../src/elf/inspect.ts';
import { hexBytes } from '../../src/x86/format.ts';
import { buildElf, Packer, SHF, SHT, concat, rela, sym } from './elf-builder.ts';
import { tinyKernel } from './tiny-kernel.ts';
import { realKernel } from './kernel-fixture.ts';
import { join } from 'node:path';

const STB_GLOBAL = 1;
const STT_SECTION = 3;

/** .text: `call *pv_ops+0x280(%rip)` at 0, `jmp __x86_return_thunk` at 8, both unrelocated. */
function tinyModule(): Uint8Array {
  const text = new Uint8Array(16).fill(0xcc);
  text.set([0xff, 0x15, 0, 0, 0, 0], 0);
  text.set([0xe9, 0, 0, 0, 0], 8);
  const strtab = '\0pv_ops\0__x86_return_thunk\0';
  const symtab = concat([
    sym(0, 0, 0, 0n),
    sym(0, STT_SECTION, 1, 0n),
    sym(1, STB_GLOBAL << 4, 0, 0n),
    sym(8, STB_GLOBAL << 4, 0, 0n),
  ]);
  // indices: 1 .text, 2 .rela.text, 3 .parainstructions, 4 .rela.parainstructions, 5 .return_sites, 6 .rela.return_sites, 7 .symtab, 8 .strtab
  return buildElf(1, [
    { name: '.text', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.EXEC, data: text, align: 16 },
    { name: '.rela.text', type: SHT.RELA, data: concat([rela(2, 2, R_X86_64_PC32, 0x280n - 4n), rela(9, 3, R_X86_64_PLT32, -4n)]), link: 7, info: 1, entsize: 24 },
    { name: '.parainstructions', type: SHT.PROGBITS, flags: SHF.ALLOC, data: new Packer().u64(0n).u8(80).u8(6).raw([0, 0, 0, 0, 0, 0]).done(), align: 8 },
    { name: '.rela.parainstructions', type: SHT.RELA, data: rela(0, 1, R_X86_64_64, 0n), link: 7, info: 3, entsize: 24 },
    { name: '.return_sites', type: SHT.PROGBITS, flags: SHF.ALLOC, data: new Uint8Array(4) },
    { name: '.rela.return_sites', type: SHT.RELA, data: rela(0, 1, R_X86_64_PC32, 8n), link: 7, info: 5, entsize: 24 },
    { name: '.symtab', type: SHT.SYMTAB, data: symtab, link: 8, info: 2, entsize: 24, align: 8 },
    { name: '.strtab', type: SHT.STRTAB, data: new TextEncoder().encode(strtab) },
  ]);
}

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
  for (const c of r.counts.filter((c) => c.sectionBytes !== undefined)) assert.equal(c.entries, c.sectionBytes! / c.entrySize);
  assert.ok(r.tables.parainstructions.length > 0);
  // Every relocated pv site lies in the module's text and starts as `call *disp(%rip)`.
  for (const p of r.tables.parainstructions) assert.deepEqual([...r.image.read(p.address, 2)!], [0xff, 0x15]);
  assert.ok(r.boot !== undefined, 'the vmlinux beside the module is found');
  assert.ok(r.sites.every((s) => s.patched !== undefined && s.patched.length === s.length));
});
