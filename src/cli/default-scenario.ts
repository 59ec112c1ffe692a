/** Where the bundled scenarios live, and which one `pvpatch run` uses by default. */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const SCENARIO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scenarios');

export function defaultScenarioPath(): string {
  return join(SCENARIO_DIR, 'default.yaml');
}
