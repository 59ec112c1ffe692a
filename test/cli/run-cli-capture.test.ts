// runCli captures what its own command prints and nothing else: a write made meanwhile by other
// code of the process (the test runner's reporter, in a CI run) goes to the real stream. Without
// this the runner's report of a test landed in a runCli capture and the test vanished from the
// report (test/cli/bad-input.test.ts, 'a typo in a required key', in a clean-clone CI run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../../src/cli/main.ts';

test('a write from outside the command while runCli waits goes to the real stdout, not the capture', async () => {
  const real: string[] = [];
  const before = process.stdout.write;
  // Strings are what this test looks for; anything else (the runner's own report frames) passes on.
  const fake = function (this: unknown, chunk: string | Uint8Array, ...rest: unknown[]) {
    if (typeof chunk !== 'string') return (before as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    real.push(chunk);
    return true;
  } as typeof process.stdout.write;
  process.stdout.write = fake;
  // What reading it gives back (scripts/test-report-guard.mjs wraps what is assigned).
  const installed = process.stdout.write;
  try {
    // Another task of the process (as the reporter is) writes as soon as runCli has redirected
    // stdout: it polls once per event-loop turn, and the command below waits on a module import
    // (file reads), so the loop turns while the redirect is in place.
    let finished = false;
    let fired = false;
    const other = new Promise<void>((done) => {
      const poll = () => {
        if (finished) return done();
        if (process.stdout.write === installed) return void setImmediate(poll);
        process.stdout.write('from the test runner\n');
        fired = true;
        done();
      };
      setImmediate(poll);
    });
    const r = await runCli(['run', 'scenarios/guest-native.yaml', '--protocol-file', 'examples/my-protocol.ts']);
    finished = true;
    await other;
    assert.ok(fired, 'the command never let the event loop turn while stdout was redirected');
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stdout, /from the test runner/);
    assert.ok(real.includes('from the test runner\n'), `the write reached ${JSON.stringify(real)}`);
  } finally {
    process.stdout.write = before;
  }
});
