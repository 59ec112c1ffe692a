/**
 * The real-kernel tier (Debian 6.1 cloud kernel, fetched by scripts/get-kernel.sh): table counts
 * are derived from section sizes and entry sizes, every site has the shape objtool / the pv-ops
 * macros give it, boot patching handles every entry, and `pvpatch inspect --json` prints sites in
 * the agreed shape. Skips with the reason when the kernel cannot be had.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { inspect, type InspectReport } from '../../src/elf/inspect.ts';
import { realKernel } from './kernel-fixture.ts';

let report: InspectReport | undefined;
function bareMetal(): InspectReport {
  report ??= inspect(realKernel().kernel!.vmlinux, { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '' });
  return report;
}

test('table counts equal section size / Linux 6.1 entry size', (t) => {
  const { kernel, reason } = realKernel();
  if (kernel === undefined) return t.skip(reason);
  const r = bareMetal();
  const byTable = Object.fromEntries(r.counts.map((c) => [c.table, c]));
  for (const name of ['parainstructions', 'altinstructions', 'retpoline_sites', 'return_sites'] as const) {
    const c = byTable[name]!;
    assert.ok(c.sectionBytes !== undefined && c.sectionBytes > 0, `${c.section} present`);
    assert.equal(c.sectionBytes % c.entrySize!, 0);
    assert.equal(c.entries, c.sectionBytes / c.entrySize!);
  }
  assert.equal(r.tables.parainstructions.length, byTable.parainstructions!.entries);
  assert.equal(r.tables.altinstructions.length, byTable.altinstructions!.entries);
  assert.equal(r.tables.retpolineSites.length, byTable.retpoline_sites!.entries);
  assert.equal(r.tables.returnSites.length, byTable.return_sites!.entries);
  t.diagnostic(`${kernel.release}: ${r.counts.map((c) => `${c.section} ${c.entries ?? '-'}`).join(', ')}`);
});

test('every .parainstructions site starts as call *pv_ops+8*type(%rip), and pv_ops is the exported one', (t) => {
  const { kernel, reason } = realKernel();
  if (kernel === undefined) return t.skip(reason);
  const r = bareMetal();
  const pvOps = r.image.symbols.addressOf('pv_ops')!;
  for (const p of r.tables.parainstructions) {
    const b = r.image.read(p.address, 6)!;
    assert.deepEqual([b[0], b[1]], [0xff, 0x15]);
    const disp = new DataView(b.buffer, b.byteOffset + 2, 4).getInt32(0, true);
    assert.equal(p.address + 6 + disp, pvOps + 8 * p.type);
  }
});

test('boot patching handles every entry: no undecodable site, no unknown thunk, no bad entry', (t) => {
  const { kernel, reason } = realKernel();
  if (kernel === undefined) return t.skip(reason);
  const b = bareMetal().boot!.result;
  assert.ok(b.paravirt.every((o) => o === 'patched'));
  assert.ok(b.retpolines.every((o) => o === 'kept'));
  assert.ok(b.returns.every((o) => o === 'patched' || o === 'static-call-trampoline'));
  assert.ok(b.alternatives.every((o) => o === 'patched' || o === 'not-applied'));
});

test('pvpatch inspect --json prints every site as {table, address, length, original, patched}', (t) => {
  const { kernel, reason } = realKernel();
  if (kernel === undefined) return t.skip(reason);
  const out = spawnSync(process.execPath, ['bin/pvpatch.js', 'inspect', kernel.vmlinux, '--json'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(out.status, 0, out.stderr);
  const j = JSON.parse(out.stdout) as { sites: { table: string; address: string; length: number; original: string; patched: string }[] };
  assert.equal(j.sites.length, bareMetal().sites.length);
  for (const s of j.sites.slice(0, 200)) {
    assert.match(s.address, /^0xffffffff[0-9a-f]{8}$/);
    assert.match(s.original, /^[0-9a-f]{2}( [0-9a-f]{2})*$/);
    assert.equal(s.original.split(' ').length, s.length);
    assert.equal(s.patched.split(' ').length, s.length);
  }
});

test('a file that is no kernel is one error line and exit 2, no stack trace', () => {
  const out = spawnSync(process.execPath, ['bin/pvpatch.js', 'inspect', 'package.json'], { encoding: 'utf8' });
  assert.equal(out.status, 2);
  assert.equal(out.stderr.trim().split('\n').length, 1);
  assert.match(out.stderr, /^pvpatch: package\.json: /);
});

test('kvm: the pv unlock sites call the PV unlock (PVUNLOCK set, ALT_NOT(PVUNLOCK) not applied) and only v2 can switch them', (t) => {
  const { kernel, reason } = realKernel();
  if (kernel === undefined) return t.skip(reason);
  if (kernel.systemMap === undefined) return t.skip('kvm needs the names of static functions: run scripts/get-kernel.sh --symbols');
  const r = inspect(kernel.vmlinux, { platform: 'kvm', cpu: 'Skylake-Client', cmdline: '', symbols: kernel.systemMap, analyzeAgainst: 'kvm' });
  const unlock = r.image.symbols.addressOf('__raw_callee_save___pv_queued_spin_unlock')!;
  const sites = r.tables.parainstructions.flatMap((p, i) => (p.type === 80 ? [[p, i] as const] : []));
  assert.ok(sites.length > 0);
  for (const [p, i] of sites) {
    const b = r.boot!.result.text.read(p.address, p.len)!;
    assert.equal(b[0], 0xe8);
    assert.equal(p.address + 5 + new DataView(b.buffer, b.byteOffset + 1, 4).getInt32(0, true), unlock);
    assert.deepEqual(r.judgements!.get(i)!.protocols, ['v2'], 'seed 001: the CALL returns inside the native NOP');
  }
});

test('kvm-realtime (KVM_HINTS_REALTIME): lock ops stay native, vcpu_is_preempted stays paravirt', (t) => {
  const { kernel, reason } = realKernel();
  if (kernel === undefined) return t.skip(reason);
  if (kernel.systemMap === undefined) return t.skip('kvm-realtime needs the names of static functions: run scripts/get-kernel.sh --symbols');
  const r = inspect(kernel.vmlinux, { platform: 'kvm-realtime', cpu: 'Skylake-Client', cmdline: '', symbols: kernel.systemMap });
  const at = (slot: number): Uint8Array[] => r.tables.parainstructions.filter((p) => p.type === slot).map((p) => r.boot!.result.text.read(p.address, p.len)!);
  for (const b of at(80)) assert.deepEqual([...b.subarray(0, 3)], [0xc6, 0x07, 0x00]); // native unlock inline
  for (const b of at(83)) assert.equal(b[0], 0xe8); // CALL __kvm_vcpu_is_preempted
});

test('Debian 6.12: 14-byte alt_instr with ft_flags, pv-ops as ALT_FLAG_DIRECT_CALL alternatives, no .parainstructions, every entry handled', (t) => {
  const { kernel, reason } = realKernel('6.12');
  if (kernel === undefined) return t.skip(reason);
  const r = inspect(kernel.vmlinux, { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '', symbols: kernel.systemMap });
  assert.equal(r.tables.layouts.version.minor, 12);
  assert.equal(r.tables.layouts.altinstructions.entrySize, 14);
  assert.equal(r.tables.sizes.altinstructions!.entries * 14, r.tables.sizes.altinstructions!.bytes);
  assert.equal(r.tables.parainstructions.length, 0);
  const direct = r.tables.altinstructions.filter((a) => a.directCall);
  assert.ok(direct.length > 1000, `${direct.length} DIRECT_CALL entries`);
  for (const a of direct.slice(0, 200)) assert.deepEqual([...r.image.read(a.address, 2)!], [0xff, 0x15]); // call *pv_ops[x](%rip)
  assert.ok(r.boot!.result.alternatives.every((o) => o === 'patched' || o === 'not-applied'));
  t.diagnostic(`${kernel.release}: ${r.counts.filter((c) => c.entries !== undefined).map((c) => `${c.section} ${c.entries}`).join(', ')}`);
});

test('Debian 5.10: .parainstructions entries of 16 bytes whose last one ends after its clobbers field', (t) => {
  const { kernel, reason } = realKernel('5.10');
  if (kernel === undefined) return t.skip(reason);
  const r = inspect(kernel.vmlinux, { platform: 'bare-metal', cpu: 'Skylake-Client', cmdline: '', symbols: kernel.systemMap });
  const size = r.tables.sizes.parainstructions!;
  assert.equal(size.bytes, 16 * size.entries - 4);
  assert.ok(r.boot!.result.paravirt.every((o) => o === 'patched'));
  assert.ok(r.boot!.result.alternatives.every((o) => o === 'patched' || o === 'not-applied'));
});
