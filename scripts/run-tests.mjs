#!/usr/bin/env node
// Runs every test/**/*.test.ts file with node's built-in test runner (through tsx),
// so the runner's closing summary is printed. Node 20 has no glob support in --test.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

// `--no-download` (npm test -- --no-download) = PVPATCH_NO_DOWNLOAD=1: the tiers that would fetch a
// Debian kernel, its symbols or QEMU (~360 MB) use only what is cached and otherwise skip.
const args = process.argv.slice(2);
const noDownload = args.includes('--no-download');
const filter = args.filter((a) => a !== '--no-download');
let files = collect('test');
if (filter.length > 0) files = files.filter((f) => filter.some((s) => f.includes(s)));
// A test file outside test/ named by its path (the guard's own test runs a fixture this way).
for (const f of filter) if (f.endsWith('.ts') && !files.includes(f) && existsSync(f) && statSync(f).isFile()) files.push(f);
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// Every test file's process counts the reports it wrote past a replaced stdout (they never reach
// this summary): scripts/test-report-guard.mjs, its ledger a file here.
const ledgerDir = mkdtempSync(join(tmpdir(), 'pvpatch-tests-'));
const ledger = join(ledgerDir, 'lost-reports.jsonl');
const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', './scripts/test-report-guard.mjs', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  env: { ...process.env, PVPATCH_TEST_LEDGER: ledger, ...(noDownload ? { PVPATCH_NO_DOWNLOAD: '1' } : {}) },
});
const lost = existsSync(ledger) ? readFileSync(ledger, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
rmSync(ledgerDir, { recursive: true, force: true });
for (const l of lost) console.error(`run-tests: ${l.lost} test report(s) of ${l.file} never reached the runner (written while process.stdout.write was replaced): those tests are missing from the summary above`);
process.exit(lost.length > 0 ? 1 : r.status ?? 1);
