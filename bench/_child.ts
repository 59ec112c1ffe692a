/**
 * How a benchmark starts a child process of its own (bench/_*.ts): the bundled .js beside it
 * when the benchmark runs from dist/bench (npm run bench), else the TypeScript file through tsx.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** node arguments that run bench/<name> with `args`. */
export function childArgs(name: string, ...args: string[]): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  return import.meta.url.endsWith('.js') ? [join(here, `${name}.js`), ...args] : ['--import', 'tsx', join(here, `${name}.ts`), ...args];
}
