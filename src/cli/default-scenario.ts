/** Where the bundled scenarios live, and which one `pvpatch run` uses by default. */
import { join } from 'node:path';
import { packageRoot } from './package-root.ts';

export const SCENARIO_DIR = join(packageRoot(), 'scenarios');

export function defaultScenarioPath(): string {
  return join(SCENARIO_DIR, 'default.yaml');
}
