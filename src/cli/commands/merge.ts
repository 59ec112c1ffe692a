/**
 * `pvpatch merge a.json b.json ...`: join the `check --shard i/n --json` outputs of one
 * exploration into the result the unsharded run gives (counts added, the first violation the
 * lowest execution index, its counterexample shrunk again from the scenario, --expect judged on
 * the merged states). Run it where the scenario file is at the path the shards name.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mergeShards, MergeError, type ExplorationResult } from '../../check/exploration.ts';
import { parseCondition } from '../../check/condition.ts';
import { scenarioSubject } from '../scenario/subject.ts';
import type { SwitchProtocol } from '../../patching/hint-switch.ts';
import { checkExitCode, checkText, finishCheck, type CheckReport } from './check-report.ts';

function readShard(file: string): { result: ExplorationResult; condition: string; protocol: string } {
  if (!existsSync(file)) throw new MergeError(`${file}: no such file`);
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new MergeError(`${file}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const o = doc as Partial<CheckReport> | null;
  if (o === null || typeof o !== 'object' || typeof o.subject !== 'string' || !Array.isArray(o.states) || typeof o.executions !== 'number' || o.bound === undefined) {
    throw new MergeError(`${file}: not the output of pvpatch check --json`);
  }
  const { counterexample: _c, expect, protocol, ...result } = o as CheckReport;
  return { result, condition: expect?.condition ?? '', protocol: protocol ?? '' };
}

export function mergeCommand(files: string[], flags: { json?: boolean }): number {
  const docs = files.map(readShard);
  const conditions = new Set(docs.map((d) => d.condition));
  if (conditions.size > 1) throw new MergeError(`the shards were checked against different --expect conditions (${[...conditions].map((c) => c || 'none').join(' / ')})`);
  const condition = [...conditions][0];
  const protocols = new Set(docs.map((d) => d.protocol));
  if (protocols.size > 1) throw new MergeError(`the shards were checked with different --protocol (${[...protocols].map((p) => p || 'the scenario\'s').join(' / ')})`);
  const protocol = [...protocols][0] as SwitchProtocol | '';
  const merged = mergeShards(docs.map((d) => d.result));
  const subject = scenarioSubject(merged.subject, protocol ? { protocol } : {});
  const report = finishCheck(subject, merged, { ...(condition ? { expect: parseCondition(condition) } : {}), ...(protocol ? { protocol } : {}) });
  process.stdout.write(flags.json ? JSON.stringify(report) + '\n' : checkText(report));
  return checkExitCode(report);
}

