/**
 * Drives test/native/harness.c: builds it once (cached by source hash under .cache/native/) and
 * streams cases through one harness process per `runNative` call. The binary layout of cases
 * and results is described at the top of harness.c.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Fixed layout shared by the harness and the simulator side of the differential test. */
export const CODE_BASE = 0x2000_0000;
export const EXIT_STUB = CODE_BASE + 0xf000;
export const SCRATCH_BASE = 0x1000_0000;
export const SCRATCH_SIZE = 0x1_0000;
/** The GS base in both worlds: `%gs:disp` addresses the scratch region. */
export const GS_BASE = SCRATCH_BASE;
/** Initial rsp (the top 4 KiB of the scratch region is the stack). */
export const STACK_TOP = SCRATCH_BASE + SCRATCH_SIZE - 256;
/** Largest body the harness accepts (code must end below the exit stub). */
export const MAX_CODE = EXIT_STUB - CODE_BASE - 5;

export interface MemPatch {
  /** Offset into the scratch region. */
  offset: number;
  bytes: Uint8Array;
}

export interface NativeCase {
  /** 16 GPRs in encoding order (rax..r15). rsp is replaced by STACK_TOP. */
  regs: readonly bigint[];
  /** Initial status flags (CF PF AF ZF SF OF); other bits are ignored. */
  rflags: number;
  /** Code assembled at CODE_BASE; the runner appends the jump back to the harness. */
  code: Uint8Array;
  /** The scratch region starts as splitmix64(memSeed) words, then `patches`. */
  memSeed: bigint;
  patches?: readonly MemPatch[];
}

export type NativeStatus = 'ok' | 'segv' | 'ill' | 'fpe' | 'bus' | 'trap' | 'timeout';
const STATUSES: readonly NativeStatus[] = ['ok', 'segv', 'ill', 'fpe', 'bus', 'trap', 'timeout'];

export interface NativeResult {
  status: NativeStatus;
  regs: bigint[];
  /** RFLAGS as pushed at exit (includes IF and the reserved bit 1). */
  rflags: number;
  /** For a fault: the faulting RIP and, for SIGSEGV/SIGBUS, the address. */
  faultRip: bigint;
  faultAddr: bigint;
  /** Runs of scratch bytes that differ from the initial image. */
  memDiff: MemPatch[];
}

const MAGIC_CASE = 0x45534143;
const MAGIC_SYNC = 0x434e5953;
const MAGIC_RSLT = 0x544c5352;
const STATUS_FLAGS = 0x8d5;

const here = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(here, 'harness.c');
const CACHE = resolve(here, '../../.cache/native');

/** splitmix64 stream, as the harness fills the scratch region. */
export function* splitmix64(seed: bigint): Generator<bigint> {
  let s = BigInt.asUintN(64, seed);
  for (;;) {
    s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
    let z = s;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    yield z ^ (z >> 31n);
  }
}

/** The scratch region's initial bytes for a case (what the simulator must start from). */
export function scratchImage(memSeed: bigint, patches: readonly MemPatch[] = []): Uint8Array {
  const img = new Uint8Array(SCRATCH_SIZE);
  const dv = new DataView(img.buffer);
  const gen = splitmix64(memSeed);
  for (let i = 0; i < SCRATCH_SIZE; i += 8) dv.setBigUint64(i, gen.next().value as bigint, true);
  for (const p of patches) img.set(p.bytes, p.offset);
  return img;
}

/** Runs of bytes where `now` differs from `before`, in the harness's format. */
export function diffRuns(before: Uint8Array, now: Uint8Array): MemPatch[] {
  const out: MemPatch[] = [];
  for (let i = 0; i < now.length; ) {
    if (now[i] === before[i]) { i++; continue; }
    let j = i;
    while (j < now.length && now[j] !== before[j]) j++;
    out.push({ offset: i, bytes: now.slice(i, j) });
    i = j;
  }
  return out;
}

let built: string | { skip: string } | undefined;

/** Path of the compiled harness, or why there is none. Builds at most once per process. */
export function harnessBinary(): string | { skip: string } {
  if (built !== undefined) return built;
  built = build();
  return built;
}

function build(): string | { skip: string } {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return { skip: `the native harness needs x86-64 Linux (this is ${process.platform}/${process.arch})` };
  }
  const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return { skip: 'no C compiler (`cc`) on this machine' };
  const src = readFileSync(SOURCE);
  const hash = createHash('sha256').update(src).update(cc.stdout).digest('hex').slice(0, 16);
  const bin = join(CACHE, `harness-${hash}`);
  if (existsSync(bin)) return bin;
  mkdirSync(CACHE, { recursive: true });
  // Build under a private name, then rename: test files run in parallel processes.
  const tmp = `${bin}.${process.pid}.tmp`;
  const r = spawnSync('cc', ['-O1', '-o', tmp, SOURCE], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the native harness failed:\n${r.stderr}`);
  renameSync(tmp, bin);
  return bin;
}

function encodeCase(c: NativeCase): Buffer {
  // Epilogue: jmp EXIT_STUB (e9 rel32), back into the harness without touching the stack.
  const codeLen = c.code.length + 5;
  if (codeLen > MAX_CODE + 5) throw new Error(`native case code is ${c.code.length} bytes; at most ${MAX_CODE}`);
  const patches = c.patches ?? [];
  const size = 16 + 18 * 8 + codeLen + patches.reduce((s, p) => s + 8 + p.bytes.length, 0);
  const b = Buffer.alloc(size);
  let at = 0;
  b.writeUInt32LE(MAGIC_CASE, 0);
  b.writeUInt32LE(codeLen, 4);
  b.writeUInt32LE(patches.length, 8);
  at = 16;
  if (c.regs.length !== 16) throw new Error('a native case needs 16 registers');
  for (const r of c.regs) { b.writeBigUInt64LE(BigInt.asUintN(64, r), at); at += 8; }
  b.writeBigUInt64LE(BigInt(c.rflags & STATUS_FLAGS), at); at += 8;
  b.writeBigUInt64LE(BigInt.asUintN(64, c.memSeed), at); at += 8;
  b.set(c.code, at); at += c.code.length;
  b[at] = 0xe9;
  b.writeInt32LE(EXIT_STUB - (CODE_BASE + codeLen), at + 1);
  at += 5;
  for (const p of patches) {
    if (p.offset < 0 || p.offset + p.bytes.length > SCRATCH_SIZE) throw new Error(`patch at ${p.offset} is outside the scratch region`);
    b.writeUInt32LE(p.offset, at);
    b.writeUInt32LE(p.bytes.length, at + 4);
    b.set(p.bytes, at + 8);
    at += 8 + p.bytes.length;
  }
  return b;
}

/** Incremental parser of the harness's result stream. */
class ResultReader {
  private buf: Buffer = Buffer.alloc(0);
  readonly results: NativeResult[] = [];
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let at = 0;
    const fixed = 8 + 16 * 8 + 3 * 8 + 4;
    for (;;) {
      if (this.buf.length - at < fixed) break;
      if (this.buf.readUInt32LE(at) !== MAGIC_RSLT) throw new Error('native harness: bad result record');
      let p = at + fixed;
      const runs = this.buf.readUInt32LE(p - 4);
      const diffs: MemPatch[] = [];
      let complete = true;
      for (let k = 0; k < runs; k++) {
        if (this.buf.length - p < 8) { complete = false; break; }
        const offset = this.buf.readUInt32LE(p);
        const len = this.buf.readUInt32LE(p + 4);
        if (this.buf.length - p - 8 < len) { complete = false; break; }
        diffs.push({ offset, bytes: Uint8Array.from(this.buf.subarray(p + 8, p + 8 + len)) });
        p += 8 + len;
      }
      if (!complete) break;
      const regs: bigint[] = [];
      for (let i = 0; i < 16; i++) regs.push(this.buf.readBigUInt64LE(at + 8 + i * 8));
      const o = at + 8 + 128;
      this.results.push({
        status: STATUSES[this.buf.readUInt32LE(at + 4)] ?? 'timeout',
        regs,
        rflags: Number(this.buf.readBigUInt64LE(o)),
        faultRip: this.buf.readBigUInt64LE(o + 8),
        faultAddr: this.buf.readBigUInt64LE(o + 16),
        memDiff: diffs,
      });
      at = p;
    }
    this.buf = this.buf.subarray(at);
  }
}

/**
 * Run `cases` on the real CPU, in order. Resolves to one result per case, or to a skip reason
 * where no harness can exist (not x86-64 Linux, no `cc`).
 */
export async function runNative(cases: readonly NativeCase[]): Promise<NativeResult[] | { skip: string }> {
  const bin = harnessBinary();
  if (typeof bin !== 'string') return bin;
  if (cases.length === 0) return [];
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
  const reader = new ResultReader();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const done = new Promise<NativeResult[]>((resolveDone, reject) => {
    child.on('error', reject);
    child.stdout.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (e) {
        child.kill();
        reject(e);
      }
    });
    child.on('close', (code) => {
      if (reader.results.length === cases.length) resolveDone(reader.results);
      else reject(new Error(`native harness exited (${code}) after ${reader.results.length} of ${cases.length} cases: ${stderr.trim()}`));
    });
  });
  // Write in chunks, honouring backpressure; the harness flushes at SYNC and at end of input.
  const CHUNK = 256;
  for (let i = 0; i < cases.length; i += CHUNK) {
    const part = Buffer.concat(cases.slice(i, i + CHUNK).map(encodeCase));
    if (!child.stdin.write(part)) await new Promise((r) => child.stdin.once('drain', r));
  }
  const sync = Buffer.alloc(16);
  sync.writeUInt32LE(MAGIC_SYNC, 0);
  child.stdin.end(sync);
  return done;
}

/** RFLAGS status bits (CF PF AF ZF SF OF). */
export const NATIVE_STATUS_FLAGS = STATUS_FLAGS;
