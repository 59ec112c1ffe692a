/** Checks of a Chrome trace-event JSON that every trace test shares. */
import type { TraceEvent } from '../../src/trace/chrome.ts';

/** The first complete ("X") slice on any track that overlaps another without nesting inside it, or undefined. */
export function improperNesting(events: readonly TraceEvent[]): string | undefined {
  const byTid = new Map<number, TraceEvent[]>();
  for (const e of events) if (e.ph === 'X') (byTid.get(e.tid) ?? byTid.set(e.tid, []).get(e.tid)!).push(e);
  for (const [tid, xs] of byTid) {
    xs.sort((a, b) => a.ts - b.ts || b.dur! - a.dur!);
    const ends: { end: number; name: string }[] = [];
    for (const e of xs) {
      while (ends.length > 0 && ends[ends.length - 1]!.end <= e.ts) ends.pop();
      const top = ends[ends.length - 1];
      if (top && e.ts + e.dur! > top.end) return `track ${tid}: '${e.name}' [${e.ts}, ${e.ts + e.dur!}) overlaps '${top.name}' ending at ${top.end}`;
      ends.push({ end: e.ts + e.dur!, name: e.name });
    }
  }
  return undefined;
}

/** Flow ids whose start ("s") and finish ("f") do not come in exactly one pair. */
export function unmatchedFlows(events: readonly TraceEvent[]): number[] {
  const n = new Map<number, { s: number; f: number }>();
  for (const e of events) {
    if (e.ph !== 's' && e.ph !== 'f') continue;
    const c = n.get(e.id!) ?? { s: 0, f: 0 };
    c[e.ph]++;
    n.set(e.id!, c);
  }
  return [...n].filter(([, c]) => c.s !== 1 || c.f !== 1).map(([id]) => id);
}
