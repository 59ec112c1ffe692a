/**
 * `pvpatch report`'s HTML (DESIGN.md §7): one self-contained file with the verdict, the per-vCPU
 * swimlanes of the run (all of it, and a close-up around the violating step), the instructions
 * around the violating rip, the protocol's phases, what an exploration covered, and benchmark
 * plots (median line, min–max band) drawn by uPlot, whose minified build is inlined: nothing is
 * fetched when the page is viewed.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { lanesSvg, legendHtml } from './report-lanes.ts';
import type { ReportModel } from './report-model.ts';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** JSON for a <script> element: `<` escaped so no string in it can close the element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c');
}

function uplotAssets(): { js: string; css: string } {
  const require = createRequire(import.meta.url);
  return {
    js: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    css: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
  };
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.verdict { padding: .6em 1em; border-radius: 4px; white-space: pre-wrap; font-family: ui-monospace, monospace; }
.verdict.ok { background: #e8f6ee; } .verdict.bad { background: #fdecea; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.disasm td { font-family: ui-monospace, monospace; } .disasm tr.at { background: #fdecea; font-weight: bold; }
.lanes { display: block; margin: .5em 0; border: 1px solid #ddd; }
.lane-bg { fill: #fafafa; } .lane-label, .axis { font: 11px ui-monospace, monospace; fill: #333; }
.slice-label { font: 9px ui-monospace, monospace; fill: #fff; pointer-events: none; }
.slice { stroke: #fff; stroke-width: .3; } .flow { stroke: #555; stroke-width: 1; }
.violation-line { stroke: #e00; stroke-width: 2; } .violation-dot { fill: #e00; }
.key { margin-right: 1em; font-size: 12px; } .key i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.chart { margin: 1em 0; }
`;

function factsTable(facts: [string, string][]): string {
  return `<table class="facts">${facts.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

function violationHtml(m: ReportModel): string {
  const v = m.violation;
  if (!v) return '';
  const rows = v.disassembly.map((d) => `<tr class="${d.at ? 'at' : ''}"${d.at ? ' id="violating-insn"' : ''}><td>${d.at ? '→' : ''}</td><td>${esc(d.address)}</td><td>${esc(d.bytes)}</td><td>${esc(d.text)}</td></tr>`).join('');
  return `<h2 id="violation">The violating step: ${v.step}, vCPU ${v.cpu}, ${esc(v.kind)} at ${esc(v.rip)}</h2>
<div class="verdict bad">${esc(v.explanation)}</div>
<table class="disasm"><tr><th></th><th>address</th><th>bytes</th><th>instruction</th></tr>${rows}</table>`;
}

function lanesHtml(m: ReportModel): string {
  const t = m.timeline;
  if (!t) return m.benches.length > 0 && !m.exploration && m.facts.length === 0 ? '' : '<h2>Swimlanes</h2><p>This input carries no events to draw.</p>';
  const v = m.violation ? { step: m.violation.step, cpu: m.violation.cpu } : m.mark;
  const out = [`<h2>Swimlanes</h2>${m.axis ? `<p>${esc(m.axis)}</p>` : ''}<p>${legendHtml()}</p>`, lanesSvg(t, { id: 'lanes-all', title: 'the whole run', from: 0, to: t.end }, v)];
  if (v) {
    const w = 150;
    out.push(`<h3>Around the violating step (${Math.max(0, v.step - w)}–${v.step + 10})</h3>`);
    out.push(lanesSvg(t, { id: 'lanes-zoom', title: 'around the violating step', from: Math.max(0, v.step - w), to: v.step + 10 }, v));
  }
  return out.join('\n');
}

function phasesHtml(m: ReportModel): string {
  if (m.phases.length === 0) return '';
  return '<h2>The protocol\'s phases</h2>' + m.phases.map((p) => `<h3>${esc(p.name)}</h3><table class="phases"><tr><th>step</th><th>since the previous</th><th>phase</th></tr>${p.rows.map((r) => `<tr><td class="num">${r.step}</td><td class="num">${r.delta === undefined ? '' : `+${r.delta}`}</td><td>${esc(r.phase)}</td></tr>`).join('')}</table>`).join('');
}

function explorationHtml(m: ReportModel): string {
  const e = m.exploration;
  if (!e) return '';
  const facts: [string, string][] = [['verdict', e.verdict]];
  if (e.executions !== undefined) facts.push(['executions explored', e.executions.toLocaleString('en-US')]);
  if (e.states !== undefined) facts.push(['states', e.states.toLocaleString('en-US')]);
  if (e.steps !== undefined) facts.push(['counterexample steps', String(e.steps)]);
  if (e.preemptions !== undefined) facts.push(['counterexample preemptions', String(e.preemptions)]);
  if (e.schedule !== undefined) facts.push(['schedule', e.schedule]);
  if (e.replay !== undefined) facts.push(['replay', e.replay]);
  return `<h2 id="exploration">What was explored</h2>${factsTable(facts)}`;
}

/** Benchmark charts: the data as JSON and a script that hands each figure to uPlot. */
function benchHtml(m: ReportModel): string {
  if (m.benches.length === 0) return '';
  const divs = m.benches.map((_, i) => `<div class="chart" id="bench-${i}"></div>`).join('');
  const script = `
(function () {
  var figs = JSON.parse(document.getElementById('bench-data').textContent);
  var palette = ['#2e86c1', '#d9534f', '#27ae60', '#8e44ad', '#e67e22', '#16a085'];
  figs.forEach(function (f, i) {
    var xs = f.xLabels.map(function (_, k) { return k; });
    var data = [xs], series = [{}], bands = [];
    f.series.forEach(function (s, j) {
      var c = palette[j % palette.length];
      var col = function (key) { return s.points.map(function (p) { return p ? p[key] : null; }); };
      var base = data.length;
      data.push(col('max'), col('min'), col('median'));
      series.push({ label: s.label + ' max', stroke: 'transparent', points: { show: false } });
      series.push({ label: s.label + ' min', stroke: 'transparent', points: { show: false } });
      series.push({ label: s.label + ' (median)', stroke: c, width: 2 });
      bands.push({ series: [base, base + 1], fill: c + '33' });
    });
    var el = document.getElementById('bench-' + i);
    var title = document.createElement('h3'); title.textContent = f.title; el.appendChild(title);
    new uPlot({ width: 900, height: 300, series: series, bands: bands, scales: { x: { time: false } },
      axes: [
        { splits: function () { return xs; }, values: function (u, splits) { return splits.map(function (v) { return f.xLabels[v] === undefined ? '' : f.xLabels[v]; }); } },
        { size: 70, values: function (u, splits) { return splits.map(function (v) { return v >= 1e6 ? (v / 1e6).toFixed(2) + 'M' : v >= 1e4 ? Math.round(v / 1e3) + 'k' : String(+v.toFixed(3)); }); } }] }, data, el);
  });
})();`;
  return `<h2 id="benchmarks">Benchmarks (median, band = min–max over seeds; x: the row's ratio · phase · … or ratio · pCPUs)</h2>${divs}
<script type="application/json" id="bench-data">${scriptJson(m.benches)}</script>
<script>${script}</script>`;
}

/** The whole report as one HTML document. */
export function renderReport(m: ReportModel): string {
  const assets = m.benches.length > 0 ? uplotAssets() : undefined;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(m.title)}</title>
<style>${STYLE}${assets?.css ?? ''}</style>
${assets ? `<script>${assets.js}</script>` : ''}
</head><body>
<h1>${esc(m.title)}</h1>
<div class="verdict ${m.ok ? 'ok' : 'bad'}" id="verdict">${esc(m.headline)}</div>
${factsTable([['source', m.source], ...m.facts])}
${violationHtml(m)}
${explorationHtml(m)}
${lanesHtml(m)}
${phasesHtml(m)}
${benchHtml(m)}
</body></html>
`;
}
