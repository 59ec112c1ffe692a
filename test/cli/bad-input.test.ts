// Issue 13's bad-input classes, one test each, through the in-process CLI: every resource a
// scenario, schedule or image can ask for is bounded with a clear error; output files are whole
// or absent; every error is one stderr line (with --json also a JSON object on stdout); a flag that
// does not apply is an error naming why.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, type CliResult } from '../../src/cli/main.ts';
import { tinyKernel } from '../elf/tiny-kernel.ts';
import { tinyModule } from '../elf/tiny-module.ts';
import { SCENARIOS, scratch } from './fuzz-support.ts';

const work = scratch('bad-input');
after(() => work.clean());
const CMC = join(SCENARIOS, 'cmc-no-sync.yaml');

function file(name: string, body: string | Uint8Array): string {
  const p = join(work.dir, name);
  writeFileSync(p, body);
  return p;
}

function oneLine(r: CliResult, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit 2, got ${r.code}: ${r.stderr}${r.stdout.slice(0, 500)}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^pvpatch: /);
  assert.match(lines[0]!, pattern);
}

const MACHINE = (extra: string, memory = '[{ at: 0x1000, size: 0x1000, perms: rx }]') => `
machine: { vcpus: 2 }
memory: ${memory}
code: [{ at: 0x1000, asm: "mov eax, 1\\nhlt" }]
vcpus: [{ rip: 0x1000 }, { rip: 0x1000 }]
${extra}`;

test('a 1 GiB memory region costs only the pages a run touches', async () => {
  const p = file('big.yaml', MACHINE('', '[{ at: 0x1000, size: 0x1000, perms: rx }, { at: 0x100000, size: 0x40000000, perms: rw }]'));
  const r = await runCli(['run', p, '--json']);
  assert.equal(r.code, 0, r.stderr);
});

test('host parameters out of range are one line each (overcommit near 0, pcpus in the billions)', async () => {
  oneLine(await runCli(['run', file('oc.yaml', 'guest: { vcpus: 4 }\nhost: { overcommit: 0.000001 }\nschedule: { strategy: timed }')]), /\/host\/overcommit: must be >= /);
  oneLine(await runCli(['run', file('pc.yaml', 'guest: { vcpus: 4 }\nhost: { pcpus: 2000000000 }\nschedule: { strategy: timed }')]), /\/host\/pcpus: must be <= 1024/);
  oneLine(await runCli(['run', file('xs.yaml', 'guest: { vcpus: 4 }\nworkload: { extraSites: 100000000 }')]), /\/workload\/extraSites: must be <= /);
});

test('a schedule with a huge repeat count is one entry, and a count past 1e9 is refused with one line, not a V8 abort', async () => {
  const r = await runCli(['run', CMC, '--schedule', 's0*999999999']);
  assert.ok(r.code === 0 || r.code === 1 || r.code === 2, `exit ${r.code}`);
  assert.ok(!/internal error|RangeError|heap/i.test(r.stderr), r.stderr);
  oneLine(await runCli(['run', CMC, '--schedule', 's0*5 s1*99999999999']), /token 2 's1\*99999999999': repeat count must be 1\.\.1e9/);
});

test('a module with a multi-GiB .bss, or a section of impossible size, is one line', async () => {
  const vmlinux = file('vmlinux', tinyKernel());
  for (const [size, name] of [[0x100000000n, 'bss4g.ko'], [2n ** 64n - 1n, 'bssmax.ko']] as const) {
    const m = tinyModule();
    const v = new DataView(m.buffer);
    const shoff = Number(v.getBigUint64(0x28, true));
    const h = shoff + 64 * 5; // .return_sites: make it an allocated SHT_NOBITS section
    v.setUint32(h + 4, 8, true);
    v.setBigUint64(h + 32, size, true);
    oneLine(await runCli(['inspect', file(name, m), '--vmlinux', vmlinux]), /zero-filled memory \(SHT_NOBITS\), more than the 256 MiB/);
  }
});

test('an output path in a missing directory, or that is a directory, is refused before the run and leaves nothing', async () => {
  const out = join(work.dir, 'out');
  mkdirSync(out);
  for (const [flag, path, why] of [['--trace-out', join(out, 'no', 'x.json'), /directory .* does not exist/], ['--schedule-out', out, /is a directory/], ['--trace-out', '', /needs a file name/]] as const) {
    const r = await runCli(['run', CMC, flag, path]);
    oneLine(r, why);
    assert.equal(r.stdout, '', 'nothing was run');
  }
  assert.deepEqual(readdirSync(out), [], 'no temporary file left');
  const ok = await runCli(['run', CMC, '--trace-out', join(out, 'x.json')]);
  assert.equal(ok.code, 1);
  assert.deepEqual(readdirSync(out), ['x.json'], 'the trace, and nothing else');
});

test('every error is one stderr line, with --json also a JSON error object on stdout', async () => {
  oneLine(await runCli(['run', file('tag.yaml', 'machine: !weird { vcpus: 1 }\n')]), /Unresolved tag/);
  oneLine(await runCli(['help', 'nosuch']), /no command 'nosuch'/);
  for (const args of [['run', join(work.dir, 'missing.yaml'), '--json'], ['run', '--bogus', '--json'], ['run', CMC, '--schedule', 's7', '--json']]) {
    const r = await runCli(args);
    oneLine(r, /./);
    const o = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { error?: { message: string } };
    assert.ok(o.error !== undefined, `a JSON error object for ${args.join(' ')}: ${r.stdout}`);
  }
  const bare = await runCli([]);
  assert.equal(bare.code, 0);
  assert.equal(bare.stderr, '');
  assert.match(bare.stdout, /Usage: pvpatch/);
});

test('flags that do not apply are errors naming why', async () => {
  oneLine(await runCli(['run', CMC, '--protocol', 'v1']), /--protocol does not apply: only guest scenarios/);
  oneLine(await runCli(['run', CMC, '--show-sites']), /--show-sites does not apply/);
  oneLine(await runCli(['run', CMC, '--schedule', 's0', '--strategy', 'random']), /cannot be combined with --strategy random/);
  oneLine(await runCli(['run', CMC, '--seeds', '3', '--trace-out', join(work.dir, 't.json')]), /--trace-out does not apply: --seeds sweeps many runs/);
  oneLine(await runCli(['run', CMC, '--schedule', 's0', '--seed', '4']), /--seed does not apply: a replay/);
  oneLine(await runCli(['run', CMC, '--seed', '']), /--seed must be an integer/);
  oneLine(await runCli(['run', CMC, '--schedule', ' ']), /--schedule needs a value/);
  oneLine(await runCli(['run', file('rp.yaml', MACHINE('schedule: { strategy: random, replay: "s0" }'))]), /\/schedule\/replay applies only to strategy replay/);
  const vmlinux = file('vmlinux2', tinyKernel());
  oneLine(await runCli(['inspect', file('m.ko', tinyModule()), '--vmlinux', join(work.dir, 'none')]), /--vmlinux .*none: no such file/);
  oneLine(await runCli(['inspect', vmlinux, '--vmlinux', vmlinux]), /--vmlinux does not apply: .* is a vmlinux/);
  oneLine(await runCli(['inspect', vmlinux, '--symbols', work.dir]), /--symbols .*: not a file/);
});

test('injection targets that do not exist and overlapping memory regions are refused', async () => {
  oneLine(await runCli(['run', file('inj.yaml', MACHINE('inject: { nmis: 1, cpus: [5] }'))]), /\/inject\/cpus: there is no vCPU 5/);
  oneLine(await runCli(['run', file('vec.yaml', MACHINE('inject: { vector: 40 }'))]), /\/inject\/vector: applies to injected interrupts/);
  oneLine(await runCli(['run', file('ov.yaml', MACHINE('', '[{ at: 0x1000, size: 0x1000, perms: rx }, { at: 0x1800, size: 0x10, perms: rw }]'))]), /\/memory\/1 overlaps \/memory\/0 at page 0x1000/);
});

test('a typo in a required key gets a "did you mean"', async () => {
  oneLine(await runCli(['run', file('typo.yaml', MACHINE('').replace('vcpus: [', 'vpcus: ['))]), /missing required key 'vcpus' \('vpcus' is not a key: did you mean 'vcpus'\?\)/);
});

test('a scenario nested too deeply, or whose aliases multiply, is one line', async () => {
  oneLine(await runCli(['run', file('deep.yaml', '['.repeat(100_000))]), /nested too deeply/);
  const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `b${i}: &b${i} [${Array(10).fill(i === 0 ? '*a' : `*b${i - 1}`).join(', ')}]`)].join('\n');
  oneLine(await runCli(['run', file('laughs.yaml', laughs)]), /alias count/);
});
