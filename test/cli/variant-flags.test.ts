// --variant (a stock broken variant as the switch protocol) and --protocol-file on `check`: the
// report names what was checked, the replay command carries it and reproduces the violation,
// and flags that cannot apply are one line each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'pvpatch.js');
const TPB = join(ROOT, 'scenarios', 'text-poke-bp-guest.yaml');

function pvpatch(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: ROOT, env: { ...process.env, PVPATCH_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function oneLineError(r: { code: number | null; err: string }, pattern: RegExp): void {
  assert.equal(r.code, 2, r.err);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.match(r.err, pattern);
}

/** The words of a replay command (single-quoted words unquoted), without `pvpatch`. */
function words(cmd: string): string[] {
  return [...cmd.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!).slice(1);
}

test('check --variant no-sync: the JSON names the variant, and its replay command (with --variant) reproduces the violation', () => {
  const r = pvpatch('check', TPB, '--variant', 'no-sync', '--strategy', 'pct', '--executions', '20', '--workers', '1', '--json');
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out) as { verdict: string; variant?: string; counterexample: { replay: string; check: { step: number } } };
  assert.equal(j.verdict, 'violation');
  assert.equal(j.variant, 'no-sync');
  assert.match(j.counterexample.replay, /--variant no-sync/);
  const again = pvpatch(...words(j.counterexample.replay), '--json');
  assert.equal(again.code, 1, again.err);
  const run = JSON.parse(again.out) as { hazards: { kind: string }[] };
  assert.equal(run.hazards[0]?.kind, 'cmc-unsynchronized');
});

test('the same scenario without a variant is clean: the variant, not the scenario, is the bug', () => {
  const r = pvpatch('check', TPB, '--strategy', 'pct', '--executions', '20', '--workers', '1', '--json');
  assert.equal(r.code, 0, r.err);
  assert.equal((JSON.parse(r.out) as { verdict: string }).verdict, 'bounded-clean');
});

test('check --protocol-file runs a user\'s protocol module, in workers too, and the replay carries the file', () => {
  const scenario = join(ROOT, 'examples', 'retarget-slowpath.yaml');
  const file = join('examples', 'my-protocol.ts');
  const one = pvpatch('check', scenario, '--protocol-file', file, '--executions', '12', '--seed', '1', '--workers', '1', '--json');
  const two = pvpatch('check', scenario, '--protocol-file', file, '--executions', '12', '--seed', '1', '--workers', '2', '--json');
  assert.equal(one.code, 1, one.err);
  const a = JSON.parse(one.out) as { verdict: string; protocolFile?: string; counterexample?: { replay: string }; elapsedSeconds?: number };
  assert.equal(a.verdict, 'violation');
  assert.equal(a.protocolFile, file);
  assert.match(a.counterexample!.replay, /--protocol-file examples\/my-protocol\.ts/);
  const strip = (s: string) => JSON.stringify({ ...JSON.parse(s), elapsedSeconds: 0, seconds: 0, perSecond: 0 });
  assert.equal(strip(one.out), strip(two.out));
});

test('a variant of another protocol, a variant with --protocol-file, and --variant on a machine scenario are one line each', () => {
  oneLineError(pvpatch('check', TPB, '--variant', 'no-barrier', '--protocol', 'text-poke-bp', '--executions', '1'), /no-barrier is a v2 variant, but the protocol is text-poke-bp/);
  oneLineError(pvpatch('check', TPB, '--variant', 'no-sync', '--protocol-file', 'examples/my-protocol.ts', '--executions', '1'), /not both/);
  oneLineError(pvpatch('check', join(ROOT, 'scenarios', 'cmc-no-sync.yaml'), '--variant', 'no-sync', '--executions', '1'), /only guest scenarios/);
  oneLineError(pvpatch('run', join(ROOT, 'scenarios', 'cmc-no-sync.yaml'), '--variant', 'no-sync'), /--variant does not apply/);
  oneLineError(pvpatch('check', TPB, '--variant', 'bogus'), /bogus/);
});
