// `pvpatch run` on guest scenarios: --show-sites prints the patched bytes; bad configuration of
// the guest or host is one clear line and a non-zero exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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

test('pvpatch run (the bundled default): the host revokes REALTIME and the guest switches the four lock ops with v2', () => {
  const r = pvpatch('run');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /PV spinlocks disabled with KVM_HINTS_REALTIME hints → native/);
  // The scenario's SPIN_THRESHOLD is not Linux's: the header says so.
  assert.match(r.out, /^  deviation from Linux 6\.1: SPIN_THRESHOLD 64 \(Linux 6\.1: 1 << 15 = 32768\)/m);
  assert.match(r.out, /pv_lock_ops switch \(v2\): ok, now pv/);
  const phases = [...r.out.matchAll(/step\s+\d+(?: \(\+\d+\))?\s+([a-z0-9-]+)/g)].map((m) => m[1]);
  assert.deepEqual(phases, ['start', 'int3', 'barrier-open', 'flip', 'tails', 'first-bytes', 'done']);
  assert.match(r.out, /hazards: none/);
  assert.doesNotMatch(r.out, /BROKEN/);
});

test('the default switch as JSON: the checks, the switch and the final site bytes', () => {
  const o = JSON.parse(pvpatch('run', '--seed', '3', '--json').out) as { deviations: string[]; switch: { ok: boolean; flavor: string }; locks: { ok: boolean }[]; hazards: unknown[]; sites: { op: string; bytes: string }[] };
  assert.equal(o.deviations.length, 1);
  assert.match(o.deviations[0]!, /^SPIN_THRESHOLD 64 /);
  assert.equal(o.switch.ok, true);
  assert.equal(o.switch.flavor, 'pv');
  assert.ok(o.locks.every((l) => l.ok));
  assert.equal(o.hazards.length, 0);
  assert.ok(o.sites.filter((s) => s.op === 'queued_spin_unlock').every((s) => /^e8 [0-9a-f ]{11} 90$/.test(s.bytes)), 'unlock sites are PV calls now');
  assert.ok(o.sites.filter((s) => s.op === 'vcpu_is_preempted').every((s) => /^e8 [0-9a-f ]{11} 90$/.test(s.bytes)), 'vcpu_is_preempted stayed KVM\'s');
});

test('--show-sites lists every pv-op site with Linux\'s bytes', () => {
  const r = pvpatch('run', join(ROOT, 'scenarios', 'guest-pv.yaml'), '--show-sites');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /PV spinlocks enabled → pv pv_lock_ops/);
  assert.match(r.out, /queued_spin_unlock\s+len 6\s+e8 [0-9a-f ]{11} 90 /);
  assert.match(r.out, /mutual exclusion/);
  assert.doesNotMatch(r.out, /BROKEN/);
});

test('a REALTIME-hinted guest boots native and says why', () => {
  const r = pvpatch('run', join(ROOT, 'scenarios', 'guest-native.yaml'), '--show-sites', '--json');
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out) as { decision: { flavor: string; reason: string }; sites: { op: string; bytes: string }[] };
  assert.equal(o.decision.flavor, 'native');
  assert.match(o.decision.reason, /KVM_HINTS_REALTIME/);
  assert.ok(o.sites.filter((s) => s.op === 'queued_spin_unlock').every((s) => s.bytes === 'c6 07 00 0f 1f 00'));
});

test('0 vCPUs is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 0 }')), /\/guest\/vcpus: must be >= 1/);
});

test('more vCPUs than the guest supports is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 65 }')), /\/guest\/vcpus: must be <= 64/);
});

test('an unknown lock flavor is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 2, flavor: ticket }')), /unknown lock flavor 'ticket'/);
});

test('an over-commit ratio that cannot be built is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 4 }\nhost: { overcommit: 10 }')), /less than one physical CPU/);
  oneLine(pvpatch('run', scenario('guest: { vcpus: 4 }\nhost: { overcommit: 0 }')), /\/host\/overcommit: must be >= 0\.0625/);
});

test('pv locks on a host without PV_UNHALT is one line', () => {
  oneLine(pvpatch('run', scenario('guest: { vcpus: 2, flavor: pv }\nhost: { pvUnhalt: false }')), /needs a KVM host with PV_UNHALT/);
});

test('pvpatch run --seeds sweeps a guest scenario with each protocol and reports the count; --json gives the failing list', () => {
  for (const protocol of ['v2', 'v1', 'text-poke-bp']) {
    const r = pvpatch('run', '--seeds', '8', '--protocol', protocol);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, new RegExp(`8 seeds \\(1\\.\\.8\\), one boot, a fork and a run per seed, switch protocol ${protocol}: 0 failing`));
    assert.match(r.out, /switches completed 8\/8/);
  }
  const j = pvpatch('run', '--seeds', '3', '--seed', '5', '--json');
  assert.equal(j.code, 0, j.err);
  const o = JSON.parse(j.out);
  assert.deepEqual([o.protocol, o.seeds, o.failing], ['v2', { from: 5, count: 3 }, []]);
});

test('pvpatch run --corrupt-site: the switch refuses the site, names it and its bytes, exits 1, and the guest finishes', () => {
  const r = pvpatch('run', '--corrupt-site', '1');
  assert.equal(r.code, 1, r.err);
  assert.match(r.out, /pv_lock_ops switch \(v2\): FAILED: unexpected-bytes \(native -> pv refused: queued_spin_unlock site at 0x[0-9a-f]+ holds \[c6 07 00 66 66 90\], not the native bytes \[c6 07 00 0f 1f 00\]\), now native/);
  assert.match(r.out, /tasks finished: 4\/4/);
  oneLine(pvpatch('run', '--corrupt-site', '999'), /--corrupt-site 999: the guest has sites 0\.\.\d+, not 999/);
  oneLine(pvpatch('run', '--protocol', 'v3'), /protocol/);
});

test('a v1 sweep with more NMIs reports the seeds where the atomic-switch oracle caught v1\'s NMI window, with the command that replays each', () => {
  const p = scenario(readFileSync(join(ROOT, 'scenarios', 'default.yaml'), 'utf8').replace('nmis: 3', 'nmis: 30'));
  const r = pvpatch('run', p, '--seeds', '14', '--protocol', 'v1');
  assert.equal(r.code, 1, r.err);
  // Seed 4 since random's bursts became the default for `run` (seeds 4, 9 and 10 of 14 catch it; 13 did per step).
  assert.match(r.out, /seed 4: non-atomic-switch at step \d+ — vCPU \d started the native unlock .* still runs the PV slowpath/);
  assert.match(r.out, new RegExp(`replay: pvpatch run ${p.replace(/[.]/g, '\\.')} --seed 4 --protocol v1`));
  const one = pvpatch('run', p, '--seed', '4', '--protocol', 'v1');
  assert.equal(one.code, 1);
  assert.match(one.out, /step \d+: non-atomic-switch: vCPU \d started the native unlock/);
});

test('workload.extraSites in a guest scenario: 91 cold sites more, switched with the live ones', () => {
  const p = scenario(readFileSync(join(ROOT, 'scenarios', 'default.yaml'), 'utf8').replace('irqLockEvery: 4 }', 'irqLockEvery: 4, extraSites: 91 }'));
  const r = pvpatch('run', p, '--json');
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out);
  assert.equal(o.sites.length, 100);
  assert.equal(o.switch.flavor, 'pv');
});

test('a guest run writes its schedule and trace; replaying the schedule gives the same run, switch included', () => {
  const sched = join(dir, 'default.sched'), trace = join(dir, 'default.trace.json');
  const a = pvpatch('run', '--seed', '4', '--json', '--schedule-out', sched, '--trace-out', trace);
  assert.equal(a.code, 0, a.err);
  const events = JSON.parse(readFileSync(trace, 'utf8')).traceEvents as { name: string }[];
  assert.ok(events.some((e) => e.name.startsWith('exception')) || events.length > 10, 'the trace has the run\'s events');
  const b = pvpatch('run', '--seed', '4', '--json', '--schedule', readFileSync(sched, 'utf8').trim());
  assert.equal(b.code, 0, b.err);
  const [x, y] = [JSON.parse(a.out), JSON.parse(b.out)];
  for (const k of ['instructions', 'locks', 'stats', 'switch', 'sites']) assert.deepEqual(y[k], x[k], k);
  oneLine(pvpatch('run', '--seeds', '2', '--trace-out', trace), /write one run/);
});

test('the default run shows the workload before the hint, while the switch ran, and after it', () => {
  const r = pvpatch('run', '--json');
  const t = JSON.parse(r.out).switch.timeline;
  assert.ok(t.atHint.step >= 2000 && t.switched.step > t.atHint.step && t.end.step >= t.switched.step);
  assert.ok(t.atHint.acquisitions > 0 && t.switched.acquisitions > t.atHint.acquisitions, 'the workload kept taking locks through the switch');
  const text = pvpatch('run').out;
  assert.match(text, /until the hint +0\.\.\d+ +\d+/);
  assert.match(text, /hint → switched +\d+\.\.\d+ +\d+/);
  assert.match(text, /after the switch +\d+\.\.\d+ +\d+/);
});

test('--corrupt-site on a scenario with no switch is one line, not ignored', () => {
  oneLine(pvpatch('run', join(ROOT, 'scenarios', 'guest-pv.yaml'), '--corrupt-site', '1'), /--corrupt-site needs a switch section/);
});

test('a guest sweep forks one boot per seed; each failing seed\'s replay line keeps --protocol, --strategy and --corrupt-site and reproduces it; the JSON has every seed\'s final state', () => {
  const r = pvpatch('run', '--seeds', '2', '--seed', '3', '--corrupt-site', '1', '--strategy', 'random', '--protocol', 'v1', '--json');
  assert.equal(r.code, 1, r.err);
  const o = JSON.parse(r.out) as { failing: { seed: number; check: string; replay: string }[]; runs: { seed: number; verdict: string; finalState: string }[] };
  assert.deepEqual(o.failing.map((f) => [f.seed, f.check]), [[3, 'unexpected-bytes'], [4, 'unexpected-bytes']]);
  assert.match(o.failing[0]!.replay, /^pvpatch run \S+default\.yaml --seed 3 --protocol v1 --strategy random --corrupt-site 1$/);
  assert.deepEqual(o.runs.map((x) => x.seed), [3, 4]);
  for (const x of o.runs) assert.match(x.finalState, /^locks .*; pv_ops native; sites [0-9a-f]{16}$/);
  const args = o.failing[0]!.replay.split(' ').slice(1);
  const again = pvpatch(...args, '--json');
  assert.equal(again.code, 1, again.err);
  const one = JSON.parse(again.out) as { finalState: string; switch: { reason: string } };
  assert.equal(one.finalState, o.runs[0]!.finalState, 'the replay line reproduces the seed\'s final state');
  assert.equal(one.switch.reason, 'unexpected-bytes');
});
