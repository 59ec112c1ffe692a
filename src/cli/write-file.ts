/**
 * Output files the CLI writes (--trace-out, --schedule-out, …): whole or not at all. The path is
 * checked before any work starts (its directory must exist, it must not be a directory), the text
 * goes to a temporary file beside it that is renamed into place, and a failed write removes the
 * temporary file, so a user never finds a half-written or stray file.
 */
import { existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** An output path the CLI cannot write: one line naming the flag and why. */
export class OutputFileError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'OutputFileError';
  }
}

/** Refuse an output path that cannot be written, before the run (flag names the option, e.g. '--trace-out'). */
export function checkOutputPath(path: string, flag: string): void {
  if (path.trim() === '') throw new OutputFileError(`${flag} needs a file name, not an empty string`);
  const full = resolve(path);
  if (existsSync(full) && statSync(full).isDirectory()) throw new OutputFileError(`${flag} ${path}: is a directory; give a file name inside it`);
  const dir = dirname(full);
  if (!existsSync(dir)) throw new OutputFileError(`${flag} ${path}: directory ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new OutputFileError(`${flag} ${path}: ${dir} is not a directory`);
}

function reason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOSPC' ? 'no space left on the device' : code ?? (e instanceof Error ? e.message : String(e));
}

export function writeAtomically(path: string, text: string, flag = 'output file'): void {
  checkOutputPath(path, flag);
  const tmp = `${resolve(path)}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new OutputFileError(`${flag} ${path}: cannot write: ${reason(e)}`);
  }
}
