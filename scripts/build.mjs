#!/usr/bin/env node
// The build step (issue 12): bundles the CLI and every benchmark with esbuild into dist/, so they
// run as plain JavaScript instead of through tsx's per-file transform. Bundling lets esbuild inline
// `const enum` members across files (tsx leaves each one a property load) and cuts start-up.
// npm runs it on `npm ci`/`npm install` (prepare), before `npm test` and `npm run bench`.
// Dependencies stay external: dist/ resolves them from node_modules like the sources do.
import { build } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
};

rmSync(join(root, 'dist'), { recursive: true, force: true });
const benches = readdirSync(join(root, 'bench')).filter((f) => f.endsWith('.ts')).map((f) => `bench/${f}`);
await Promise.all([
  // Split at the commands' dynamic imports (src/cli/commands/definitions.ts): `pvpatch --help`
  // loads dist/cli.js and no chunk that reaches iced-x86. Chunks sit beside cli.js, so that
  // import.meta.url-relative paths (the check worker, the package root) mean the same in each.
  build({ ...common, entryPoints: { cli: 'src/cli/entry.ts' }, outdir: 'dist', splitting: true, chunkNames: 'cli-[name]-[hash]' }),
  // The worker threads of `pvpatch check --workers` (src/check/pool.ts) load this bundle.
  build({ ...common, entryPoints: ['src/cli/check-worker.ts'], outfile: 'dist/check-worker.js' }),
  // One self-contained bundle per benchmark (bench/main.ts imports them by name at run time).
  build({ ...common, entryPoints: benches, outdir: 'dist/bench' }),
]);
