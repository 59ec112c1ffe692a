// `pvpatch run` on guest scenarios: --show-sites prints the patched bytes; bad configuration of
// the guest or host is one clear line and a non-zero exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'pvpatch.js');
const dir = mkdtempSync(join(tmpdir(), 'pvpatch-guest-'));

function pvpatch(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function scenario(body: string): string {
  const p = join(dir, `s${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(p, body);
  return p;
}

function oneLine(r: { code: number | null; err: string }, re: RegExp): void {
  assert.notEqual(r.code, 0);
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, r.err);
  assert.match(lines[0]!, re);
}

test('pvpatch run (the bundled default): the host revokes REALTIME and the guest switches all five ops with v2', () => {
  const r = pvpatch('run');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /PV spinlocks disabled with KVM_HINTS_REALTIME hints → native/);
  assert.match(r.out, /pv_lock_ops switch \(v2\): ok, now pv/);
  const phases = [...r.out.matchAll(/step\s+\d+(?: \(\+\d+\))?\s+([a-z0-9-]+)/g)].map((m) => m[1]);
  assert.deepEqual(phases, ['start', 'int3', 'barrier-open', 'flip', 'tails', 'first-bytes', 'done']);
  assert.match(r.out, /hazards: none/);
  assert.doesNotMatch(r.out, /BROKEN/);
});

test('the default switch as JSON: the checks, the switch and the final site bytes', () => {
  const o = JSON.parse(pvpatch('run', '--seed', '3', '--json').out) as { switch: { ok: boolean; flavor: string }; locks: { ok: boolean }[]; hazards: unknown[]; sites: { op: string; bytes: string }[] };
  assert.equal(o.switch.ok, true);
  assert.equal(o.switch.flavor, 'pv');
  assert.ok(o.locks.every((l) => l.ok));
  assert.equal(o.hazards.length, 0);
  assert.ok(o.sites.filter((s) => s.op === 'queued_spin_unlock').every((s) => / 66 90$/.test(s.bytes)), 'unlock sites are PV calls now');
});

test('--show-sites lists every pv-op site with Linux\'s bytes', () => {
  const r = pvpatch('run', join(ROOT, 'scenarios', 'guest-pv.yaml'), '--show-sites');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /PV spinlocks enabled → pv pv_lock_ops/);
  assert.match(r.out, /queued_spin_unlock\s+len 7\s+e8 [0-9a-f ]{11} 66 90/);
  assert.match(r.out, /mutual exclusion/);
  assert.doesNotMatch(r.out, /BROKEN/);
});

test('a REALTIME-hinted guest boots native and says why', () => {
  const r = pvpatch('run', join(ROOT, 'scenarios', 'guest-native.yaml'), '--show-sites', '--json');
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out) as { decision: { flavor: string; reason: string }; sites: { op: string; bytes: string }[] };
  assert.equal(o.decision.flavor, 'native');
  assert.match(o.decision.reason, /KVM_HINTS_REALTIME/);
  assert.ok(o.sites.filter((s) => s.op === 'queued_spin_unlock').every((s) => s.bytes === 'c6 07 00 0f 1f 40 00'));
});

test('0 vCPUs is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 0 }')), /at least 1 vCPU/);
});

test('more vCPUs than the guest supports is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 65 }')), /at most 64 vCPUs/);
});

test('an unknown lock flavor is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 2, flavor: ticket }')), /unknown lock flavor 'ticket'/);
});

test('an over-commit ratio that cannot be built is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 4 }\nhost: { overcommit: 10 }')), /less than one physical CPU/);
  oneLine(pvpatch('run', scenario('guest: { vcpus: 4 }\nhost: { overcommit: 0 }')), /positive number/);
});

test('pv locks on a host without PV_UNHALT is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 2, flavor: pv }\nhost: { pvUnhalt: false }')), /needs a KVM host with PV_UNHALT/);
});
