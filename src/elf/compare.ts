/**
 * `inspect --compare`: the reproduced boot text against a running kernel's text (a QMP pmemsave
 * of the booted guest, or raw bytes with their start address). Every byte of `.text` where the two
 * differ is classified by the boot-time write that owns it (site tables in the kernel's order, the
 * last writer owning a byte) and why it differs:
 *   - `key-flipped`: a jump label whose site holds the other state's JMP/NOP: its key (named)
 *     was enabled or disabled after jump_label_init, at run time;
 *   - `static-call-updated`: a static call site or trampoline that reaches another function (or
 *     NOP/RET) than the key's boot function: static_call_update() ran later;
 *   - `run-time-value`: a runtime constant the kernel computed from memory at boot (d_hash_shift);
 *   - `unexplained`: anything else, listed with its mechanism (or `none`) and nearest symbol.
 * Counts: bytes boot changed (image vs running), of those reproduced, and all bytes identical.
 */
import { CALL_INSN_OPCODE, JMP32_INSN_OPCODE, rel32Target } from '../x86/relocate.ts';
import { jumpEntrySize, jumpLabelBytes } from './apply-jump-labels.ts';
import type { BootPatchResult } from './boot-patch.ts';
import { InspectError } from './errors.ts';
import { MapSymbols, type KernelImage } from './image.ts';
import { decodeKernelInsn } from './kernel-insn.ts';
import type { TableName } from './tables.ts';

export type Mechanism = TableName | 'static_call_tramp' | 'runtime_const' | 'none';
export type Difference = 'key-flipped' | 'static-call-updated' | 'run-time-value' | 'unexplained';

export interface DifferingRun {
  readonly address: number;
  readonly length: number;
  readonly mechanism: Mechanism;
  readonly difference: Difference;
  /** The key (jump label, static call) or nearest symbol. */
  readonly name: string | undefined;
  readonly original: Uint8Array;
  readonly reproduced: Uint8Array;
  readonly running: Uint8Array;
}

export interface TextComparison {
  readonly section: string;
  readonly bytes: number;
  /** Image byte != running byte. */
  readonly bootChanged: number;
  /** ...and the reproduction has the running byte. */
  readonly reproduced: number;
  /** Reproduced byte == running byte, over the whole section. */
  readonly identical: number;
  readonly byDifference: Readonly<Record<Difference, number>>;
  /** Differing bytes per mechanism and difference, `mechanism/difference` → bytes. */
  readonly byMechanism: ReadonlyMap<string, number>;
  /** Differing runs, one per site (or per run outside any site), in address order. */
  readonly runs: readonly DifferingRun[];
}

interface Owner {
  readonly mechanism: Mechanism;
  readonly address: number;
  readonly length: number;
  /** Index into the mechanism's table. */
  readonly index: number;
}

/** Which site last wrote each byte of the section, in kernel order. */
function owners(boot: BootPatchResult, start: number, size: number): { map: Int32Array; list: Owner[] } {
  const map = new Int32Array(size).fill(-1);
  const list: Owner[] = [];
  const own = (mechanism: Mechanism, address: number, length: number, index: number): void => {
    const from = Math.max(0, address - start);
    const to = Math.min(size, address + length - start);
    if (to <= from) return;
    const id = list.length;
    list.push({ mechanism, address, length, index });
    map.fill(id, from, to);
  };
  const t = boot.tables;
  t.jumpTable?.forEach((e, i) => own('jump_table', e.code, boot.jumpLabels[i]?.size ?? 5, i));
  t.staticCallSites?.forEach((s, i) => own('static_call_sites', s.address, 5, i));
  t.mcountLoc?.forEach((a, i) => own('mcount_loc', a, 5, i));
  t.parainstructions.forEach((p, i) => own('parainstructions', p.address, p.len, i));
  const len = (a: number): number => {
    const w = boot.image.read(a, 15) ?? boot.image.read(a, 5);
    return w === undefined ? 5 : (decodeKernelInsn(w, a)?.length ?? 5);
  };
  t.retpolineSites.forEach((a, i) => own('retpoline_sites', a, len(a), i));
  t.returnSites.forEach((a, i) => own('return_sites', a, len(a), i));
  t.altinstructions.forEach((a, i) => own('altinstructions', a.address, a.instrlen, i));
  t.endbrSeal.forEach((a, i) => own('ibt_endbr_seal', a, 4, i));
  if (boot.smpLocks.length > 0) t.smpLocks.forEach((a, i) => a !== undefined && own('smp_locks', a, 1, i));
  t.runtimeConsts.forEach((c, i) => c.sites.forEach((a) => own('runtime_const', a, c.kind === 'ptr' ? 8 : 1, i)));
  const syms = boot.image.symbols;
  if (syms instanceof MapSymbols) {
    for (const [name, addr] of syms.entries()) if (name.startsWith('__SCT__')) own('static_call_tramp', addr, 5, -1);
  }
  return { map, list };
}

/** A sorted symbol index for naming unexplained bytes (only when the image has a full symbol list). */
function nearestSymbol(image: KernelImage, textOnly: boolean): (addr: number) => string | undefined {
  const syms = image.symbols;
  if (!(syms instanceof MapSymbols)) return () => undefined;
  const rows = [...syms.entries()].filter(([, a]) => !textOnly || image.isText(a)).sort((a, b) => a[1] - b[1]);
  const addrs = Float64Array.from(rows, (r) => r[1]);
  return (addr) => {
    let lo = 0;
    let hi = addrs.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (addrs[mid]! <= addr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best < 0 ? undefined : `${rows[best]![0]}+0x${(addr - addrs[best]!).toString(16)}`;
  };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Why a site's running bytes differ from the reproduction. */
function classify(boot: BootPatchResult, o: Owner, running: Uint8Array, keyName: (addr: number) => string | undefined): { difference: Difference; name?: string } {
  const syms = boot.image.symbols;
  if (o.mechanism === 'jump_table') {
    const e = boot.tables.jumpTable![o.index]!;
    const size = jumpEntrySize(running, e.code);
    const st = boot.jumpLabels[o.index];
    if (size !== undefined && st?.enabled !== undefined) {
      const other = jumpLabelBytes(e, size, st.enabled === e.branch);
      if (other !== undefined && same(other, running.subarray(0, size))) return { difference: 'key-flipped', name: syms.nameAt(e.key) ?? keyName(e.key) };
    }
  }
  if (o.mechanism === 'runtime_const') {
    const c = boot.tables.runtimeConsts[o.index]!;
    // A value computed from memory at boot (the dentry hash); a modelled one that differs stays unexplained.
    if (boot.runtimeConsts[o.index]?.[0] === 'run-time-value') return { difference: 'run-time-value', name: c.symbol };
    return { difference: 'unexplained', name: c.symbol };
  }
  if (o.mechanism === 'static_call_sites' || o.mechanism === 'static_call_tramp') {
    const isBranch = running[0] === CALL_INSN_OPCODE || running[0] === JMP32_INSN_OPCODE;
    const isNopOrRet = (running[0] === 0x0f && running[1] === 0x1f) || running[0] === 0xc3 || (running[0] === 0x2e && running[3] === 0x31);
    if (isBranch || isNopOrRet) {
      const key = o.mechanism === 'static_call_sites' ? syms.nameAt(boot.tables.staticCallSites![o.index]!.key) : syms.nameAt(o.address)?.replace('__SCT__', '__SCK__');
      const to = isBranch ? syms.nameAt(rel32Target(running, o.address, 5)) : undefined;
      return { difference: 'static-call-updated', name: `${key ?? 'key ?'}${to !== undefined ? ` -> ${to}` : ''}` };
    }
  }
  return { difference: 'unexplained' };
}

/** Compare the reproduced `section` with `running`, whose first byte is at virtual address `runningBase`. */
export function compareText(boot: BootPatchResult, running: Uint8Array, runningBase: number, section = '.text'): TextComparison {
  const s = boot.image.section(section);
  if (s === undefined) throw new InspectError(`the image has no ${section} section to compare`);
  const off = s.addr - runningBase;
  if (off < 0 || off + s.size > running.length) {
    throw new InspectError(`the dump (${running.length} bytes from 0x${BigInt.asUintN(64, BigInt(runningBase)).toString(16)}) does not cover ${section} (${s.size} bytes at 0x${BigInt.asUintN(64, BigInt(s.addr)).toString(16)})`);
  }
  const real = running.subarray(off, off + s.size);
  const ours = boot.text.read(s.addr, s.size)!;
  const orig = s.bytes;
  const { map, list } = owners(boot, s.addr, s.size);
  const near = nearestSymbol(boot.image, true);
  let keyIndex: ((addr: number) => string | undefined) | undefined;
  const keyName = (addr: number): string | undefined => (keyIndex ??= nearestSymbol(boot.image, false))(addr);
  let bootChanged = 0;
  let reproduced = 0;
  let identical = 0;
  const byDifference: Record<Difference, number> = { 'key-flipped': 0, 'static-call-updated': 0, 'run-time-value': 0, unexplained: 0 };
  const byMechanism = new Map<string, number>();
  const runs: DifferingRun[] = [];
  let i = 0;
  while (i < s.size) {
    const o = orig[i]!;
    const w = real[i]!;
    const q = ours[i]!;
    if (o !== w) bootChanged++;
    if (q === w) {
      identical++;
      if (o !== w) reproduced++;
      i++;
      continue;
    }
    // A differing byte: the run is the owning site, or the maximal unowned differing run.
    const id = map[i]!;
    let from = i;
    let to = i + 1;
    if (id >= 0) {
      const site = list[id]!;
      from = Math.max(site.address - s.addr, 0);
      to = Math.min(site.address + site.length - s.addr, s.size);
    } else {
      while (to < s.size && map[to] === -1 && ours[to] !== real[to]) to++;
    }
    let differing = 0;
    for (let k = i; k < to; k++) {
      if (ours[k] !== real[k]) differing++;
      else identical++;
      if (orig[k] !== real[k]) bootChanged++;
      if (orig[k] !== real[k] && ours[k] === real[k]) reproduced++;
    }
    if (orig[i] !== real[i]) bootChanged--; // counted above for i already
    const owner = id >= 0 ? list[id]! : undefined;
    const c = owner === undefined ? { difference: 'unexplained' as const } : classify(boot, owner, real.subarray(from, Math.min(s.size, from + 15)), keyName);
    const mechanism: Mechanism = owner?.mechanism ?? 'none';
    byDifference[c.difference] += differing;
    const k = `${mechanism}/${c.difference}`;
    byMechanism.set(k, (byMechanism.get(k) ?? 0) + differing);
    runs.push({
      address: s.addr + from,
      length: to - from,
      mechanism,
      difference: c.difference,
      name: c.name ?? near(s.addr + from),
      original: orig.subarray(from, to),
      reproduced: ours.subarray(from, to),
      running: real.subarray(from, to),
    });
    i = to;
  }
  return { section, bytes: s.size, bootChanged, reproduced, identical, byDifference, byMechanism, runs };
}
