#!/usr/bin/env node
// A/B of the explorer's speed rows (bench/explore.ts speedRows) in one run: this tree against a
// git ref (default main), both built with esbuild, run alternately `rounds` times so that both
// sides meet the same load. The ref's sources are measured with this tree's bench/explore.ts
// (same rows, same sizes), so the ref must build with it. Output: one JSON object per run on
// stdout, then a table of each row's rates (A = the ref, B = this tree; one value per round).
//   node scripts/bench-explore-ab.mjs [--ref main] [--seconds 1] [--rounds 2]
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
};
const ref = flag('ref', 'main');
const seconds = Number(flag('seconds', '1'));
const rounds = Number(flag('rounds', '2'));
if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1) {
  console.error('bench-explore-ab: --seconds must be > 0 and --rounds a whole number >= 1');
  process.exit(2);
}

const other = mkdtempSync(join(tmpdir(), 'pvpatch-ab-'));
try {
  try {
    execFileSync('sh', ['-c', `git -C "${root}" archive "${ref}" | tar -x -C "${other}"`], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    console.error(`bench-explore-ab: cannot read git ref '${ref}'`);
    process.exit(2);
  }
  symlinkSync(join(root, 'node_modules'), join(other, 'node_modules'));
  copyFileSync(join(root, 'bench', 'explore.ts'), join(other, 'bench', 'explore.ts'));
  // Each side: its own build (the check worker's bundle), and a harness bundled beside its benches.
  const sides = [['A', other], ['B', root]];
  for (const [, dir] of sides) {
    execFileSync(process.execPath, [join(dir, 'scripts', 'build.mjs')], { stdio: 'inherit' });
    const harness = join(dir, 'dist', 'bench', '_ab-rows.ts');
    writeFileSync(harness, `import { loadavg } from 'node:os';\nimport { speedRows } from '../../bench/explore.ts';\nconst before = loadavg()[0];\nconst rows = await speedRows(${seconds});\nconsole.log(JSON.stringify({ loadBefore: before, loadAfter: loadavg()[0], rows }));\n`);
    await build({ entryPoints: [harness], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile: join(dir, 'dist', 'bench', '_ab-rows.js'), logLevel: 'warning' });
  }
  const results = { A: [], B: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [side, dir] of sides) {
      const out = spawnSync(process.execPath, [join(dir, 'dist', 'bench', '_ab-rows.js')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (out.status !== 0) {
        console.error(`bench-explore-ab: side ${side} (${side === 'A' ? ref : 'this tree'}) failed`);
        process.exit(1);
      }
      const run = JSON.parse(out.stdout.trim().split('\n').at(-1));
      results[side].push(run);
      console.log(JSON.stringify({ side, ref: side === 'A' ? ref : 'HEAD+worktree', round: r + 1, ...run }));
    }
  }
  // The table: a row is scenario, strategy and where it ran (thread or pool of n).
  const key = (x) => `${x.scenario} ${x.strategy} ${'startupSeconds' in x ? `pool ${x.workers}` : 'thread'}`;
  const values = (side, k, f) => results[side].map((run) => run.rows.find((x) => key(x) === k)?.[f] ?? '-').join('/');
  console.log(`\nA = ${ref}, B = this tree; loads ${results.A.map((x) => x.loadBefore.toFixed(1)).join('/')} (A) ${results.B.map((x) => x.loadBefore.toFixed(1)).join('/')} (B)`);
  console.log('| row | A /s | B /s | A warm /s | B warm /s | A warm per CPU s | B warm per CPU s |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const k of results.B[0].rows.map(key)) {
    console.log(`| ${k} | ${values('A', k, 'perSecond')} | ${values('B', k, 'perSecond')} | ${values('A', k, 'warmPerSecond')} | ${values('B', k, 'warmPerSecond')} | ${values('A', k, 'warmPerCpuSecond')} | ${values('B', k, 'warmPerCpuSecond')} |`);
  }
} finally {
  rmSync(other, { recursive: true, force: true });
}
