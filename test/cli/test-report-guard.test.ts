// scripts/run-tests.mjs fails a run in which a test file's reports were written to a replaced
// process.stdout.write (its summary would silently miss those tests), and names the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('a test file that swallows its own reports fails the run, with one line naming it', () => {
  const fixture = 'test/helpers/fixtures/swallows-reports.ts';
  // A fresh runner: not a child of this file's runner (NODE_TEST_CONTEXT), with its own ledger.
  const { NODE_TEST_CONTEXT: _c, PVPATCH_TEST_LEDGER: _l, ...env } = process.env;
  const r = spawnSync(process.execPath, ['scripts/run-tests.mjs', fixture], { encoding: 'utf8', env });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /run-tests: \d+ test report\(s\) of .*swallows-reports\.ts never reached the runner/);
});
