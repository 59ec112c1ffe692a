/**
 * The package's own directory, found from this module's URL whether it runs from src/ (through
 * tsx) or bundled into dist/: the scenarios and the kernel cache are located from it.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'scenarios'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`pvpatch: cannot find the package directory above ${fileURLToPath(from)}`);
    dir = up;
  }
}
