import cliProgress from 'cli-progress';
/**
 * What a sweep (`run --seeds N`) ran and found, in a few counts: how every execution ended (per
 * stop reason) and which hazards or failures it met, so "N seeds: K failing" has its context.
 */
export class SweepTally {
  readonly ended = new Map<string, number>();
  readonly found = new Map<string, number>();
  executions = 0;

  /** One execution: how it ended (in words) and what it found (a hazard kind, a failure), if anything. */
  add(ended: string, found?: string): void {
    this.executions++;
    this.ended.set(ended, (this.ended.get(ended) ?? 0) + 1);
    if (found !== undefined) this.found.set(found, (this.found.get(found) ?? 0) + 1);
  }

  /** `ended: 480 vCPU 1 halted, 20 a hazard was found` and `found: cmc-unsynchronized 20` (or nothing). */
  lines(): string[] {
    const list = (m: Map<string, number>, countFirst: boolean) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => (countFirst ? `${v} ${k}` : `${k} ${v}`)).join(', ');
    return [`  ${this.executions} executions ended: ${list(this.ended, true)}`, `  found: ${this.found.size === 0 ? 'nothing' : list(this.found, false)}`];
  }

  json(): { executions: number; ended: Record<string, number>; found: Record<string, number> } {
    return { executions: this.executions, ended: Object.fromEntries(this.ended), found: Object.fromEntries(this.found) };
  }
}

/** The progress bar of a sweep on a terminal (stderr), counting seeds and failing ones; nothing elsewhere. */
export interface SweepProgress {
  tick(failing: number): void;
  stop(): void;
}

export function sweepProgress(show: boolean, seeds: number, failingName: string): SweepProgress {
  const bar = show && process.stderr.isTTY ? new cliProgress.SingleBar({ format: `seeds {bar} {value}/{total} | ${failingName} {failing}`, hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(seeds, 0, { failing: 0 });
  return { tick: (failing) => bar?.increment(1, { failing }), stop: () => bar?.stop() };
}
