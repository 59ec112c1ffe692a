#!/usr/bin/env node
// Entry point: runs the bundled CLI (dist/cli.js, built by scripts/build.mjs on `npm ci` and
// before `npm test`) when it is at least as new as every source file; otherwise (a source edited
// since the last build, or PVPATCH_TSX=1) the TypeScript sources through tsx's loader.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/cli.js', import.meta.url);

function newestSource(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    t = Math.max(t, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return t;
}

function distIsFresh() {
  if (process.env.PVPATCH_TSX === '1' || !existsSync(dist)) return false;
  return statSync(dist).mtimeMs >= newestSource(fileURLToPath(new URL('../src', import.meta.url)));
}

if (distIsFresh()) {
  await import(dist.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/entry.ts');
}
