// The `pvpatch run` command: the bundled default works from a clean checkout; bad input of any
// kind is one clear line on stderr and a non-zero exit, never a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'pvpatch.js');
const dir = mkdtempSync(join(tmpdir(), 'pvpatch-cli-'));
const TPO = join(import.meta.dirname, '..', '..', 'scenarios', 'text-poke-order.yaml');

function pvpatch(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, PVPATCH_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function scenario(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, body);
  return p;
}

const ONE_CPU = (code: string) => `
machine: { vcpus: 1 }
memory: [{ at: 0x1000, size: 0x1000, perms: rx }]
code: [{ at: 0x1000, ${code} }]
vcpus: [{ rip: 0x1000 }]
`;

function assertOneLineError(r: { code: number | null; err: string }, pattern: RegExp): void {
  assert.notEqual(r.code, 0);
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.err}`);
  assert.match(lines[0]!, /^pvpatch: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
}

test('the text_poke_bp-order machine scenario finds no hazard', () => {
  const r = pvpatch('run', TPO);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /text-poke-order\.yaml: 2 vCPUs/);
  assert.match(r.out, /hazards: none/);
});

test('pvpatch run --json prints one JSON object with the verdict and a replayable schedule', () => {
  const r = pvpatch('run', TPO, '--json', '--seed', '4');
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out) as { reason: string; hazards: unknown[]; schedule: string; vcpus: unknown[] };
  assert.equal(o.hazards.length, 0);
  assert.equal(o.vcpus.length, 2);
  const again = JSON.parse(pvpatch('run', TPO, '--json', '--schedule', o.schedule).out) as { vcpus: unknown[] };
  assert.deepEqual(again.vcpus, o.vcpus, 'the schedule replays the same run');
});

test('the no-sync rewrite exits 1 with the hazard explained', () => {
  const r = pvpatch('run', join(import.meta.dirname, '..', '..', 'scenarios', 'cmc-no-sync.yaml'));
  assert.equal(r.code, 1);
  assert.match(r.out, /cmc-unsynchronized: vCPU 0 fetched 0x1000/);
});

test('a seed sweep reports how many seeds failed', () => {
  const r = pvpatch('run', TPO, '--seeds', '20', '--json');
  assert.equal(r.code, 0, r.err);
  assert.equal((JSON.parse(r.out) as { failing: number }).failing, 0);
});

test('an unknown instruction is one line naming bytes, address and mnemonic', () => {
  assertOneLineError(pvpatch('run', scenario('syscall.yaml', ONE_CPU('hex: "0f 05"'))), /unsupported instruction 'syscall' \(bytes 0f 05\) at 0x1000/);
});

test('a jump to unmapped memory is one line', () => {
  assertOneLineError(pvpatch('run', scenario('jump.yaml', ONE_CPU('asm: "jmp 0x5000"'))), /vCPU 0 at 0x5000: instruction fetch from unmapped memory/);
});

test('a malformed schedule string is one line naming the bad token', () => {
  assertOneLineError(pvpatch('run', TPO, '--schedule', 's0*3 x1'), /token 2 'x1'/);
});

test('a schedule that does not fit is one line saying where', () => {
  assertOneLineError(pvpatch('run', TPO, '--schedule', 'n0'), /decision 1 'n0' does not fit/);
});

test('a typo in a scenario key suggests the right one', () => {
  const body = ONE_CPU('asm: "hlt"').replace('vcpus: [{ rip', 'vcpus: [{ rpi: 0x1000, rip');
  assertOneLineError(pvpatch('run', scenario('typo.yaml', body)), /unknown key 'rpi' \(did you mean 'rip'\?\)/);
});

test('a missing scenario file is one line', () => {
  assertOneLineError(pvpatch('run', join(dir, 'nope.yaml')), /no such scenario file/);
});

test('an assembly error names the line', () => {
  assertOneLineError(pvpatch('run', scenario('asm.yaml', ONE_CPU('asm: "nop\\nfrobnicate rax"'))), /line 2: unknown mnemonic 'frobnicate'/);
});

test('--help lists the run command', () => {
  const r = pvpatch('--help');
  assert.equal(r.code, 0);
  assert.match(r.out, /run \[options\] \[scenario\]/);
});

test('--schedule-file replays a recorded schedule exactly, and a billion-step repeat in a file is read as one entry', () => {
  const sched = join(dir, 'tpo.sched');
  const a = pvpatch('run', TPO, '--json', '--seed', '6', '--schedule-out', sched);
  assert.equal(a.code, 0, a.err);
  const b = pvpatch('run', TPO, '--json', '--schedule-file', sched);
  assert.equal(b.code, 0, b.err);
  const [x, y] = [JSON.parse(a.out), JSON.parse(b.out)];
  assert.deepEqual([y.vcpus, y.schedule, y.steps], [x.vcpus, x.schedule, x.steps]);
  const huge = join(dir, 'huge.sched');
  writeFileSync(huge, 's0*1000000000\n');
  const h = pvpatch('run', TPO, '--json', '--schedule-file', huge, '--max-instructions', '5000');
  assert.equal(h.code, 0, h.err);
  assert.deepEqual([JSON.parse(h.out).reason, JSON.parse(h.out).schedule], ['limit', 's0*5000']);
});

test('a schedule file that stops fitting is one line naming the decision; --schedule and --schedule-file together are one line', () => {
  const bad = join(dir, 'bad.sched');
  writeFileSync(bad, 's0*3\nn1\n');
  assertOneLineError(pvpatch('run', TPO, '--schedule-file', bad), /decision 4 'n1' does not fit: enabled here are s0 s1/);
  const j = pvpatch('run', TPO, '--schedule-file', bad, '--json');
  assert.equal(j.code, 2);
  assert.deepEqual(JSON.parse(j.out).misfit.expected, { kind: 'nmi', cpu: 1 });
  assertOneLineError(pvpatch('run', TPO, '--schedule-file', join(dir, 'missing.sched')), /cannot read schedule file .*missing\.sched: no such file/);
  assertOneLineError(pvpatch('run', TPO, '--schedule', 's0', '--schedule-file', bad), /--schedule or --schedule-file, not both/);
});
