// `pvpatch --help` starts fast (issue 12: under 0.5 s): the bundle's entry and every chunk it
// imports statically leave out iced-x86 (its wasm takes ~0.3 s to load); the commands' chunks,
// loaded by dynamic import when a command runs, bring it. Reads the build (npm test builds first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const DIST = join(import.meta.dirname, '..', '..', 'dist');

/** Every file the module imports statically (relative chunks), transitively, with itself. */
function staticClosure(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = readFileSync(join(DIST, file), 'utf8');
  for (const m of text.matchAll(/^import\s(?:[^'"]*?\sfrom\s)?["']\.\/([^"']+)["'];?$/gm)) staticClosure(m[1]!, seen);
  return seen;
}

const importsIced = (file: string) => /^import\s[^;]*["']iced-x86["']/m.test(readFileSync(join(DIST, file), 'utf8'));

test('the CLI bundle loads iced-x86 only when a command runs, not for --help', (t) => {
  if (!existsSync(join(DIST, 'cli.js'))) {
    t.skip('no dist/cli.js: run `npm run build` (npm test does)');
    return;
  }
  const eager = staticClosure('cli.js');
  assert.deepEqual([...eager].filter(importsIced), [], 'chunks loaded by --help');
  const text = readFileSync(join(DIST, 'cli.js'), 'utf8') + [...eager].map((f) => readFileSync(join(DIST, f), 'utf8')).join('\n');
  const lazy = [...text.matchAll(/import\(["']\.\/([^"']+)["']\)/g)].map((m) => m[1]!);
  assert.ok(lazy.length >= 5, `the five commands are dynamic imports (${lazy.join(', ')})`);
  const withIced = lazy.filter((f) => [...staticClosure(f)].some(importsIced));
  assert.ok(withIced.length >= 3, `run, check and inspect bring the decoder (${withIced.join(', ')})`);
});
