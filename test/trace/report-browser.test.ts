// Issue 13: the HTML report opens in a real headless Chromium (Debian's, driven by playwright-core)
// without console errors, with a lane per vCPU, the violating step marked and disassembled, and
// benchmark plots drawn by the inlined uPlot; a screenshot is written. Skips with the reason where
// chromium cannot be had (scripts/setup-chromium.sh installs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'pvpatch.js');
const CHROMIUM = '/usr/bin/chromium';
const dir = mkdtempSync(join(tmpdir(), 'pvpatch-report-'));

function pvpatch(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function launch(): Promise<Browser | string> {
  if (!existsSync(CHROMIUM)) return `no ${CHROMIUM} (bash scripts/setup-chromium.sh installs Debian's chromium)`;
  try {
    return await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  } catch (e) {
    return `chromium does not start here: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** Open `file`, collecting console errors and page errors. */
async function open(browser: Browser, file: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(e.message));
  // Nothing may be fetched: the file is self-contained.
  await page.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  return { page, errors };
}

test('the report of a v1 NMI-window failure: every vCPU lane, the violating step marked and disassembled, a screenshot', async (t) => {
  const browser = await launch();
  if (typeof browser === 'string') return t.skip(browser);
  try {
    const scenario = join(dir, 'nmi30.yaml');
    writeFileSync(scenario, readFileSync(join(ROOT, 'scenarios', 'default.yaml'), 'utf8').replace('nmis: 3', 'nmis: 30'));
    const html = join(dir, 'v1.html');
    const r = pvpatch('run', scenario, '--seed', '4', '--protocol', 'v1', '--json', '--report', html);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /report written to/);
    const run = JSON.parse(r.out) as { violation: { step: number; cpu: number } };
    const { page, errors } = await open(browser, html);
    for (const view of ['#lanes-all', '#lanes-zoom']) {
      const lanes = await page.$$eval(`${view} .vcpu-lane`, (gs) => gs.map((g) => g.getAttribute('data-cpu')));
      assert.deepEqual(lanes, ['0', '1', '2', '3'], view);
      assert.ok((await page.$$(`${view} .vcpu-lane .slice`)).length > 10, `${view} has slices`);
    }
    const mark = await page.$eval('#lanes-zoom .violation-mark', (g) => [g.getAttribute('data-step'), g.getAttribute('data-cpu')]);
    assert.deepEqual(mark, [String(run.violation.step), String(run.violation.cpu)]);
    const insn = await page.$eval('#violating-insn', (tr) => tr.textContent ?? '');
    assert.match(insn, /movb\s+\$0x0,\(%rdi\)|movb \$0,\(%rdi\)/);
    assert.match(await page.$eval('#violation', (h) => h.textContent ?? ''), /non-atomic-switch/);
    assert.ok((await page.$$('.phase-lane')).length >= 1, 'a protocol track');
    const shot = join(dir, 'report-v1.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(statSync(shot).size > 10_000);
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('the report of a check result with benchmark JSON: what was explored, and uPlot charts with a min–max band', async (t) => {
  const browser = await launch();
  if (typeof browser === 'string') return t.skip(browser);
  try {
    const check = join(dir, 'check.json');
    writeFileSync(check, JSON.stringify({
      verdict: { ok: false, check: 'hazard', step: 7, cpu: 0, message: 'cmc-unsynchronized at 0x1000' },
      executions: 1234, states: 5678,
      counterexample: { schedule: 's1*2 d1 s1*2 d1 s0', replay: "pvpatch run scenarios/cmc-no-sync.yaml --schedule 's1*2 d1 s1*2 d1 s0'", steps: 7, preemptions: 1 },
    }));
    const spread = (m: number) => ({ median: m, min: m * 0.9, max: m * 1.1, seeds: [m * 0.9, m, m * 1.1, m, m] });
    const bench = join(dir, 'bench.json');
    writeFileSync(bench, JSON.stringify({ bench: 'locks', rows: [1, 2, 3].flatMap((ratio) => ['native', 'pv'].map((flavor) => ({ ratio, flavor, acquisitions_per_sim_s: spread((flavor === 'pv' ? 1.3e6 : 1e6) / ratio) }))) }));
    const html = join(dir, 'check.html');
    const r = pvpatch('report', check, '--bench', bench, '-o', html);
    assert.equal(r.code, 0, r.err);
    const { page, errors } = await open(browser, html);
    const explored = await page.$eval('#exploration', (h) => h.nextElementSibling?.textContent ?? '');
    assert.match(explored, /1,234/);
    assert.match(explored, /s1\*2 d1 s1\*2 d1 s0/);
    // No events in a check result: the lanes come from the counterexample's schedule.
    assert.deepEqual(await page.$$eval('#lanes-all .vcpu-lane', (gs) => gs.map((g) => g.getAttribute('data-cpu'))), ['0', '1']);
    assert.deepEqual(await page.$eval('#lanes-all .violation-mark', (g) => [g.getAttribute('data-step'), g.getAttribute('data-cpu')]), ['7', '0']);
    assert.equal((await page.$$('#bench-0 canvas')).length, 1, 'uPlot drew the chart');
    const legend = await page.$$eval('#bench-0 .u-legend .u-label', (ls) => ls.map((l) => l.textContent));
    assert.ok(legend.includes('native (median)') && legend.includes('pv max'), legend.join(', '));
    await page.screenshot({ path: join(dir, 'report-check.png'), fullPage: true });
    t.diagnostic(`screenshot: ${join(dir, 'report-check.png')}`);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
