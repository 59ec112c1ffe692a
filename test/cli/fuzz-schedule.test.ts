// Fuzz: schedule strings. Each case builds a schedule from the grammar's pieces (s/d/n/i/c tokens,
// vCPU numbers in and out of range, repeat counts up to absurd, odd separators, stray text) and
// replays it on a bundled machine scenario: a replay that fits runs, one that does not is one
// line saying where, a repeat count beyond the bound is refused (fuzz-support.ts).
import { test, after } from 'node:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import fc from 'fast-check';
import { runCli } from '../../src/cli/main.ts';
import { FUZZ_RUNS, FUZZ_SEED, SCENARIOS, assertClean, scratch } from './fuzz-support.ts';

// The bundled scenarios as JSON copies: the same documents, parsed three times faster than YAML.
const work = scratch('schedule');
after(() => work.clean());
const targets = ['cmc-no-sync.yaml', 'text-poke-order.yaml', 'store-buffering.yaml'].map((f) => {
  const copy = join(work.dir, f.replace(/\.yaml$/, '.json'));
  writeFileSync(copy, JSON.stringify(parse(readFileSync(join(SCENARIOS, f), 'utf8'))));
  return copy;
});

const token = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom('s', 'd', 'n', 'i', 'c', 's', 's', 'd', 'x', 'S', ''), fc.constantFrom('0', '1', '0', '1', '2', '3', '255', '256', '99999999999999999999', '-1', '', '01'), fc.constantFrom('', '', '', '*2', '*3', '*0', '*1000', '*20000', '*999999999', '*99999999999999999999', '*', '*-1', '**2')).map(([a, b, c]) => a + b + c) },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
);
const separator = fc.constantFrom(' ', ' ', ' ', ',', ', ', '\t', '  ', '\n');

const schedule = fc.tuple(fc.array(token, { minLength: 1, maxLength: 40 }), fc.array(separator, { minLength: 40, maxLength: 40 })).map(([ts, seps]) => ts.map((t, i) => t + seps[i]).join('').trim());

test(`pvpatch run --schedule on ${FUZZ_RUNS} generated schedules exits 0, 1 or 2 with one clean line on error`, async () => {
  await fc.assert(
    fc.asyncProperty(fc.nat(targets.length - 1), schedule, fc.boolean(), fc.boolean(), async (t, s, json, strategyFlag) => {
      const args = ['run', targets[t]!, '--schedule', s, '--max-instructions', '500', ...(strategyFlag ? ['--strategy', 'replay'] : []), ...(json ? ['--json'] : [])];
      assertClean(await runCli(args), args);
    }),
    { seed: FUZZ_SEED, numRuns: FUZZ_RUNS, endOnFailure: true },
  );
});
