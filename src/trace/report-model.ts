/** What `pvpatch report` draws: one run or one check's counterexample, and benchmark figures. */
import type { Timeline } from './timeline.ts';

export interface DisassemblyRow {
  address: string;
  bytes: string;
  text: string;
  /** The violating instruction. */
  at: boolean;
}

export interface ViolationView {
  step: number;
  cpu: number;
  kind: string;
  rip: string;
  explanation: string;
  disassembly: DisassemblyRow[];
}

export interface PhaseTable {
  name: string;
  rows: { phase: string; step: number; delta?: number }[];
}

/** What an exploration (`pvpatch check`) covered and what it found. */
export interface ExplorationView {
  verdict: string;
  executions?: number;
  states?: number;
  schedule?: string;
  replay?: string;
  steps?: number;
  preemptions?: number;
}

/** One value of a benchmark point over its seeds. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** A benchmark figure: one x category per row, one line (median) and band (min–max) per series. */
export interface BenchFigure {
  title: string;
  xLabels: string[];
  series: { label: string; points: (Spread | null)[] }[];
}

export interface ReportModel {
  title: string;
  source: string;
  ok: boolean;
  headline: string;
  facts: [string, string][];
  timeline?: Timeline;
  /** What the lanes' time axis counts (machine steps, or a schedule's decisions). */
  axis?: string;
  violation?: ViolationView;
  /** Where to mark the violation on the lanes when there is no ViolationView (a check's counterexample). */
  mark?: { step: number; cpu: number };
  phases: PhaseTable[];
  exploration?: ExplorationView;
  benches: BenchFigure[];
}
