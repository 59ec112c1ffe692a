// DESIGN.md §8: the interpreter against the real CPU. Random sequences from the supported subset
// (test/x86/sequence-gen.ts) run natively (test/native/harness.c) and in the simulator, and must
// leave identical registers, defined status flags and scratch memory.
//
//   PVPATCH_DIFF_N=100000 PVPATCH_DIFF_SEED=7 node --import tsx --test test/x86/differential.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine, TIERS, type Tier } from '../../src/machine/machine.ts';
import { disassemble, hexBytes } from '../../src/x86/format.ts';
import { Flag, REG_NAMES, STATUS_FLAGS, RFLAGS_FIXED } from '../../src/x86/registers.ts';
import {
  CODE_BASE, GS_BASE, SCRATCH_BASE, SCRATCH_SIZE, harnessBinary, runNative, scratchImage,
  type NativeCase, type NativeResult,
} from '../native/native-runner.ts';
import { SequenceGenerator, assembleSequence, type Sequence } from './sequence-gen.ts';

const N = Number(process.env.PVPATCH_DIFF_N ?? 20_000);
const SEED = Number(process.env.PVPATCH_DIFF_SEED ?? 1);
/** Detail only failures whose first differing instruction has this mnemonic (e.g. `rcll`). */
const FOCUS = process.env.PVPATCH_DIFF_FOCUS;
const MAX_REPORTS = 10;

const HLT = 0xf4;
const PAGE = 0x1000;

const skip = ((): string | false => {
  const b = harnessBinary();
  return typeof b === 'string' ? false : b.skip;
})();

interface Outcome {
  ok: boolean;
  /** Why the run did not finish normally (fault, unsupported instruction, limit). */
  failure?: string;
  regs: bigint[];
  rflags: number;
  memory: Uint8Array;
}

/** Base machines (code and scratch mapped, scratch image written) per image; cases fork them. */
class SimSide {
  /** Issue 12: the same sequences run on both execution tiers, each against the real CPU. */
  constructor(private readonly tier: Tier) {}

  private readonly bases = new Map<string, Machine>();
  private readonly images = new Map<bigint, Uint8Array>();

  image(memSeed: bigint): Uint8Array {
    let img = this.images.get(memSeed);
    if (!img) { img = scratchImage(memSeed); this.images.set(memSeed, img); }
    return img;
  }

  private base(memSeed: bigint, tso: boolean): Machine {
    const key = `${memSeed}/${tso}`;
    let m = this.bases.get(key);
    if (!m) {
      m = new Machine({ vcpus: 1, tso, tier: this.tier });
      m.memory.map(CODE_BASE, 0x10000, 'rwx');
      m.memory.map(SCRATCH_BASE, SCRATCH_SIZE, 'rw');
      m.memory.writeBytes(SCRATCH_BASE, this.image(memSeed));
      this.bases.set(key, m);
    }
    return m;
  }

  /** Run `code` (+ hlt) from the sequence's initial state. Odd indexes run without store buffers. */
  run(seq: Sequence, code: Uint8Array): Outcome {
    const m = this.base(seq.memSeed, seq.index % 2 === 0).fork();
    const body = new Uint8Array(code.length + 1);
    body.set(code);
    body[code.length] = HLT;
    m.memory.writeBytes(CODE_BASE, body);
    for (const p of seq.patches) m.memory.writeBytes(SCRATCH_BASE + p.offset, p.bytes);
    const cpu = m.vcpus[0]!;
    seq.regs.forEach((v, r) => cpu.setReg64(r, v));
    cpu.rip = CODE_BASE;
    cpu.gsBase = GS_BASE;
    // IF=1 as in the native user process, so pushfq pushes the same value; hlt still halts for
    // good because nothing can interrupt.
    cpu.flags = (seq.rflags & STATUS_FLAGS) | RFLAGS_FIXED | Flag.IF;
    const r = m.run({ maxInstructions: 10_000 });
    const regs = Array.from({ length: 16 }, (_, i) => cpu.getReg64(i));
    const memory = new Uint8Array(SCRATCH_SIZE);
    for (let off = 0; off < SCRATCH_SIZE; off += PAGE) memory.set(m.memory.page(SCRATCH_BASE + off)!.data, off);
    const ok = r.reason === 'all-halted' && cpu.rip === CODE_BASE + body.length;
    const failure = ok ? undefined : `simulator stopped with '${r.reason}' at 0x${cpu.rip.toString(16)}${r.error ? `: ${r.error.message}` : ''}`;
    return { ok, failure, regs, rflags: cpu.flags, memory };
  }
}

function nativeOutcome(sim: SimSide, seq: Sequence, r: NativeResult): Outcome {
  const memory = sim.image(seq.memSeed).slice();
  for (const p of seq.patches) memory.set(p.bytes, p.offset);
  for (const d of r.memDiff) memory.set(d.bytes, d.offset);
  const ok = r.status === 'ok';
  const failure = ok ? undefined : `native run ended with ${r.status} at rip 0x${r.faultRip.toString(16)} (address 0x${r.faultAddr.toString(16)})`;
  return { ok, failure, regs: r.regs, rflags: r.rflags, memory };
}

function nativeCase(seq: Sequence, code: Uint8Array): NativeCase {
  return { regs: seq.regs, rflags: seq.rflags, code, memSeed: seq.memSeed, patches: seq.patches };
}

const hex64 = (v: bigint): string => '0x' + BigInt.asUintN(64, v).toString(16).padStart(16, '0');
const FLAG_NAMES: [number, string][] = [[Flag.CF, 'CF'], [Flag.PF, 'PF'], [Flag.AF, 'AF'], [Flag.ZF, 'ZF'], [Flag.SF, 'SF'], [Flag.OF, 'OF']];
const flagText = (f: number): string => FLAG_NAMES.filter(([b]) => f & b).map(([, n]) => n).join(' ') || '-';

/** Differences between the native and simulated outcomes, one line each (empty: identical). */
function compare(native: Outcome, sim: Outcome, defined: number): string[] {
  const out: string[] = [];
  if (!native.ok) out.push(native.failure!);
  if (!sim.ok) out.push(sim.failure!);
  if (out.length > 0) return out;
  for (let i = 0; i < 16; i++) {
    if (native.regs[i] !== sim.regs[i]) out.push(`${REG_NAMES[i]!.padEnd(4)} native ${hex64(native.regs[i]!)}  sim ${hex64(sim.regs[i]!)}`);
  }
  const fd = (native.rflags ^ sim.rflags) & defined;
  if (fd !== 0) out.push(`flags (defined: ${flagText(defined)}) differ in ${flagText(fd)}: native ${flagText(native.rflags & defined)}, sim ${flagText(sim.rflags & defined)}`);
  let memDiffs = 0;
  for (let i = 0; i < SCRATCH_SIZE; i++) {
    if (native.memory[i] === sim.memory[i]) continue;
    if (memDiffs++ < 4) {
      const at = i & ~7;
      out.push(`memory [r15+0x${i.toString(16)}]: native ${hexBytes(native.memory.subarray(at, at + 8))}  sim ${hexBytes(sim.memory.subarray(at, at + 8))} (from +0x${at.toString(16)})`);
    }
  }
  if (memDiffs > 4) out.push(`... ${memDiffs} differing memory bytes in all`);
  return out;
}

function describeSequence(seq: Sequence, code: Uint8Array): string {
  const lines = [
    `seed ${seq.seed}, sequence #${seq.index} (PVPATCH_DIFF_SEED=${seq.seed}), ${seq.index % 2 === 0 ? 'TSO' : 'no store buffer'}`,
    'initial state:',
    ...Array.from({ length: 16 }, (_, i) => `  ${REG_NAMES[i]!.padEnd(4)} ${hex64(seq.regs[i]!)}`),
    `  flags ${flagText(seq.rflags)}; scratch = splitmix64(${seq.memSeed}) with ${seq.patches.map((p) => `+0x${p.offset.toString(16)}: ${hexBytes(p.bytes)}`).join('; ')}`,
    'code:',
    ...disassemble(code, CODE_BASE).map((l) => `  ${l.address.toString(16)}  ${hexBytes(l.bytes).padEnd(30)} ${l.text}`),
  ];
  return lines.join('\n');
}

interface Localized {
  /** 1-based number of the first step after which the two sides differ. */
  step: number;
  /** That step's instructions. */
  text: string;
  diff: string[];
}

/**
 * The first step after which native and simulated runs disagree, per sequence: every prefix of
 * every sequence runs on both sides (natively in one harness process).
 */
async function firstDifferingSteps(sim: SimSide, seqs: readonly Sequence[]): Promise<(Localized | undefined)[]> {
  const prefixes = seqs.map((seq) => seq.steps.map((_, k) => assembleSequence(seq, k + 1)));
  const cases = seqs.flatMap((seq, i) => prefixes[i]!.map((c) => nativeCase(seq, c)));
  const native = await runNative(cases);
  if (!Array.isArray(native)) return seqs.map(() => undefined);
  let at = 0;
  return seqs.map((seq, i) => {
    const ps = prefixes[i]!;
    const results = native.slice(at, at + ps.length);
    at += ps.length;
    for (let k = 0; k < ps.length; k++) {
      const diff = compare(nativeOutcome(sim, seq, results[k]!), sim.run(seq, ps[k]!), seq.definedAfter[k]!);
      if (diff.length === 0) continue;
      const before = k === 0 ? 0 : ps[k - 1]!.length;
      const text = disassemble(ps[k]!.subarray(before), CODE_BASE + before).map((l) => l.text).join('; ');
      return { step: k + 1, text, diff };
    }
    return undefined;
  });
}

/** Mnemonic of a step's first instruction, for the summary (`lock` keeps its instruction). */
function stepMnemonic(text: string): string {
  const m = /^(lock )?(\S+)/.exec(text);
  return m ? (m[1] ?? '') + m[2]! : text;
}

test(`the interpreter matches the real CPU on ${N} random sequences (seed ${SEED}), on both tiers`, { skip, timeout: 30 * 60_000 }, async (t) => {
  const gen = new SequenceGenerator(SEED);
  const seqs: Sequence[] = [];
  const codes: Uint8Array[] = [];
  for (let i = 0; i < N; i++) {
    const s = gen.sequence(i);
    seqs.push(s);
    codes.push(assembleSequence(s));
  }
  const native = await runNative(seqs.map((s, i) => nativeCase(s, codes[i]!)));
  if (!Array.isArray(native)) { t.skip(native.skip); return; }
  // The interpreter and the compiled tier, each against the same native results (issue 12).
  for (const tier of TIERS) await checkTier(tier, seqs, codes, native);
});

async function checkTier(tier: Tier, seqs: readonly Sequence[], codes: readonly Uint8Array[], native: readonly NativeResult[]): Promise<void> {
  const sim = new SimSide(tier);
  const failing: { seq: Sequence; code: Uint8Array; diff: string[] }[] = [];
  for (let i = 0; i < N; i++) {
    const seq = seqs[i]!;
    const diff = compare(nativeOutcome(sim, seq, native[i]!), sim.run(seq, codes[i]!), seq.definedAfter.at(-1)!);
    if (diff.length > 0) failing.push({ seq, code: codes[i]!, diff });
  }
  if (failing.length === 0) return;

  // Name the first differing instruction of (up to) 1,000 failures, and detail the first ten.
  const sample = failing.slice(0, 1000);
  const where = await firstDifferingSteps(sim, sample.map((f) => f.seq));
  const byMnemonic = new Map<string, number>();
  for (const w of where) {
    const key = w ? stepMnemonic(w.text) : '(not localized)';
    byMnemonic.set(key, (byMnemonic.get(key) ?? 0) + 1);
  }
  const summary = [...byMnemonic].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} x${n}`).join(', ');
  const detailed = sample.map((f, i) => ({ ...f, w: where[i] })).filter((f) => !FOCUS || (f.w && stepMnemonic(f.w.text) === FOCUS));
  const reports = detailed.slice(0, MAX_REPORTS).map((f) => {
    const w = f.w;
    return [
      describeSequence(f.seq, f.code),
      'differences:',
      ...f.diff.map((d) => `  ${d}`),
      ...(w ? [`first difference after step ${w.step} of ${f.seq.steps.length}: ${w.text}`, ...w.diff.map((d) => `  ${d}`)] : []),
    ].join('\n');
  });
  assert.fail(
    `${failing.length} of ${N} sequences differ between the real CPU and the simulator (tier ${tier})\n` +
    `first differing instruction (of ${sample.length}): ${summary}\n\n${reports.join('\n\n')}`,
  );
}
