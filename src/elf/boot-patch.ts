/**
 * Every boot-time write to the kernel's text, in the kernel's order (init/main.c start_kernel):
 *   1. setup_arch → jump_label_init: each `__jump_table` site at its key's boot state;
 *   2. setup_arch → static_call_init: each `.static_call_sites` site calls its key's function;
 *   3. ftrace_init: each `__mcount_loc` `call __fentry__` becomes a 5-byte NOP;
 *   4. arch_cpu_finalize_init → alternative_instructions() (arch/x86/kernel/alternative.c):
 *      a. apply_paravirt (until 6.7): indirect pv_ops calls become direct calls (or NOPs);
 *      b. apply_retpolines, c. apply_returns: before alternatives, "since those can rewrite the
 *         retpoline thunks", and because replacements are copied from .altinstr_replacement,
 *         which has its own retpoline and return sites;
 *      d. apply_alternatives: inline replacements over the direct calls of a. (6.8+: pv-ops
 *         sites are alternatives with ALT_FLAG_DIRECT_CALL);
 *      e. apply_seal_endbr (CONFIG_X86_KERNEL_IBT): functions whose address is never taken lose
 *         their ENDBR;
 *      f. on a uniprocessor boot, alternatives_smp_unlock: LOCK prefixes become DS prefixes;
 *   4f. arch_cpu_finalize_init → runtime_const_init(ptr, USER_PTR_MAX) (6.11+);
 *   5. early initcalls (preempt_dynamic_init): static calls the boot re-aims, trampolines included.
 * (paravirt_set_cap, which sets the artificial features d. reads, is part of the BootEnv.)
 * The result is the patched text plus, per table, each site's outcome.
 */
import { applyAlternatives, type AltOutcome } from './apply-alternatives.ts';
import { applyAlternatives612 } from './apply-alternatives-6.12.ts';
import { applyFtraceNops, type FtraceOutcome } from './apply-ftrace.ts';
import { applyJumpLabels, type JumpLabelState } from './apply-jump-labels.ts';
import { paravirtPatch } from './apply-paravirt.ts';
import { applyRetpolines, type RetpolineOutcome } from './apply-retpolines.ts';
import { applyReturns, type ReturnOutcome } from './apply-returns.ts';
import { applySealEndbr, type EndbrOutcome } from './apply-endbr.ts';
import { applySmpUnlock, type SmpLockOutcome } from './apply-smp-locks.ts';
import { applyStaticCalls, staticCallBytes, type StaticCallOutcome } from './apply-static-calls.ts';
import { applyRuntimeConsts, type RuntimeConstOutcome } from './apply-runtime-consts.ts';
import type { BootEnv } from './boot-env.ts';
import { featureByName } from './cpufeatures.ts';
import type { KernelImage } from './image.ts';
import { decodeKernelInsn } from './kernel-insn.ts';
import { PatchedText } from './patched-text.ts';
import type { PatchTables, TableName } from './tables.ts';

export interface BootPatchResult {
  readonly image: KernelImage;
  readonly tables: PatchTables;
  readonly text: PatchedText;
  readonly jumpLabels: readonly JumpLabelState[];
  readonly staticCalls: readonly StaticCallOutcome[];
  readonly ftrace: readonly FtraceOutcome[];
  readonly paravirt: readonly ('patched' | 'bad-entry')[];
  readonly retpolines: readonly RetpolineOutcome[];
  readonly returns: readonly ReturnOutcome[];
  readonly alternatives: readonly AltOutcome[];
  readonly endbr: readonly EndbrOutcome[];
  /** alternatives_smp_unlock, when the boot is uniprocessor (else empty). */
  readonly smpLocks: readonly SmpLockOutcome[];
  /** Per runtime constant (tables.runtimeConsts), per site. */
  readonly runtimeConsts: readonly (readonly RuntimeConstOutcome[])[];
}

/** The writes of alternative_instructions() only (what module_finalize does for a module, and the 6.1 tier's scope). */
export function alternativeInstructions(image: KernelImage, tables: PatchTables, env: BootEnv, text = new PatchedText(image)): Omit<BootPatchResult, 'jumpLabels' | 'staticCalls' | 'ftrace' | 'runtimeConsts'> {
  const paravirt = tables.parainstructions.map((p) => {
    const orig = text.read(p.address, p.len);
    const bytes = orig === undefined ? undefined : paravirtPatch(p, orig, env);
    if (bytes === undefined) return 'bad-entry' as const;
    text.write(p.address, bytes);
    return 'patched' as const;
  });
  const retpolines = applyRetpolines(tables.retpolineSites, text, env);
  const returns = applyReturns(tables.returnSites, text, env);
  const alternatives = tables.layouts.dialect === '6.12' ? applyAlternatives612(tables.altinstructions, text, env) : applyAlternatives(tables.altinstructions, text, env);
  const endbr = applySealEndbr(tables.endbrSeal, text, tables.layouts.dialect);
  // Patch to UP if other CPUs are not imminent, over [_text, _etext).
  const t0 = image.symbols.addressOf('_text') ?? image.section('.text')?.addr;
  const t1 = image.symbols.addressOf('_etext') ?? ((s) => (s === undefined ? undefined : s.addr + s.size))(image.section('.text'));
  const smpLocks = env.uniprocessor && t0 !== undefined && t1 !== undefined ? applySmpUnlock(tables.smpLocks, text, t0, t1) : [];
  return { image, tables, text, paravirt, retpolines, returns, alternatives, endbr, smpLocks };
}

/** Every boot-time text write, in start_kernel's order. */
export function bootTextWrites(image: KernelImage, tables: PatchTables, env: BootEnv): BootPatchResult {
  const text = new PatchedText(image);
  const jumpLabels = tables.jumpTable === undefined ? [] : applyJumpLabels(tables.jumpTable, text, env.jumpKeyAtBoot);
  const staticCalls = tables.staticCallSites === undefined ? [] : applyStaticCalls(tables.staticCallSites, text, env.staticCalls, env.staticCallAtBoot);
  const ftrace = tables.mcountLoc === undefined ? [] : applyFtraceNops(tables.mcountLoc, env.fentry, text);
  const alternatives = alternativeInstructions(image, tables, env, text);
  const runtimeConsts = applyRuntimeConsts(tables.runtimeConsts, text, env.features.has(featureByName('LA57')!.bit) && !env.no5lvl);
  // 5. early initcalls: static_call_update() of the calls the boot decided re-aims their
  //    trampolines too (__static_call_update: arch_static_call_transform(NULL, tramp, func, false)).
  for (const [tramp, func] of env.updatedStaticCalls) {
    const at = image.symbols.addressOf(tramp);
    const r = at === undefined ? undefined : staticCallBytes(at, func, true, env.staticCalls);
    if (r !== undefined) text.write(at!, r.bytes);
  }
  return { ...alternatives, jumpLabels, staticCalls, ftrace, runtimeConsts };
}

/** One patch site as other tools compare it: `{table, address, length, original, patched}`. */
export interface SiteBytes {
  readonly table: TableName;
  readonly index: number;
  readonly address: number;
  readonly length: number;
  readonly original: Uint8Array;
  /** Undefined when boot patching could not be reproduced (a module without its vmlinux). */
  readonly patched: Uint8Array | undefined;
}

function insnLength(image: KernelImage, addr: number): number {
  const win = image.read(addr, 1) === undefined ? undefined : windowOf(image, addr);
  return win === undefined ? 0 : decodeKernelInsn(win, addr)?.length ?? 0;
}

function windowOf(image: KernelImage, addr: number): Uint8Array | undefined {
  const s = image.sectionAt(addr);
  if (s === undefined) return undefined;
  const off = addr - s.addr;
  return s.bytes.subarray(off, Math.min(s.size, off + 15));
}

/** Every site of every table with its bytes before and (given the patched text) after boot patching. */
export function siteBytes(image: KernelImage, tables: PatchTables, text?: PatchedText): SiteBytes[] {
  const out: SiteBytes[] = [];
  const push = (table: TableName, index: number, address: number, length: number): void => {
    const original = image.read(address, length) ?? new Uint8Array(0);
    const patched = text === undefined ? undefined : (text.read(address, length) ?? new Uint8Array(0));
    out.push({ table, index, address, length: original.length, original, patched });
  };
  tables.parainstructions.forEach((p, i) => push('parainstructions', i, p.address, p.len));
  tables.altinstructions.forEach((a, i) => push('altinstructions', i, a.address, a.instrlen));
  tables.retpolineSites.forEach((a, i) => push('retpoline_sites', i, a, insnLength(image, a)));
  tables.returnSites.forEach((a, i) => push('return_sites', i, a, insnLength(image, a)));
  return out;
}
