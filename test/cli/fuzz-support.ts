/**
 * Shared pieces of the CLI fuzz suite (issue 13): how many cases, the fixed seed, and the one
 * property every case must have, whatever the input: exit 0, 1 or 2; on an error exactly one
 * stderr line `pvpatch: …` (and with --json one JSON error object on stdout); never a stack
 * trace; no temporary or half-written output file left behind.
 *
 * The CLI runs in-process (runCli), so thousands of cases fit in seconds; fuzz-process.test.ts
 * spawns the real `pvpatch` for a handful to check that the process behaves the same.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliResult } from '../../src/cli/main.ts';

/** Cases per input kind: at least 2,000 in `npm test`, more with PVPATCH_FUZZ_RUNS. */
export const FUZZ_RUNS = Math.max(1, Number(process.env.PVPATCH_FUZZ_RUNS ?? 2000) || 2000);

/** Every fuzz property runs from this seed, so a failure is the same failure on every machine. */
export const FUZZ_SEED = 13;

export const REPO = join(import.meta.dirname, '..', '..');
export const SCENARIOS = join(REPO, 'scenarios');

/** A scratch directory for one suite, removed by `clean()`. */
export function scratch(name: string): { dir: string; clean(): void } {
  const dir = mkdtempSync(join(tmpdir(), `pvpatch-fuzz-${name}-`));
  return { dir, clean: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The property: what any input may produce. `args` is shown when it fails. */
export function assertClean(r: CliResult, args: readonly string[]): void {
  const why = `pvpatch ${args.map((a) => JSON.stringify(a)).join(' ')}\n--- exit ${r.code}\n--- stderr\n${r.stderr}--- stdout\n${r.stdout.slice(0, 2000)}`;
  assert.ok(r.code === 0 || r.code === 1 || r.code === 2, `exit code ${r.code} (0, 1 or 2 only)\n${why}`);
  assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+/, `no stack trace\n${why}`);
  assert.doesNotMatch(r.stderr, /internal error/, `no internal error\n${why}`);
  if (r.code === 2) {
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `one stderr line on an error\n${why}`);
    assert.match(lines[0]!, /^pvpatch: \S/, `the line says pvpatch: …\n${why}`);
    if (args.includes('--json')) {
      const last = r.stdout.trim().split('\n').at(-1) ?? '';
      const o = JSON.parse(last) as { error?: { message?: string } } & Record<string, unknown>;
      assert.ok(o.error !== undefined, `--json prints a JSON object with the error on stdout\n${why}`);
    }
  } else {
    // Without an error stderr stays quiet, but for the one line that says where an output file went.
    const notices = /^pvpatch: .* written to \S+/;
    assert.equal(r.stderr.split('\n').filter((l) => l !== '' && !notices.test(l)).length, 0, `no stderr without an error (but 'written to' notices)\n${why}`);
  }
}

/** No temporary file (`name.tmp-<pid>`) anywhere under `dir`. */
export function assertNoLeftovers(dir: string, args: readonly string[]): void {
  const stray = readdirSync(dir, { recursive: true }).map(String).filter((f) => /\.tmp-\d+$/.test(f));
  assert.deepEqual(stray, [], `temporary files left behind by pvpatch ${args.join(' ')}`);
}
