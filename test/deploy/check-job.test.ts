// The Kubernetes manifest stays consistent: one completion index per shard, every index run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

test('the Indexed Job runs shard $JOB_COMPLETION_INDEX of as many shards as it has completions', () => {
  const job = parse(readFileSync(join(import.meta.dirname, '..', '..', 'deploy', 'check-job.yaml'), 'utf8')) as {
    spec: { completionMode: string; completions: number; parallelism: number; template: { spec: { containers: { args: string[] }[] } } };
  };
  assert.equal(job.spec.completionMode, 'Indexed');
  const cmd = job.spec.template.spec.containers[0]!.args.join(' ');
  const m = /--shard "\$\{JOB_COMPLETION_INDEX\}\/(\d+)"/.exec(cmd);
  assert.ok(m, cmd);
  assert.equal(Number(m[1]), job.spec.completions);
  assert.match(cmd, /pvpatch check .* --json/);
  assert.match(cmd, /\[ "\$rc" -le 1 \]/, 'a violation (exit 1) completes the index');
});
