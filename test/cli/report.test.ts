// pvpatch report: a run JSON (with the violating step and its disassembly), a check JSON of the
// shape `pvpatch check --json` prints, bench JSON; bad input is one line and leaves no file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'pvpatch.js');
const dir = mkdtempSync(join(tmpdir(), 'pvpatch-report-cli-'));

function pvpatch(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('run --json of the no-sync failure carries the violating step, its instructions and the timeline; report draws them', () => {
  const r = pvpatch('run', join(ROOT, 'scenarios', 'cmc-no-sync.yaml'), '--json');
  assert.equal(r.code, 1, r.err);
  const run = JSON.parse(r.out) as { violation: { step: number; cpu: number; rip: string; disassembly: { address: string; text: string; at: boolean }[] }; timeline: { vcpus: number }; events: Record<string, number> };
  assert.equal(run.violation.cpu, 0);
  assert.equal(run.violation.rip, '0x1000');
  assert.deepEqual(run.violation.disassembly.filter((d) => d.at).map((d) => [d.address, d.text]), [['0x1000', 'mov $1,%eax']]);
  assert.equal(run.timeline.vcpus, 2);
  assert.equal(typeof run.events.hazard, 'number', 'the event counts stay as they were');
  const json = join(dir, 'run.json');
  writeFileSync(json, r.out);
  const html = join(dir, 'run.html');
  const rep = pvpatch('report', json, '-o', html);
  assert.equal(rep.code, 0, rep.err);
  assert.equal(rep.err, `pvpatch: report written to ${html}\n`);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /data-cpu="0"/);
  assert.match(page, /data-cpu="1"/);
  assert.match(page, /id="violating-insn"/);
  assert.doesNotMatch(page, /<script src=|<link [^>]*href="http/, 'nothing fetched at view time');
});

test('a check JSON: verdict, executions, states and the counterexample', () => {
  const check = join(dir, 'check.json');
  writeFileSync(check, JSON.stringify({ verdict: { ok: false, check: 'hazard', step: 7, message: 'cmc-unsynchronized' }, executions: 42, states: 99, counterexample: { schedule: 's1 d1 s0', replay: 'pvpatch run x.yaml --schedule "s1 d1 s0"', steps: 3, preemptions: 1 } }));
  const html = join(dir, 'check.html');
  assert.equal(pvpatch('report', check, '-o', html).code, 0);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /executions explored<\/th><td>42/);
  assert.match(page, /s1 d1 s0/);
});

test('bad input is one line on stderr, exit 2, and no file (not even a temporary one)', () => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{"hello": 1}');
  const notJson = join(dir, 'not.json');
  writeFileSync(notJson, 'reason: x');
  const bench = join(dir, 'bench.json');
  writeFileSync(bench, JSON.stringify({ rows: [{ ratio: 1, rate: 5 }] }));
  const cases: [string[], RegExp][] = [
    [[bad, '-o', join(dir, 'a.html')], /neither a run .* nor a check result/],
    [[notJson, '-o', join(dir, 'b.html')], /not JSON/],
    [[join(dir, 'missing.json'), '-o', join(dir, 'c.html')], /no such file/],
    [[bad], /needs -o/],
    [['--bench', bench, '-o', join(dir, 'd.html')], /no \{median, min, max\} spreads/],
  ];
  for (const [args, msg] of cases) {
    const r = pvpatch('report', ...args);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, msg);
  }
  assert.deepEqual(readdirSync(dir).filter((f) => /^[a-d]\.html/.test(f) || f.includes('.tmp-')), []);
  assert.ok(!existsSync(join(dir, 'a.html')));
});
