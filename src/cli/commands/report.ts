/**
 * `pvpatch report <run.json|check.json> -o report.html [--bench bench.json ...]`: one
 * self-contained HTML file of a run or a check's counterexample (src/trace/report.ts), with the
 * benchmark figures of any bench JSON given. Written whole or not at all.
 */
import { readFileSync } from 'node:fs';
import { benchFigures, reportFromJson, ReportInputError } from '../report-input.ts';
import { renderReport } from '../../trace/report.ts';
import { writeAtomically } from '../write-file.ts';
import type { ReportModel } from '../../trace/report-model.ts';

export interface ReportFlags {
  output?: string;
  bench?: string[];
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ReportInputError(`${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? 'error'})`}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ReportInputError(`${path}: not JSON (${(e as Error).message.split('\n')[0]})`);
  }
}

export function reportCommand(input: string | undefined, flags: ReportFlags): number {
  if (!flags.output) throw new ReportInputError('report needs -o <file.html>, the file to write');
  const benches = flags.bench ?? [];
  if (input === undefined && benches.length === 0) throw new ReportInputError('report needs a run or check JSON, or --bench <bench.json>');
  const base: ReportModel = input !== undefined
    ? reportFromJson(readJson(input), input)
    : { title: 'pvpatch benchmarks', source: benches.join(', '), ok: true, headline: `${benches.length} benchmark file(s)`, facts: [], phases: [], benches: [] };
  const model: ReportModel = { ...base, benches: [...base.benches, ...benches.flatMap((b) => benchFigures(readJson(b), b))] };
  writeAtomically(flags.output, renderReport(model));
  process.stderr.write(`pvpatch: report written to ${flags.output}\n`);
  return 0;
}

