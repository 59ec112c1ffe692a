/**
 * Figures over several seeds (issue 13: no benchmark point from one seed): the median, the range
 * and every seed's value, so a bimodal point (lock-holder preemption happens or not) shows as such.
 */
export interface Spread {
  median: number;
  min: number;
  max: number;
  /** One value per seed, in seed order. */
  values: number[];
}

/** Seeds every multi-seed benchmark runs by default (at least 5). */
export const DEFAULT_SEEDS = 5;

export function seedList(n: number, from = 1): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function spread(values: readonly number[], digits = 0): Spread {
  const round = (x: number) => +x.toFixed(digits);
  return { median: round(median(values)), min: round(Math.min(...values)), max: round(Math.max(...values)), values: values.map(round) };
}

/** `median (min–max)` for a table cell. */
export function cell(s: Spread, digits = 0): string {
  const f = (x: number) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

/** `--seeds N` from the command line (bench/main.ts passes the arguments through), else the default. */
export function seedsFromArgs(argv: readonly string[], fallback = DEFAULT_SEEDS): number {
  const i = argv.indexOf('--seeds');
  const v = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--seeds='))?.slice(8);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--seeds must be a positive integer, not '${v}'`);
  return n;
}

/** Ranks of `xs` (ties share their mean rank). */
function ranks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) out[order[k]![1]] = (i + j) / 2;
    i = j + 1;
  }
  return out;
}

/** Spearman's rank correlation of two equally long series (null when either is constant). */
export function spearman(xs: readonly number[], ys: readonly number[]): number | null {
  const rx = ranks(xs), ry = ranks(ys);
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const mx = mean(rx), my = mean(ry);
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < rx.length; i++) {
    sxy += (rx[i]! - mx) * (ry[i]! - my);
    sxx += (rx[i]! - mx) ** 2;
    syy += (ry[i]! - my) ** 2;
  }
  return sxx === 0 || syy === 0 ? null : +(sxy / Math.sqrt(sxx * syy)).toFixed(3);
}
