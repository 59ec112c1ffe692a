/**
 * A litmus test's final condition, in the subset of herdtools7's syntax that a final state of
 * observed values can answer: `exists (0:rax=0 /\ 1:rax=0)`, `~exists (...)`, `forall (...)`,
 * with `/\`, `\/`, `~`, parentheses, and atoms `loc=value` / `loc!=value` where `loc` is an
 * observed register (`0:rax`), a named memory location (`x`) or `[0x10000]`. Values are
 * non-negative integers (decimal or hex).
 */
import { parseState } from './observation.ts';
import type { Counted } from './exploration.ts';

export class ConditionError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ConditionError';
  }
}

export type Quantifier = 'exists' | '~exists' | 'forall';

export type Proposition =
  | { readonly op: 'atom'; readonly loc: string; readonly equal: boolean; readonly value: bigint }
  | { readonly op: 'not'; readonly p: Proposition }
  | { readonly op: 'and' | 'or'; readonly ps: readonly Proposition[] }
  | { readonly op: 'const'; readonly value: boolean };

export interface Condition {
  readonly quantifier: Quantifier;
  readonly proposition: Proposition;
  readonly text: string;
}

const TOKEN = /\s*(~exists|exists|forall|true|false|\/\\|\\\/|!=|=|~|\(|\)|\[[^\]]*\]|[0-9]+:[a-z0-9]+|0x[0-9a-fA-F]+|[0-9]+|[A-Za-z_][A-Za-z0-9_]*)/y;

function tokenize(text: string): string[] {
  const out: string[] = [];
  TOKEN.lastIndex = 0;
  let at = 0;
  while (at < text.length) {
    if (/^\s*$/.test(text.slice(at))) break;
    TOKEN.lastIndex = at;
    const m = TOKEN.exec(text);
    if (m === null) throw new ConditionError(`--expect: cannot read '${text.slice(at).trim()}' (write e.g. 'exists (0:rax=0 /\\ 1:rax=0)')`);
    out.push(m[1]!);
    at = TOKEN.lastIndex;
  }
  return out;
}

/** Parse a condition; the error names what it could not read. */
export function parseCondition(text: string): Condition {
  const toks = tokenize(text);
  let i = 0;
  const peek = (): string | undefined => toks[i];
  const take = (want?: string): string => {
    const t = toks[i];
    if (t === undefined) throw new ConditionError(`--expect: '${text}' ends early${want ? ` (expected '${want}')` : ''}`);
    if (want !== undefined && t !== want) throw new ConditionError(`--expect: expected '${want}' but found '${t}' in '${text}'`);
    i++;
    return t;
  };
  const q = take();
  if (q !== 'exists' && q !== '~exists' && q !== 'forall') throw new ConditionError(`--expect must start with exists, ~exists or forall, not '${q}'`);
  const disj = (): Proposition => {
    const ps = [conj()];
    while (peek() === '\\/') { take(); ps.push(conj()); }
    return ps.length === 1 ? ps[0]! : { op: 'or', ps };
  };
  const conj = (): Proposition => {
    const ps = [unary()];
    while (peek() === '/\\') { take(); ps.push(unary()); }
    return ps.length === 1 ? ps[0]! : { op: 'and', ps };
  };
  const unary = (): Proposition => {
    const t = take();
    if (t === '~') return { op: 'not', p: unary() };
    if (t === '(') { const p = disj(); take(')'); return p; }
    if (t === 'true' || t === 'false') return { op: 'const', value: t === 'true' };
    if (!/^([0-9]+:[a-z0-9]+|\[[^\]]*\]|[A-Za-z_][A-Za-z0-9_]*)$/.test(t)) throw new ConditionError(`--expect: expected a location (0:rax, x, [0x10000]) but found '${t}'`);
    const rel = take();
    if (rel !== '=' && rel !== '!=') throw new ConditionError(`--expect: expected '=' or '!=' after '${t}', found '${rel}'`);
    const v = take();
    if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) throw new ConditionError(`--expect: '${v}' is not a non-negative integer (after '${t}${rel}')`);
    return { op: 'atom', loc: canonicalLoc(t), equal: rel === '=', value: BigInt(v) };
  };
  const proposition = disj();
  if (i < toks.length) throw new ConditionError(`--expect: unexpected '${toks[i]}' after the condition`);
  return { quantifier: q, proposition, text: text.trim() };
}

/** `[0x10000]` and `[65536]` name one location; states print addresses in lower-case hex. */
function canonicalLoc(t: string): string {
  if (!t.startsWith('[')) return t;
  const inner = t.slice(1, -1).trim();
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(inner)) throw new ConditionError(`--expect: '${t}' is not an address`);
  return `[0x${BigInt(inner).toString(16)}]`;
}

function locations(p: Proposition, out: Set<string>): Set<string> {
  if (p.op === 'atom') out.add(p.loc);
  else if (p.op === 'not') locations(p.p, out);
  else if (p.op === 'and' || p.op === 'or') for (const q of p.ps) locations(q, out);
  return out;
}

function holdsIn(p: Proposition, values: ReadonlyMap<string, bigint>): boolean {
  switch (p.op) {
    case 'atom': return (values.get(p.loc) === p.value) === p.equal;
    case 'not': return !holdsIn(p.p, values);
    case 'and': return p.ps.every((q) => holdsIn(q, values));
    case 'or': return p.ps.some((q) => holdsIn(q, values));
    case 'const': return p.value;
  }
}

export interface ConditionResult {
  readonly condition: string;
  readonly holds: boolean;
  /** Distinct final states (and executions) in which the proposition is true. */
  readonly satisfyingStates: number;
  readonly satisfyingExecutions: number;
  readonly states: number;
}

/** Judge `c` on an exploration's distinct final states; a location the states do not hold is an error. */
export function judgeCondition(c: Condition, states: readonly Counted[]): ConditionResult {
  const parsed = states.map((s) => ({ values: parseState(s.key), count: s.count }));
  const known = new Set(parsed.flatMap((s) => [...s.values.keys()]));
  for (const loc of locations(c.proposition, new Set())) {
    if (!known.has(loc)) throw new ConditionError(`--expect names '${loc}', which the final states do not hold (observed: ${[...known].join(', ') || 'nothing: add an observe: section'})`);
  }
  let sat = 0;
  let satExec = 0;
  for (const s of parsed) if (holdsIn(c.proposition, s.values)) { sat++; satExec += s.count; }
  const holds = c.quantifier === 'exists' ? sat > 0 : c.quantifier === '~exists' ? sat === 0 : sat === parsed.length;
  return { condition: c.text, holds, satisfyingStates: sat, satisfyingExecutions: satExec, states: parsed.length };
}
