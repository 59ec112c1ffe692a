/**
 * Assembly text for scenarios: Intel-syntax lines handed to the assembler DSL (src/x86/asm.ts),
 * so users write guest code in YAML without TypeScript.
 *
 *   top:                       a label (alone or before an instruction)
 *   mov eax, dword [rdi+8]     registers, immediates, [base + index*scale + disp], size keywords
 *   lock cmpxchg [rdi], ecx    the lock prefix
 *   mov rax, gs:[0x10]         segment override
 *   call [rip + pv_ops]        a label inside brackets alone means RIP-relative to it
 *   jne top                    branch to a label or an absolute address
 *   .byte 0x66, 0x90           raw bytes;   .nop 4   Linux's 4-byte NOP
 *   # or ; starts a comment
 */
import { Asm, mem, rip, byte, word, dword, qword, gs, regByName, type Label, type RegOp, type MemOp } from './asm.ts';

export class AsmTextError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'AsmTextError';
  }
}

export interface TextAssembly {
  bytes: Uint8Array;
  labels: Map<string, number>;
}

const SIZE_WRAP: Record<string, (m: MemOp) => MemOp> = { byte, word, dword, qword };
const IDENT = /^[A-Za-z_.$][\w.$]*$/;

function register(name: string): RegOp | undefined {
  return regByName(name);
}

function number(text: string): bigint | undefined {
  const t = text.replace(/_/g, '');
  if (/^-?0x[0-9a-fA-F]+$/.test(t) || /^-?[0-9]+$/.test(t)) {
    const neg = t.startsWith('-');
    const v = BigInt(neg ? t.slice(1) : t);
    return neg ? -v : v;
  }
  return undefined;
}

function toNumber(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

type Operand = RegOp | bigint | Label | MemOp;

function parseMemory(inner: string, a: Asm, fail: (m: string) => never): MemOp {
  const terms = inner.replace(/\s+/g, '').replace(/-/g, '+-').split('+').filter((t) => t.length > 0);
  let base: RegOp | undefined;
  let index: RegOp | undefined;
  let scale = 1;
  let disp = 0n;
  let label: string | undefined;
  for (const t of terms) {
    const neg = t.startsWith('-');
    const body = neg ? t.slice(1) : t;
    const star = body.split('*');
    if (star.length === 2) {
      const r = register(star[0]!) ?? register(star[1]!);
      const s = number(star[0]!) ?? number(star[1]!);
      if (r === undefined || s === undefined || neg) fail(`bad scaled index '${t}'`);
      index = r;
      scale = Number(s);
      continue;
    }
    const r = register(body);
    if (r !== undefined) {
      if (neg) fail(`a register cannot be subtracted ('${t}')`);
      if (base === undefined) base = r;
      else if (index === undefined) index = r;
      else fail(`too many registers in [${inner}]`);
      continue;
    }
    if (body.toLowerCase() === 'rip') continue;
    const n = number(body);
    if (n !== undefined) { disp += neg ? -n : n; continue; }
    if (IDENT.test(body) && !neg) { label = body; continue; }
    fail(`cannot read '${t}' in [${inner}]`);
  }
  if (label !== undefined) {
    if (base !== undefined || index !== undefined) fail(`a label can only be used alone (RIP-relative) in [${inner}]`);
    return rip(a.label(label));
  }
  return mem({ base, index, scale, disp: toNumber(disp) });
}

function parseOperand(text: string, a: Asm, fail: (m: string) => never): Operand {
  let t = text.trim();
  let size: string | undefined;
  const sm = /^(byte|word|dword|qword)\s+(ptr\s+)?(.*)$/i.exec(t);
  if (sm) { size = sm[1]!.toLowerCase(); t = sm[3]!.trim(); }
  let seg = false;
  if (/^gs\s*:/i.test(t)) { seg = true; t = t.replace(/^gs\s*:\s*/i, ''); }
  if (t.startsWith('[') && t.endsWith(']')) {
    let m = parseMemory(t.slice(1, -1), a, fail);
    if (seg) m = gs(m);
    return size ? SIZE_WRAP[size]!(m) : m;
  }
  if (size || seg) fail(`'${text}' needs a [memory] operand`);
  const r = register(t);
  if (r !== undefined) return r;
  const n = number(t);
  if (n !== undefined) return n;
  if (IDENT.test(t)) return a.label(t);
  return fail(`cannot read operand '${text}'`);
}

function splitOperands(s: string): string[] {
  const out: string[] = [];
  let depth = 0, cur = '';
  for (const ch of s) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (ch === ',' && depth === 0) { out.push(cur); cur = ''; } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out.map((x) => x.trim());
}

/** Assemble `text` at `base`; errors name `where` and the line. */
export function assembleText(text: string, base: number, where = 'asm'): TextAssembly {
  const a = new Asm(base);
  const defined = new Set<string>();
  text.split('\n').forEach((raw, n) => {
    const fail = (msg: string): never => {
      throw new AsmTextError(`${where} line ${n + 1}: ${msg}: '${raw.trim()}'`);
    };
    let line = raw.replace(/[#;].*$/, '').trim();
    for (let m = /^([A-Za-z_.$][\w.$]*):\s*/.exec(line); m; m = /^([A-Za-z_.$][\w.$]*):\s*/.exec(line)) {
      if (defined.has(m[1]!)) fail(`label '${m[1]}' is defined twice`);
      defined.add(m[1]!);
      a.bind(a.label(m[1]!));
      line = line.slice(m[0].length);
    }
    if (!line) return;
    const [head, ...rest] = line.split(/\s+/);
    let mnemonic = head!.toLowerCase();
    let tail = rest.join(' ');
    if (mnemonic === '.byte') {
      const bytes = splitOperands(tail).map((b) => number(b));
      if (bytes.some((b) => b === undefined || b < -128n || b > 255n)) fail('.byte takes numbers 0..255');
      a.bytes(bytes.map((b) => Number(b!) & 0xff));
      return;
    }
    if (mnemonic === '.nop') {
      const len = number(tail.trim());
      if (len === undefined || len < 1n || len > 8n) fail('.nop takes a length 1..8');
      a.nop(Number(len));
      return;
    }
    let locked = false;
    if (mnemonic === 'lock') {
      locked = true;
      const [h2, ...r2] = tail.split(/\s+/);
      mnemonic = (h2 ?? '').toLowerCase();
      tail = r2.join(' ');
    }
    const ops = tail ? splitOperands(tail).map((o) => parseOperand(o, a, fail)) : [];
    try {
      (locked ? a.lock() : a).ins(mnemonic, ...ops);
    } catch (e) {
      fail(e instanceof Error ? e.message : String(e));
    }
  });
  let out;
  try {
    out = a.assemble();
  } catch (e) {
    throw new AsmTextError(`${where}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const labels = new Map<string, number>();
  for (const [k, v] of out.labels) labels.set(k, typeof v === 'bigint' ? toNumber(v) : v);
  return { bytes: out.bytes, labels };
}
