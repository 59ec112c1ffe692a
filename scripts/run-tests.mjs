#!/usr/bin/env node
// Runs every test/**/*.test.ts file with node's built-in test runner (through tsx),
// so the runner's closing summary is printed. Node 20 has no glob support in --test.
import { readdirSync, statSync } from 'node:fs';
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
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  env: noDownload ? { ...process.env, PVPATCH_NO_DOWNLOAD: '1' } : process.env,
});
process.exit(r.status ?? 1);
