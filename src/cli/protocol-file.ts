/**
 * `--protocol-file ./my-protocol.ts`: load a user's protocol module (src/patching/protocol-api.ts)
 * at run time. tsx's tsImport compiles a .ts module (or loads a .js one) without a registered
 * loader, so this works from the bundled CLI (dist/cli.js) as from the sources. The module's
 * default export is a ProtocolFactory, called with the API this process runs, or a Protocol.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tsImport } from 'tsx/esm/api';
import { PROTOCOL_API, protocolShapeError, type Protocol } from '../patching/protocol-api.ts';

/** A protocol module that cannot be used: one line naming the file and what is wrong. */
export class ProtocolFileError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolFileError';
  }
}

/** What --protocol-file loaded: the file (for replay lines) and its protocol. */
export interface ProtocolModule {
  path: string;
  protocol: Protocol;
}

/** Import `path`, take its default export (a factory of the API, or a Protocol) and check its shape. */
export async function loadProtocolFile(path: string): Promise<ProtocolModule> {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new ProtocolFileError(`${path}: no such protocol file`);
  let mod: Record<string, unknown>;
  try {
    mod = (await tsImport(pathToFileURL(abs).href, import.meta.url)) as Record<string, unknown>;
  } catch (err) {
    const first = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    throw new ProtocolFileError(`${path}: cannot load the module: ${first}`);
  }
  // A .ts file outside a "type": "module" package loads as CommonJS: its ES exports are then the
  // properties of the namespace's default (module.exports, marked __esModule).
  const cjs = mod.default as { __esModule?: unknown; default?: unknown } | undefined;
  const exported = typeof cjs === 'object' && cjs !== null && cjs.__esModule === true ? cjs.default : mod.default;
  if (exported === undefined) throw new ProtocolFileError(`${path}: the module has no default export (a protocol, or a function of the protocol API returning one)`);
  let protocol: unknown = exported;
  if (typeof exported === 'function') {
    try {
      protocol = (exported as (api: typeof PROTOCOL_API) => unknown)(PROTOCOL_API);
    } catch (err) {
      throw new ProtocolFileError(`${path}: the protocol factory threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const wrong = protocolShapeError(protocol);
  if (wrong !== undefined) throw new ProtocolFileError(`${path}: not a protocol: ${wrong}`);
  return { path, protocol: protocol as Protocol };
}
