/**
 * `pvpatch merge a.json b.json ...`: join the `check --shard i/n --json` outputs of one
 * exploration into the result the unsharded run gives (counts added, the first violation the
 * lowest execution index, its counterexample shrunk again from the scenario, --expect judged on
 * the merged states). Run it where the scenario file is at the path the shards name.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mergeShards, MergeError, type ExplorationResult } from '../../check/exploration.ts';
import { parseCondition } from '../../check/condition.ts';
import { choiceKey, choiceOf, chosenSubject, type SubjectChoice } from '../subject-choice.ts';
import { checkExitCode, checkText, finishCheck, type CheckReport } from './check-report.ts';

function readShard(file: string): { result: ExplorationResult; condition: string; choice: SubjectChoice } {
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
  const { counterexample: _c, expect, protocol, variant, protocolFile, ...result } = o as CheckReport;
  return { result, condition: expect?.condition ?? '', choice: choiceOf({ ...(protocol ? { protocol } : {}), ...(variant ? { variant } : {}), ...(protocolFile ? { protocolFile } : {}) }) };
}

export async function mergeCommand(files: string[], flags: { json?: boolean }): Promise<number> {
  const docs = files.map(readShard);
  const conditions = new Set(docs.map((d) => d.condition));
  if (conditions.size > 1) throw new MergeError(`the shards were checked against different --expect conditions (${[...conditions].map((c) => c || 'none').join(' / ')})`);
  const condition = [...conditions][0];
  const choices = new Set(docs.map((d) => choiceKey(d.choice)));
  if (choices.size > 1) throw new MergeError(`the shards were checked with different protocols (${[...choices].map((p) => p || 'the scenario\'s').join(' / ')})`);
  const choice = docs[0]?.choice ?? {};
  const merged = mergeShards(docs.map((d) => d.result));
  const subject = await chosenSubject(merged.subject, choice);
  const report = finishCheck(subject, merged, { ...(condition ? { expect: parseCondition(condition) } : {}), choice });
  process.stdout.write(flags.json ? JSON.stringify(report) + '\n' : checkText(report));
  return checkExitCode(report);
}

