/**
 * alternative_instructions() (Linux 6.1 arch/x86/kernel/alternative.c), the boot-time patching
 * of one image, in the kernel's order and for the kernel's reasons:
 *   1. apply_paravirt: indirect pv_ops calls become direct calls (or NOPs);
 *   2. apply_retpolines, 3. apply_returns: before alternatives, "since those can rewrite the
 *      retpoline thunks", and because replacements are copied from .altinstr_replacement, which
 *      has its own retpoline and return sites;
 *   4. apply_alternatives: inline replacements over the direct calls of step 1.
 * (paravirt_set_cap, which sets the artificial features step 4 reads, is part of the BootEnv.)
 * The result is the patched text plus, per table, each site's outcome.
 */
import { applyAlternatives, type AltOutcome } from './apply-alternatives.ts';
import { paravirtPatch } from './apply-paravirt.ts';
import { applyRetpolines, type RetpolineOutcome } from './apply-retpolines.ts';
import { applyReturns, type ReturnOutcome } from './apply-returns.ts';
import type { BootEnv } from './boot-env.ts';
import type { KernelImage } from './image.ts';
import { decodeKernelInsn } from './kernel-insn.ts';
import { PatchedText } from './patched-text.ts';
import type { PatchTables, TableName } from './tables.ts';

export interface BootPatchResult {
  readonly image: KernelImage;
  readonly tables: PatchTables;
  readonly text: PatchedText;
  readonly paravirt: readonly ('patched' | 'bad-entry')[];
  readonly retpolines: readonly RetpolineOutcome[];
  readonly returns: readonly ReturnOutcome[];
  readonly alternatives: readonly AltOutcome[];
}

export function alternativeInstructions(image: KernelImage, tables: PatchTables, env: BootEnv): BootPatchResult {
  const text = new PatchedText(image);
  const paravirt = tables.parainstructions.map((p) => {
    const orig = text.read(p.address, p.len);
    const bytes = orig === undefined ? undefined : paravirtPatch(p, orig, env);
    if (bytes === undefined) return 'bad-entry' as const;
    text.write(p.address, bytes);
    return 'patched' as const;
  });
  const retpolines = applyRetpolines(tables.retpolineSites, text, env);
  const returns = applyReturns(tables.returnSites, text, env);
  const alternatives = applyAlternatives(tables.altinstructions, text, env);
  return { image, tables, text, paravirt, retpolines, returns, alternatives };
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
