/**
 * The swimlanes of a report: one SVG lane per vCPU (and per protocol track), its slices stacked by
 * nesting depth, flows as arrows, the violating step as a red line. Drawn here as static SVG so the
 * picture needs no script to appear, and a test can find every lane in the DOM.
 */
import type { Slice, Timeline } from './timeline.ts';

const WIDTH = 1100;
const LABEL = 150;
const ROW = 13;
/** The most rectangles one view draws; narrower slices are dropped first. */
const MAX_RECTS = 15_000;

const COLOURS: Record<string, string> = {
  handler: '#e8a33d', slowpath: '#d9534f', 'stop-machine': '#8e44ad', 'int3-handler': '#c0392b', patch: '#2e86c1',
  service: '#95a5a6', step: '#b0b7bd', drain: '#5d6d7e', halted: '#d5d8dc', phase: '#5dade2', 'lock-held': '#27ae60', 'spin-lock': '#f5b041',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export interface LaneView {
  id: string;
  title: string;
  from: number;
  to: number;
}

/** One view of the timeline over steps [from, to). */
export function lanesSvg(t: Timeline, view: LaneView, violation?: { step: number; cpu: number }): string {
  const span = Math.max(1, view.to - view.from);
  const x = (s: number) => LABEL + ((Math.min(Math.max(s, view.from), view.to) - view.from) / span) * (WIDTH - LABEL);
  const visible = t.slices.filter((s) => s.end >= view.from && s.begin <= view.to);
  const depthOf = new Map<number, number>();
  for (const s of visible) depthOf.set(s.track, Math.max(depthOf.get(s.track) ?? 0, s.depth + 1));
  const tops: number[] = [];
  let y = 24;
  for (let tr = 0; tr < t.trackNames.length; tr++) {
    tops.push(y);
    y += Math.max(1, depthOf.get(tr) ?? 1) * ROW + 8;
  }
  const height = y + 4;
  // Keep the widest slices when there are too many to draw.
  const drawn = visible.length > MAX_RECTS ? [...visible].sort((a, b) => b.end - b.begin - (a.end - a.begin)).slice(0, MAX_RECTS) : visible;
  const byTrack = new Map<number, Slice[]>();
  for (const s of drawn) (byTrack.get(s.track) ?? byTrack.set(s.track, []).get(s.track)!).push(s);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" class="lanes" id="${view.id}" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" data-from="${view.from}" data-to="${view.to}">`];
  parts.push(`<text x="4" y="14" class="axis">steps ${view.from}–${view.to}</text>`);
  t.trackNames.forEach((name, tr) => {
    const top = tops[tr]!;
    const h = Math.max(1, depthOf.get(tr) ?? 1) * ROW;
    const attr = tr < t.vcpus ? `data-cpu="${tr}"` : `data-track="${esc(name)}"`;
    parts.push(`<g class="lane${tr < t.vcpus ? ' vcpu-lane' : ' phase-lane'}" ${attr}>`);
    parts.push(`<rect class="lane-bg" x="${LABEL}" y="${top}" width="${WIDTH - LABEL}" height="${h}"/>`);
    parts.push(`<text x="4" y="${top + 10}" class="lane-label">${esc(name)}</text>`);
    for (const s of byTrack.get(tr) ?? []) {
      const x0 = x(s.begin), w = Math.max(1, x(s.end) - x0);
      const label = w > 60 ? `<text x="${(x0 + 2).toFixed(1)}" y="${top + s.depth * ROW + 10}" class="slice-label">${esc(s.name.slice(0, Math.floor(w / 6)))}</text>` : '';
      parts.push(`<rect class="slice" data-cat="${esc(s.cat)}" x="${x0.toFixed(1)}" y="${top + s.depth * ROW}" width="${w.toFixed(1)}" height="${ROW - 1}" fill="${COLOURS[s.cat] ?? '#7f8c8d'}"><title>${esc(s.name)} [${s.cat}] steps ${s.begin}–${s.end}</title></rect>${label}`);
    }
    parts.push('</g>');
  });
  for (const f of t.flows) {
    if (f.to.step < view.from || f.from.step > view.to) continue;
    const y0 = tops[f.from.cpu]! + 4, y1 = tops[f.to.cpu]! + 4;
    parts.push(`<line class="flow" data-kind="${f.kind}" x1="${x(f.from.step).toFixed(1)}" y1="${y0}" x2="${x(f.to.step).toFixed(1)}" y2="${y1}" marker-end="url(#arrow)"><title>${esc(f.label)}: vCPU ${f.from.cpu} step ${f.from.step} → vCPU ${f.to.cpu} step ${f.to.step}</title></line>`);
  }
  if (violation && violation.step >= view.from && violation.step <= view.to) {
    const vx = x(violation.step).toFixed(1);
    const vy = tops[violation.cpu] ?? 24;
    parts.push(`<g class="violation-mark" data-step="${violation.step}" data-cpu="${violation.cpu}"><line x1="${vx}" y1="18" x2="${vx}" y2="${height}" class="violation-line"/><circle cx="${vx}" cy="${vy + 6}" r="5" class="violation-dot"/><title>violating step ${violation.step} on vCPU ${violation.cpu}</title></g>`);
  }
  parts.push('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>');
  parts.push('</svg>');
  return parts.join('\n');
}

/** The categories a legend lists, in drawing colours. */
export function legendHtml(): string {
  return Object.entries(COLOURS).map(([k, c]) => `<span class="key"><i style="background:${c}"></i>${esc(k)}</span>`).join(' ');
}
