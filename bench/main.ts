/**
 * `npm run bench -- <name> [--json]`: runs one benchmark module from bench/<name>.ts (or all),
 * prints a table to the terminal, or one JSON object with --json, and writes the JSON to
 * bench-results/<name>.json.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
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

function available(): string[] {
  return readdirSync(here)
    .filter((f) => f.endsWith('.ts') && f !== 'main.ts' && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .sort();
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const quick = args.includes('--quick');
  // --seeds N: seeds per benchmark point, for the benchmarks where seeds matter (bench/spread.ts).
  const seedsAt = args.indexOf('--seeds');
  const seeds = seedsAt >= 0 ? seedsFromArgs(args) : undefined;
  const names = args.filter((a, i) => !a.startsWith('--') && !(seedsAt >= 0 && i === seedsAt + 1));
  const all = available();
  const chosen = names.length > 0 ? names : all;
  for (const n of chosen) {
    if (!all.includes(n)) {
      console.error(`bench: unknown benchmark '${n}' (available: ${all.join(', ')})`);
      return 2;
    }
  }
  const outDir = join(here, '..', 'bench-results');
  for (const name of chosen) {
    const mod = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as BenchModule;
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
