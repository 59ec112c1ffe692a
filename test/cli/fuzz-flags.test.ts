// Fuzz: command lines. Each case picks a command (run, inspect, help, a typo), an input (bundled
// machine and guest scenarios, the tiny vmlinux and module, a missing file, a directory, a file of
// the wrong kind) and a handful of flags with values good, empty, out of range or absurd, and
// output paths that exist, are directories or lie in missing directories. Besides a clean exit
// (fuzz-support.ts), a refused run leaves no output file and no temporary file.
import { test, after } from 'node:test';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { parse } from 'yaml';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { runCli } from '../../src/cli/main.ts';
import { tinyKernel, SITE_PV } from '../elf/tiny-kernel.ts';
import { tinyModule } from '../elf/tiny-module.ts';
import { FUZZ_RUNS, FUZZ_SEED, SCENARIOS, assertClean, assertNoLeftovers, scratch } from './fuzz-support.ts';

const work = scratch('flags');
after(() => work.clean());
const inputs = join(work.dir, 'inputs');
const out = join(work.dir, 'out');
mkdirSync(inputs);
mkdirSync(out);
const vmlinux = join(inputs, 'vmlinux');
writeFileSync(vmlinux, tinyKernel());
writeFileSync(join(inputs, 'tiny.ko'), tinyModule());
writeFileSync(join(inputs, 'a-file'), 'not a directory\n');

// JSON copies of the bundled scenarios (parsed three times faster than YAML), and one YAML original.
const S = (f: string) => {
  if (f === 'guest-native.yaml') return join(SCENARIOS, f);
  const copy = join(inputs, f.replace(/\.yaml$/, '.json'));
  writeFileSync(copy, JSON.stringify(parse(readFileSync(join(SCENARIOS, f), 'utf8'))));
  return copy;
};
const scenario = fc.constantFrom<string[]>([], [S('cmc-no-sync.yaml')], [S('text-poke-order.yaml')], [S('store-buffering.yaml')], [S('guest-pv.yaml')], [S('guest-native.yaml')], [join(inputs, 'missing.yaml')], [inputs], [vmlinux]);
const image = fc.constantFrom<string[]>([vmlinux], [join(inputs, 'tiny.ko')], [join(inputs, 'missing')], [inputs], [S('default.yaml')], []);
const outputPath = fc.constantFrom(join(out, 'o.json'), out, join(out, 'missing', 'o.json'), '', join(inputs, 'a-file', 'o.json'), '   ');
const count = fc.constantFrom('0', '1', '2', '', ' ', '-1', 'x', '1.5', '1e3', '0x10', '99999999999999999999', '1000001');
const site = `0x${BigInt.asUintN(64, BigInt(SITE_PV)).toString(16)}`;

const runFlag = fc.oneof(
  fc.tuple(fc.constant('--seed'), count),
  fc.tuple(fc.constant('--seeds'), count),
  fc.tuple(fc.constant('--strategy'), fc.constantFrom('timed', 'random', 'pct', 'replay', 'first', '', 'bogus')),
  fc.tuple(fc.constant('--schedule'), fc.constantFrom('s0', 's0 s1*2 d1', '', 'zz', 's9', 's0*99999999999')),
  fc.tuple(fc.constant('--protocol'), fc.constantFrom('v1', 'v2', 'text-poke-bp', '', 'v3')),
  fc.tuple(fc.constant('--corrupt-site'), count),
  fc.tuple(fc.constant('--schedule-out'), outputPath),
  fc.tuple(fc.constant('--trace-out'), outputPath),
  fc.tuple(fc.constant('--max-instructions'), fc.constantFrom('200', '', '0', '-5', 'abc', '99999999999999999999')),
  fc.constantFrom(['--show-sites'], ['--json'], ['--bogus'], ['--seed'], ['-x'], ['extra-arg']),
);
const inspectFlag = fc.oneof(
  fc.tuple(fc.constant('--platform'), fc.constantFrom('bare-metal', 'kvm', 'kvm-realtime', 'xen-pv', '', 'hyperv')),
  fc.tuple(fc.constant('--features'), fc.constantFrom('EPYC', 'Skylake-Client,-avx2', '', 'Bogus', '+nosuchfeature', ',,')),
  fc.tuple(fc.constant('--cmdline'), fc.constantFrom('', 'mitigations=off', 'nopvspin', '=== ')),
  fc.tuple(fc.constant('--symbols'), fc.constantFrom(vmlinux, join(inputs, 'missing'), inputs, '', join(inputs, 'a-file'))),
  fc.tuple(fc.constant('--vmlinux'), fc.constantFrom(vmlinux, join(inputs, 'missing'), inputs, '', join(inputs, 'tiny.ko'))),
  fc.tuple(fc.constant('--site'), fc.constantFrom(site, '', 'zz', '0x1', '-1', '0xffffffffffffffffff')),
  fc.constantFrom(['--analyze'], ['--analyze', 'kvm'], ['--analyze', 'bogus'], ['--diff'], ['--json'], ['--bogus']),
);

const argv = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(scenario, fc.array(runFlag, { maxLength: 4 })).map(([s, fs]) => ['run', ...s, '--max-instructions', '200', ...fs.flat()]) },
  { weight: 4, arbitrary: fc.tuple(image, fc.array(inspectFlag, { maxLength: 4 })).map(([i, fs]) => ['inspect', ...i, ...fs.flat()]) },
  { weight: 1, arbitrary: fc.constantFrom<string[]>(['help'], ['help', 'run'], ['help', 'inspect'], ['help', 'nosuch'], ['--help'], ['--version'], ['run', '--help'], ['nosuch'], ['rnu'], ['--json'], ['help', '--json'], ['nosuch', '--json']) },
);

test(`pvpatch on ${FUZZ_RUNS} generated command lines exits 0, 1 or 2, one clean line on error, no stray file`, async () => {
  await fc.assert(
    fc.asyncProperty(argv, async (args) => {
      const r = await runCli(args);
      assertClean(r, args);
      assertNoLeftovers(work.dir, args);
      if (r.code === 2) assert.ok(!existsSync(join(out, 'o.json')), `a refused command wrote no output file: pvpatch ${args.join(' ')}\n${r.stderr}`);
      for (const f of readdirSync(out)) rmSync(join(out, f), { recursive: true, force: true });
    }),
    { seed: FUZZ_SEED, numRuns: FUZZ_RUNS, endOnFailure: true },
  );
});
