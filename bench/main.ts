/**
 * `npm run bench -- <name> [--json]`: runs one benchmark module from bench/<name>.ts (a bare
 * `npm run bench` lists them),
 * prints a table to the terminal, or one JSON object with --json, and writes the JSON to
 * bench-results/<name>.json.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { packageRoot } from '../src/cli/package-root.ts';
import { seedsFromArgs } from './spread.ts';

export interface BenchModule {
  /** One line saying what the benchmark measures. */
  describe: string;
  /** Runs the benchmark; returns a JSON-serialisable result. */
  run(opts: { json: boolean; quick: boolean; seeds?: number }): Promise<Record<string, unknown>>;
  /** Renders the result as a terminal table. */
  table(result: Record<string, unknown>): string;
}

const here = dirname(fileURLToPath(import.meta.url));

/** Bundled (dist/bench, npm run bench) or the sources through tsx: the benchmarks' own extension. */
const ext = import.meta.url.endsWith('.js') ? '.js' : '.ts';

function available(): string[] {
  return readdirSync(here)
    .filter((f) => f.endsWith(ext) && f !== `main${ext}` && !f.startsWith('_'))
    .map((f) => f.slice(0, -ext.length))
    .sort();
}

/** bench/<name>.ts as a benchmark, or undefined for a helper module (lock-machine.ts, programs.ts). */
async function benchModule(name: string): Promise<BenchModule | undefined> {
  const mod = (await import(pathToFileURL(join(here, `${name}${ext}`)).href)) as Partial<BenchModule>;
  return typeof mod.run === 'function' && typeof mod.table === 'function' ? (mod as BenchModule) : undefined;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const quick = args.includes('--quick');
  // --seeds N: seeds per benchmark point, for the benchmarks where seeds matter (bench/spread.ts).
  const seedsAt = args.indexOf('--seeds');
  const seeds = seedsAt >= 0 ? seedsFromArgs(args) : undefined;
  const names = args.filter((a, i) => !a.startsWith('--') && !(seedsAt >= 0 && i === seedsAt + 1));
  const modules = new Map<string, BenchModule>();
  for (const n of available()) {
    const m = await benchModule(n);
    if (m !== undefined) modules.set(n, m);
  }
  if (names.length === 0) {
    // Each benchmark takes from seconds to minutes: a bare `npm run bench` says what there is.
    console.log('usage: npm run bench -- <name> [--json] [--quick] [--seeds N]\n\nbenchmarks:');
    for (const [n, m] of modules) console.log(`  ${n.padEnd(10)} ${m.describe}`);
    return 0;
  }
  for (const n of names) {
    if (!modules.has(n)) {
      console.error(`bench: unknown benchmark '${n}' (available: ${[...modules.keys()].join(', ')})`);
      return 2;
    }
  }
  const outDir = join(packageRoot(), 'bench-results');
  for (const name of names) {
    const mod = modules.get(name)!;
    if (!json) console.error(`bench ${name}: ${mod.describe}`);
    const result = await mod.run({ json, quick, ...(seeds !== undefined ? { seeds } : {}) });
    if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
    if (json) console.log(JSON.stringify(result));
    else console.log(mod.table(result));
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
