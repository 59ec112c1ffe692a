// The fuzz suite runs the CLI in-process; these few cases run the real `pvpatch` process to check
// that its exit code and stderr are the in-process ones (bin/pvpatch.js → src/cli/entry.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../../src/cli/main.ts';
import { REPO, SCENARIOS, scratch } from './fuzz-support.ts';

const work = scratch('process');
after(() => work.clean());
const BIN = join(REPO, 'bin', 'pvpatch.js');
const CMC = join(SCENARIOS, 'cmc-no-sync.yaml');

const cases: string[][] = [
  ['run', CMC, '--max-instructions', '50'],
  ['run', CMC],
  ['run', CMC, '--schedule', 's0*999999999', '--json'],
  ['run', CMC, '--trace-out', join(work.dir, 'missing', 't.json')],
  ['run', join(work.dir, 'none.yaml'), '--json'],
  ['help', 'nosuch'],
];

test('the pvpatch process exits and prints as the in-process CLI does', async () => {
  for (const args of cases) {
    const p = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, PVPATCH_DEBUG: '' } });
    const r = await runCli(args);
    assert.equal(p.status, r.code, `exit code of pvpatch ${args.join(' ')}: ${p.stderr}`);
    assert.equal(p.stderr, r.stderr, `stderr of pvpatch ${args.join(' ')}`);
    if (r.code === 2) assert.equal(p.stderr.trim().split('\n').length, 1);
    if (args.includes('--json')) assert.deepEqual(JSON.parse(p.stdout), JSON.parse(r.stdout));
  }
  assert.deepEqual(readdirSync(work.dir), [], 'no stray file');
});
