// `pvpatch check` and `pvpatch merge`: what was explored and the verdict; a counterexample whose
// replay command reproduces it exactly; the same JSON for any worker count and for merged shards;
// herd-style --expect over observed values; bad input as one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'pvpatch.js');
const SB = join(ROOT, 'scenarios', 'store-buffering.yaml');
const NO_SYNC = join(ROOT, 'scenarios', 'cmc-no-sync.yaml');
const dir = mkdtempSync(join(tmpdir(), 'pvpatch-check-'));

function pvpatch(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, PVPATCH_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function assertOneLineError(r: { code: number | null; err: string }, pattern: RegExp): void {
  assert.equal(r.code, 2, r.err);
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.err}`);
  assert.match(lines[0]!, /^pvpatch: /);
  assert.match(lines[0]!, pattern);
}

interface Report {
  verdict: string;
  executions: number;
  states: { key: string; count: number }[];
  counterexample?: { schedule: string; replay: string; steps: number; preemptions: number; check: { check: string; step: number; hazard?: { kind: string } } };
  expect?: { holds: boolean };
}

test('check finds the no-sync rewrite, shrinks it, and its replay command reproduces the counterexample exactly', () => {
  const r = pvpatch('check', NO_SYNC, '--executions', '10', '--seed', '7', '--workers', '1', '--json');
  assert.equal(r.code, 1, r.err);
  const o = JSON.parse(r.out) as Report;
  assert.equal(o.verdict, 'violation');
  assert.equal(o.executions, 10);
  const cx = o.counterexample!;
  assert.equal(cx.preemptions, 0);
  assert.equal(cx.check.hazard?.kind, 'cmc-unsynchronized');
  const m = /^pvpatch run (\S+) --schedule '([^']*)' --seed 7$/.exec(cx.replay);
  assert.ok(m, cx.replay);
  assert.equal(m[2], cx.schedule);
  const replay = pvpatch('run', m[1]!, '--schedule', m[2]!, '--json');
  assert.equal(replay.code, 1);
  const run = JSON.parse(replay.out) as { schedule: string; steps: number; hazards: { kind: string }[] };
  assert.equal(run.schedule, cx.schedule, 'the replay makes exactly the counterexample\'s decisions');
  assert.equal(run.steps, cx.steps);
  assert.equal(run.hazards[0]?.kind, 'cmc-unsynchronized');
  // The text form names the check at its step and the same command.
  const text = pvpatch('check', NO_SYNC, '--executions', '10', '--seed', '7', '--workers', '1');
  assert.match(text.out, /verdict: violation: 10 of 10 executions broke a check/);
  assert.match(text.out, new RegExp(`check hazard fired at step ${cx.check.step} on vCPU 0:\\n\\s+cmc-unsynchronized`));
  assert.ok(text.out.includes(`replay: ${cx.replay}`));
});

test('--workers 1 and --workers 2 print identical JSON', () => {
  const args = ['check', NO_SYNC, '--strategy', 'pct', '--executions', '24', '--json'];
  const one = pvpatch(...args, '--workers', '1');
  const two = pvpatch(...args, '--workers', '2');
  assert.equal(one.code, 1, one.err);
  assert.equal(two.code, 1, two.err);
  assert.equal(two.out, one.out);
});

test('shards 0..2 merged give the unsharded run\'s JSON, expectation included', () => {
  const common = ['--executions', '30', '--workers', '1', '--json', '--expect', 'exists (0:rax=0 /\\ 1:rax=0)'];
  const files = [0, 1, 2].map((i) => {
    const r = pvpatch('check', SB, '--shard', `${i}/3`, ...common);
    assert.equal(r.code, 0, r.err);
    const f = join(dir, `shard-${i}.json`);
    writeFileSync(f, r.out);
    return f;
  });
  const whole = pvpatch('check', SB, ...common);
  const merged = pvpatch('merge', ...files, '--json');
  assert.equal(merged.code, 0, merged.err);
  assert.equal(merged.out, whole.out);
  assertOneLineError(pvpatch('merge', files[0]!, files[2]!), /shard 1\/3 missing/);
});

test('store buffering: both loads can read 0 (exists holds), and a forall that fails exits 1', () => {
  // 100 executions: random reaches both-1 in about 4% of runs (both stores drain before either load),
  // so 40 could miss it (about 1 in 5 seed ranges did since bursts changed random's stream).
  const r = pvpatch('check', SB, '--executions', '100', '--workers', '1', '--expect', 'exists (0:rax=0 /\\ 1:rax=0)');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /final states \(4 distinct\)/);
  assert.match(r.out, /expect exists \(0:rax=0 \/\\ 1:rax=0\): holds over the final states of the 100 executions run/);
  const f = pvpatch('check', SB, '--executions', '40', '--workers', '1', '--json', '--expect', 'forall (0:rax=1)');
  assert.equal(f.code, 1);
  assert.equal((JSON.parse(f.out) as Report).expect?.holds, false);
});

test('a wall-clock budget says the count depends on the machine', () => {
  const r = pvpatch('check', SB, '--budget', '0.5', '--workers', '1');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /budget 0\.5 s of wall-clock \(how many executions fit depends on this machine; the result is that of the [\d,]+ that ran\)/);
});

test('run --schedule-file replays a schedule from a file, and run --json shows the observed values', () => {
  const f = join(dir, 'sb.schedule');
  writeFileSync(f, 's0 s1 s0 s1 s0 s1 d0 d1\n');
  const r = pvpatch('run', SB, '--schedule-file', f, '--json');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual((JSON.parse(r.out) as { observed: unknown }).observed, { '0:rax': '0', '1:rax': '0', x: '1', y: '1' });
});

test('check --strategy dpor proves store buffering\'s outcomes: exhausted, four final states, the both-0 outcome exists', () => {
  const r = pvpatch('check', SB, '--strategy', 'dpor', '--json', '--expect', 'exists (0:rax=0 /\\ 1:rax=0)');
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out) as Report & { complete: boolean };
  assert.equal(o.verdict, 'exhausted');
  assert.equal(o.complete, true);
  assert.deepEqual(o.states.map((s) => s.key.split('; ').slice(0, 2).join(' ')).sort(), ['0:rax=0 1:rax=0', '0:rax=0 1:rax=1', '0:rax=1 1:rax=0', '0:rax=1 1:rax=1']);
  assert.equal(o.expect?.holds, true);
  assertOneLineError(pvpatch('check', SB, '--strategy', 'dpor', '--shard', '0/2'), /--shard splits seeded strategies; dpor explores one tree/);
});

test('a guest scenario is checked on forks of one boot: its protocol phases are the coverage', () => {
  const r = pvpatch('check', '--executions', '2', '--workers', '1', '--json');
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out) as Report & { coverage: { key: string; count: number }[] };
  assert.equal(o.verdict, 'bounded-clean');
  assert.match(o.states[0]!.key, /^locks .*; pv_ops pv; sites [0-9a-f]{16}$/);
  assert.deepEqual(o.coverage.find((c) => c.key === 'v2 flip'), { key: 'v2 flip', count: 2 });
});

test('bad input is one line: a bad shard, two budgets, a bad condition', () => {
  assertOneLineError(pvpatch('check', SB, '--shard', '3/3'), /--shard must be i\/n with 0 ≤ i < n/);
  assertOneLineError(pvpatch('check', SB, '--budget', '1', '--executions', '5'), /not both/);
  assertOneLineError(pvpatch('check', SB, '--executions', '2', '--expect', 'exists (z=1)'), /names 'z', which the final states do not hold/);
});

test('check --schedule-file checks one recorded schedule and shrinks it', () => {
  const f = join(dir, 'pct.schedule');
  writeFileSync(f, 's0*5687 s1*4 d1*3 s0*2\n');
  const r = pvpatch('check', NO_SYNC, '--schedule-file', f, '--json');
  assert.equal(r.code, 1, r.err);
  const o = JSON.parse(r.out) as Report & { strategy: string };
  assert.equal(o.strategy, 'replay');
  assert.equal(o.executions, 1);
  assert.equal(o.counterexample?.schedule, 's1*4 d1 s0');
  assert.equal(o.counterexample?.preemptions, 0);
  assertOneLineError(pvpatch('check', NO_SYNC, '--strategy', 'random', '--preemptions', '2'), /random has no such bound/);
});
