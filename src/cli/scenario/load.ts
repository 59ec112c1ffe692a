/**
 * Reading a scenario file: YAML or JSON, validated against the schema, with errors that name the
 * file, the path inside it and (for a typo) the closest known key.
 */
import { readFileSync, existsSync, statSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseDocument } from 'yaml';
import { ScenarioError } from './errors.ts';
import type { InjectionPlanSpec } from './injection-plan.ts';

export type Num = number | string;

export interface MachineScenario {
  name?: string;
  description?: string;
  machine: { vcpus: number; tso?: boolean; stopOnHazard?: boolean };
  memory: { name?: string; at: Num; size: Num; perms: string }[];
  code: { name?: string; at: Num; asm?: string; hex?: string }[];
  data?: { at: Num; hex: string }[];
  vcpus: { rip: Num; rsp?: Num; gsBase?: Num; interrupts?: boolean; halted?: boolean; regs?: Record<string, Num> }[];
  idt?: Record<string, Num>;
  schedule?: { strategy?: 'timed' | 'random' | 'pct' | 'replay' | 'first'; seed?: number; replay?: string };
  inject?: { nmis?: number; irqs?: number; vector?: number; cpus?: number[] } & InjectionPlanSpec;
  run?: { maxInstructions?: number; stopWhenHalted?: number[] };
  observe?: { registers?: string[]; memory?: { name?: string; at: Num; size?: 1 | 2 | 4 | 8 }[] };
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest of `known` to `word`, if close enough to be a likely typo. */
export function didYouMean(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dist = editDistance(word.toLowerCase(), k.toLowerCase());
    if (dist < bestD) { bestD = dist; best = k; }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function schemaAt(schema: unknown, path: string): Record<string, unknown> | undefined {
  let s = schema as Record<string, unknown> | undefined;
  for (const part of path.split('/').filter(Boolean)) {
    if (!s) return undefined;
    if (s.type === 'array') s = s.items as Record<string, unknown>;
    else s = (s.properties as Record<string, Record<string, unknown>> | undefined)?.[part];
  }
  return s;
}

/** The value at a JSON pointer such as /vcpus/0 in a parsed document. */
function valueAt(doc: unknown, pointer: string): unknown {
  let v = doc;
  for (const part of pointer.split('/').filter(Boolean)) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return v;
}

function describe(file: string, err: ErrorObject, schema: unknown, doc: unknown): string {
  const where = err.instancePath === '' ? '(top level)' : err.instancePath;
  if (err.keyword === 'additionalProperties') {
    const key = String((err.params as { additionalProperty: string }).additionalProperty);
    const props = Object.keys((schemaAt(schema, err.instancePath)?.properties as object | undefined) ?? {});
    const hint = didYouMean(key, props);
    return `${file}: ${where}: unknown key '${key}'${hint ? ` (did you mean '${hint}'?)` : props.length ? ` (known keys: ${props.join(', ')})` : ''}`;
  }
  if (err.keyword === 'required') {
    // A missing required key is often a typo of it among the keys that are there.
    const missing = String((err.params as { missingProperty: string }).missingProperty);
    const here = valueAt(doc, err.instancePath);
    const props = Object.keys((schemaAt(schema, err.instancePath)?.properties as object | undefined) ?? {});
    const typo = typeof here === 'object' && here !== null ? Object.keys(here).find((k) => !props.includes(k) && didYouMean(k, [missing]) === missing) : undefined;
    return `${file}: ${where}: missing required key '${missing}'${typo !== undefined ? ` ('${typo}' is not a key: did you mean '${missing}'?)` : ''}`;
  }
  if (err.keyword === 'enum') {
    const allowed = (err.params as { allowedValues: unknown[] }).allowedValues.join(', ');
    return `${file}: ${where}: must be one of ${allowed}`;
  }
  return `${file}: ${where}: ${err.message ?? 'is invalid'}`;
}

/** Parse scenario text (YAML is a superset of JSON) into a document, not yet validated. */
function parseDoc(file: string, text: string): unknown {
  const fail = (why: string): never => {
    throw new ScenarioError(`${file}: not valid YAML or JSON: ${/call stack/i.test(why) ? 'nested too deeply' : why.split('\n')[0]}`);
  };
  try {
    // The yaml library reports warnings (an unresolved tag, …) through process.emitWarning, which
    // prints several lines; a scenario that is not plain YAML is refused with one line instead.
    const doc = parseDocument(text, { prettyErrors: false, logLevel: 'silent', uniqueKeys: true });
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem !== undefined) return fail(problem.message);
    // Aliases may not multiply a small file into a huge document ("billion laughs").
    return doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    if (e instanceof ScenarioError) throw e;
    return fail(e instanceof Error ? e.message : String(e));
  }
}

/** A scenario is a page or two of YAML; anything this large is the wrong file. */
const MAX_SCENARIO_BYTES = 16 * 1024 * 1024;

/**
 * Compiling a schema costs hundreds of milliseconds and the schemas are constants, so each is
 * compiled once per process (a cache of a pure function: the same schema gives the same validator).
 */
const validators = new WeakMap<object, ValidateFunction>();

function compiled(schema: object): ValidateFunction {
  let v = validators.get(schema);
  if (v === undefined) {
    v = new Ajv({ allErrors: false, strict: false }).compile(schema);
    validators.set(schema, v);
  }
  return v;
}

/** Validate a parsed document against `schema`; the first (most specific) complaint becomes the error. */
export function validateScenario<T>(file: string, doc: unknown, schema: object): T {
  const validate = compiled(schema);
  if (!validate(doc)) {
    const errs = validate.errors ?? [];
    // Prefer the most specific complaint: an unknown key beats a failed oneOf/anyOf.
    const pick = errs.find((e) => e.keyword === 'additionalProperties') ?? errs.find((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf') ?? errs[0];
    throw new ScenarioError(pick ? describe(file, pick, schema, doc) : `${file}: does not match the scenario schema`);
  }
  return doc as T;
}

/** Read and parse a scenario file once; validate it with validateScenario(). */
export function readScenarioDoc(file: string): unknown {
  if (!existsSync(file)) throw new ScenarioError(`${file}: no such scenario file`);
  if (!statSync(file).isFile()) throw new ScenarioError(`${file}: not a file`);
  if (statSync(file).size > MAX_SCENARIO_BYTES) throw new ScenarioError(`${file}: ${statSync(file).size} bytes is not a scenario (at most ${MAX_SCENARIO_BYTES / (1024 * 1024)} MiB)`);
  return parseDoc(file, readFileSync(file, 'utf8'));
}

function parseBig(v: Num, what: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new ScenarioError(`${what}: ${v} is not an exact integer (write large values as hex strings)`);
    return BigInt(v);
  }
  const t = v.replace(/_/g, '').trim();
  const neg = t.startsWith('-');
  const body = neg ? t.slice(1) : t;
  if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(body)) throw new ScenarioError(`${what}: '${v}' is not a number`);
  const b = BigInt(body);
  return neg ? -b : b;
}

/** A 64-bit register value (any integer that fits 64 bits, signed or unsigned). */
export function big(v: Num, what: string): bigint {
  const b = parseBig(v, what);
  if (b < -(1n << 63n) || b >= 1n << 64n) throw new ScenarioError(`${what}: '${v}' does not fit in 64 bits`);
  return BigInt.asUintN(64, b);
}

/** An address: 0xffffffff81000000 and -0x7f000000 name the same canonical address. */
export function num(v: Num, what: string): number {
  const n = Number(BigInt.asIntN(64, big(v, what)));
  if (n < -0x800000000000 || n >= 0x800000000000) throw new ScenarioError(`${what}: '${v}' is not a canonical x86-64 address`);
  return n;
}
