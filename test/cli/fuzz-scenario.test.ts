// Fuzz: scenarios. Each case takes a bundled scenario (machine or guest), applies one to three
// mutations to its document (drop a key, replace a value, misspell a key, add one, duplicate an
// array entry) or to its text (cut it, insert a character), writes it as YAML or JSON and runs
// `pvpatch run` on it. Whatever comes out must be a clean exit (fuzz-support.ts).
import { test, after } from 'node:test';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { runCli } from '../../src/cli/main.ts';
import { FUZZ_RUNS, FUZZ_SEED, SCENARIOS, assertClean, assertNoLeftovers, scratch } from './fuzz-support.ts';

const bases = readdirSync(SCENARIOS).filter((f) => f.endsWith('.yaml')).sort().map((f) => parse(readFileSync(join(SCENARIOS, f), 'utf8')) as unknown);
const work = scratch('scenario');
after(() => work.clean());

/** Values that probe every check: bounds, types, hex strings, huge and tiny numbers. */
const value = fc.oneof(
  fc.constantFrom<unknown>(0, -1, 1, 2, 3, 7, 64, 65, 255, 256, 4096, 0x7fffffff, 2 ** 53, 1e300, -1e300, 0.5, 1e-9, '', 'x', 'rx', 'rwx', 'z', '0x', '0x1000', '-0x10', '0xffffffffffffffff', '0x40000000', 'hlt', 'nop; hlt', 's0*5 s1', null, true, false, [], {}, [0], [9], { a: 1 }),
  fc.integer({ min: -5, max: 300 }),
  fc.string({ maxLength: 6 }),
);

type Op = 'delete' | 'replace' | 'typo' | 'add' | 'duplicate';
const mutation = fc.record({ at: fc.nat(), op: fc.constantFrom<Op>('delete', 'replace', 'replace', 'typo', 'add', 'duplicate'), value, pos: fc.nat() });

/** Every path to a value in a document (objects and arrays). */
function paths(v: unknown, here: (string | number)[] = []): (string | number)[][] {
  const out = [here];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...here, i])));
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...here, k]));
  return out;
}

function mutate(doc: unknown, m: { at: number; op: Op; value: unknown; pos: number }): unknown {
  const all = paths(doc).filter((p) => p.length > 0);
  if (all.length === 0) return m.value;
  const path = all[m.at % all.length]!;
  let parent = doc as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const key = path.at(-1)!;
  if (m.op === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
  } else if (m.op === 'replace') parent[key] = m.value;
  else if (m.op === 'duplicate' && Array.isArray(parent)) parent.splice(Number(key), 0, structuredClone(parent[Number(key)]));
  else if (!Array.isArray(parent)) {
    const name = String(key);
    const i = m.pos % (name.length + 1);
    const typo = m.op === 'typo' ? name.slice(0, i) + name.slice(i + 1) : `${name}${'xyz'[m.pos % 3]}`;
    if (m.op === 'typo') delete parent[key];
    parent[typo] = m.op === 'typo' ? parent[key] ?? m.value : m.value;
  }
  return doc;
}

const textCut = fc.record({ kind: fc.constantFrom('none', 'none', 'none', 'cut', 'insert'), pos: fc.nat(), ch: fc.constantFrom(':', '-', '{', '[', '"', '\t', '&a', '*a', '!!binary', '\n  ', '#', '%', '\0') });

test(`pvpatch run on ${FUZZ_RUNS} mutated scenarios exits 0, 1 or 2 with one clean line on error`, async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.nat(bases.length - 1), fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.constantFrom('yaml', 'json'), textCut, fc.boolean(), async (b, ms, format, cut, json) => {
      let doc = structuredClone(bases[b]);
      for (const m of ms) doc = mutate(doc, m);
      let text = format === 'json' ? JSON.stringify(doc) ?? 'null' : stringify(doc);
      const p = cut.pos % (text.length + 1);
      if (cut.kind === 'cut') text = text.slice(0, p);
      if (cut.kind === 'insert') text = text.slice(0, p) + cut.ch + text.slice(p);
      const file = join(work.dir, `case-${n++}.${format}`);
      writeFileSync(file, text);
      // A short run: the property is about how input is answered, not about long executions.
      const args = ['run', file, '--max-instructions', '300', ...(json ? ['--json'] : [])];
      assertClean(await runCli(args), args);
    }),
    { seed: FUZZ_SEED, numRuns: FUZZ_RUNS, endOnFailure: true },
  );
  assertNoLeftovers(work.dir, ['run']);
});
