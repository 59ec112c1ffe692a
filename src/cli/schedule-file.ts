/**
 * `--schedule-file FILE`: a schedule of any length, read in chunks and parsed as it streams
 * (src/sched/schedule.ts keeps repeat counts as counts), so a long counterexample replays without
 * the whole text in memory or on the command line.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { parseScheduleChunks, type Schedule } from '../sched/schedule.ts';
import { ScenarioError } from './scenario/errors.ts';

const CHUNK = 1 << 20;

function* chunksOf(fd: number): Generator<string> {
  const buf = Buffer.alloc(CHUNK);
  const text = new StringDecoder('utf8');
  for (;;) {
    const n = readSync(fd, buf, 0, CHUNK, null);
    if (n === 0) break;
    yield text.write(buf.subarray(0, n));
  }
  yield text.end();
}

export function readScheduleFile(path: string, vcpus: number): Schedule {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new ScenarioError(`cannot read schedule file ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  try {
    return parseScheduleChunks(chunksOf(fd), vcpus);
  } finally {
    closeSync(fd);
  }
}
