// `pvpatch check` on a real-kernel scenario explores the real Linux 6.1 code (src/cli/scenario/
// linux-subject.ts): each execution a fork of one boot of the Debian vmlinux, judged by
// src/linux/judge.ts. Before, check built the imitation from the same file and said nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { linuxKernel } from '../linux/fixture.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'pvpatch.js');
const V2 = join(import.meta.dirname, '..', '..', 'scenarios', 'linux-6.1-v2.yaml');

function check(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'check', ...args], { encoding: 'utf8', env: { ...process.env, PVPATCH_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

interface CheckJson { executions: number; violations: number; verdict: string; states: { key: string }[]; coverage: { key: string }[] }

for (const [strategy, workers] of [['random', '2'], ['pct', '1']] as const) {
  test(`check --strategy ${strategy} --workers ${workers} on scenarios/linux-6.1-v2.yaml runs the real kernel's code: bounded-clean, v2 switched every execution to PV`, (t) => {
    const { kernel, reason } = linuxKernel();
    if (kernel === undefined) return t.skip(reason);
    const r = check(V2, '--strategy', strategy, '--executions', '2', '--workers', workers, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as CheckJson;
    assert.equal(j.executions, 2);
    assert.equal(j.verdict, 'bounded-clean');
    for (const s of j.states) assert.match(s.key, /; flavour pv; sites [0-9a-f]{16}$/, 'the real guest\'s final state');
    const covered = j.coverage.map((c) => c.key);
    for (const f of ['_raw_spin_lock', '_raw_spin_unlock', 'native_queued_spin_lock_slowpath', 'switch finished']) assert.ok(covered.includes(f), `${f} in ${covered.join(', ')}`);
  });
}

test('check on an over-committed real-kernel scenario says in one line why its strategies do not apply', (t) => {
  const { kernel, reason } = linuxKernel();
  if (kernel === undefined) return t.skip(reason);
  const r = check(join(import.meta.dirname, '..', '..', 'scenarios', 'linux-6.1.yaml'), '--executions', '2');
  assert.equal(r.code, 2, r.out);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.match(r.err, /host\.pcpus \/ host\.overcommit need the timed strategy .*pvpatch run .*--seeds N/);
});
