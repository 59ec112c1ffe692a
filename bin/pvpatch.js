#!/usr/bin/env node
// Entry point: loads the TypeScript CLI through tsx's loader, so no build step is needed.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/entry.ts');
