/**
 * Command-line values checked the same way by every command: integers in range, non-empty text,
 * existing input files, and flags that do not apply to what was asked (an error naming why,
 * never a flag silently ignored).
 */
import { existsSync, statSync } from 'node:fs';

/** A flag value or combination that cannot be used: one line naming the flag. */
export class FlagError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

/** An integer flag in [min, max]; undefined when the flag was not given. */
export function intFlag(v: string | undefined, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  const n = /^[0-9]+$/.test(t) ? Number(t) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new FlagError(`--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`}, not '${v}'`);
  }
  return n;
}

/** A text flag that must say something (`--schedule ''` is a mistake, not "no schedule"). */
export function textFlag(v: string | undefined, name: string): string | undefined {
  if (v !== undefined && v.trim() === '') throw new FlagError(`--${name} needs a value, not an empty string`);
  return v;
}

/** An input file named by a flag: it must exist and be a file. */
export function inputFileFlag(v: string | undefined, name: string): string | undefined {
  if (v === undefined) return undefined;
  textFlag(v, name);
  if (!existsSync(v)) throw new FlagError(`--${name} ${v}: no such file`);
  if (!statSync(v).isFile()) throw new FlagError(`--${name} ${v}: not a file`);
  return v;
}

/** Option names as commander keys them (camelCase) → as the user typed them. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * Refuse every given flag among `keys` with `why` (e.g. "applies to guest scenarios; x.yaml is a
 * machine scenario"). `flags` is commander's option object.
 */
export function refuseFlags(flags: object, keys: readonly string[], why: string): void {
  const given = keys.filter((k) => (flags as Record<string, unknown>)[k] !== undefined && (flags as Record<string, unknown>)[k] !== false);
  if (given.length === 0) return;
  const names = given.map(flagName);
  throw new FlagError(`${names.join(', ')} ${names.length === 1 ? 'does' : 'do'} not apply: ${why}`);
}
