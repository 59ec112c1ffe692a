/**
 * scripts/get-kernel.sh takes the build pinned in scripts/kernel-pins.txt over a release the cache
 * already names as the series' current one (CI must not move to a new Debian build by itself), and
 * `--newest` ignores the pin. Runs against a cache of empty READY directories, never downloads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const script = join(import.meta.dirname, '..', '..', 'scripts', 'get-kernel.sh');
const pins = readFileSync(join(import.meta.dirname, '..', '..', 'scripts', 'kernel-pins.txt'), 'utf8');

function pinned(series: string, flavour: string): string {
  const line = pins.split('\n').find((l) => !l.startsWith('#') && l.trim().split(/\s+/).slice(0, 2).join(' ') === `${series} ${flavour}`);
  assert.ok(line, `no pin for ${series} ${flavour}`);
  return line.trim().split(/\s+/)[2]!;
}

function fakeCache(releases: string[], current: string): string {
  const root = mkdtempSync(join(tmpdir(), 'pvpatch-pin-'));
  for (const r of releases) {
    mkdirSync(join(root, 'kernel', r), { recursive: true });
    writeFileSync(join(root, 'kernel', r, 'READY'), 'test\n');
  }
  writeFileSync(join(root, 'kernel', 'current-6.1-cloud'), `${current}\n`);
  return root;
}

function getKernel(root: string, ...args: string[]) {
  return spawnSync('bash', [script, ...args], { encoding: 'utf8', env: { ...process.env, PVPATCH_CACHE: root, PVPATCH_NO_DOWNLOAD: '1' } });
}

test('the pinned 6.1 build wins over the cached current release', () => {
  const pin = pinned('6.1', 'cloud');
  const root = fakeCache([pin, '6.1.0-1-cloud-amd64'], '6.1.0-1-cloud-amd64');
  try {
    const r = getKernel(root);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), join(root, 'kernel', pin));
    assert.equal(readFileSync(join(root, 'kernel', 'current-6.1-cloud'), 'utf8').trim(), pin);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('--newest ignores the pin and the cached release (and, without downloads, says what it cannot fetch)', () => {
  const pin = pinned('6.1', 'cloud');
  const root = fakeCache([pin, '6.1.0-1-cloud-amd64'], '6.1.0-1-cloud-amd64');
  try {
    const r = getKernel(root, '--newest');
    assert.notEqual(r.stdout.trim(), join(root, 'kernel', '6.1.0-1-cloud-amd64'));
    // With the pin and the pointer both ignored, the newest build comes from apt: on a machine
    // whose apt index lists a newer one, downloads are refused; otherwise the pin is the newest.
    if (r.status === 0) assert.equal(r.stdout.trim(), join(root, 'kernel', pin));
    else assert.match(r.stderr, /PVPATCH_NO_DOWNLOAD=1 forbids|no linux-image|apt-cache not found/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
