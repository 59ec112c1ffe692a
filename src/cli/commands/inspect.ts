/**
 * `pvpatch inspect <vmlinux|bzImage|module.ko>`: the patch-site tables of a real kernel, the
 * bytes its boot-time patching writes for a platform / CPU / command line, and (with --analyze)
 * which protocol could switch each pv_ops site at run time. `--json` for tools: every site is
 * `{table, address, length, original, patched}` with hex strings.
 */
import { disassemble, hexAddress, hexBytes } from '../../x86/format.ts';
import { featureName } from '../../elf/cpufeatures.ts';
import { versionString } from '../../elf/kernel-version.ts';
import { InspectError } from '../../elf/errors.ts';
import { bootDiff, inspect, type InspectReport } from '../../elf/inspect.ts';
import { PLATFORMS, type Platform } from '../../elf/platforms.ts';
import { pvOpsSlotName } from '../../elf/pv-ops-slots.ts';
import type { SiteJudgement } from '../../elf/site-analysis.ts';
import { FlagError, inputFileFlag, textFlag } from '../flags.ts';
import { checkOutputPath } from '../write-file.ts';
import { compareWithDump, comparisonJson, comparisonText, emitText, parseDumpBase } from './inspect-compare.ts';

export interface InspectFlags {
  platform: Platform;
  features: string;
  cmdline: string;
  symbols?: string;
  vmlinux?: string;
  site?: string;
  json?: boolean;
  diff?: boolean;
  analyze?: string | boolean;
  compare?: string;
  dumpBase: string;
  emitText?: string;
}

const n = (x: number): string => x.toLocaleString('en-US');

function parseAddress(text: string): number {
  const t = text.trim().toLowerCase();
  if (!/^(0x)?[0-9a-f]{1,16}$/.test(t)) throw new InspectError(`--site wants a hex address like 0xffffffff81001234, not '${text}'`);
  return Number(BigInt.asIntN(64, BigInt(t.startsWith('0x') ? t : `0x${t}`)));
}

function table(rows: (string | number)[][], right: number[] = []): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? n(c) : c)));
  const w = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => '  ' + r.map((c, i) => (right.includes(i) ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd()).join('\n');
}

function judgementJson(j: SiteJudgement) {
  return {
    native: hexBytes(j.native.bytes),
    paravirt: hexBytes(j.paravirt.bytes),
    nativeBoundaries: j.native.boundaries,
    paravirtBoundaries: j.paravirt.boundaries,
    returnHazards: j.returnHazards,
    textPokeBpEmulates: j.textPokeBpEmulates,
    protocols: j.protocols,
    reason: j.reason,
  };
}

function toJson(r: InspectReport, flags: InspectFlags) {
  const boot = r.boot;
  return {
    file: r.file,
    kind: r.kind,
    version: { release: r.tables.layouts.version.release, version: versionString(r.tables.layouts.version) },
    tables: Object.fromEntries(r.counts.map((c) => [c.table, { section: c.section, entrySize: c.entrySize, sectionBytes: c.sectionBytes ?? null, entries: c.entries ?? null }])),
    boot: boot === undefined
      ? { unavailable: r.bootUnavailable }
      : {
          platform: boot.setup.options.platform,
          cpu: boot.setup.options.cpu,
          cmdline: boot.setup.options.cmdline,
          features: [...boot.setup.cpu.features].sort((a, b) => a - b).map(featureName),
          returnThunk: boot.setup.cpu.returnThunk,
          pvOps: boot.setup.pvOps.address === undefined ? null : hexAddress(boot.setup.pvOps.address),
        },
    perSlot: r.perSlot,
    perFeature: r.perFeature,
    sites: r.sites.map((s) => {
      const j = s.table === 'parainstructions' ? r.judgements?.get(s.index) : undefined;
      return {
        table: s.table,
        address: hexAddress(s.address),
        length: s.length,
        original: hexBytes(s.original),
        patched: s.patched === undefined ? null : hexBytes(s.patched),
        ...(s.table === 'parainstructions' ? { slot: pvOpsSlotName(r.tables.parainstructions[s.index]!.type) } : {}),
        ...(s.table === 'altinstructions' ? altJson(r, s.index) : {}),
        ...(j !== undefined ? { switch: judgementJson(j) } : {}),
      };
    }),
    // Bytes, not disassembly: 9k jump labels and 8k static calls through the formatter cost seconds.
    jumpTable: r.tables.jumpTable?.map((e, i) => ({ code: hexAddress(e.code), target: hexAddress(e.target), key: hexAddress(e.key), keyName: r.image.symbols.nameAt(e.key) ?? null, branch: e.branch, objtoolNop: e.objtoolNop, ...siteHex(r, e.code, boot?.result.jumpLabels[i]?.size ?? 5) })) ?? null,
    staticCallSites: r.tables.staticCallSites?.map((c) => ({ address: hexAddress(c.address), key: hexAddress(c.key), keyName: r.image.symbols.nameAt(c.key) ?? null, tail: c.tail, init: c.init, ...siteHex(r, c.address, 5) })) ?? null,
    ...(flags.diff === true ? { diff: bootDiff(r).map((d) => ({ address: hexAddress(d.address), original: hexBytes(d.original), patched: hexBytes(d.patched) })) } : {}),
  };
}

/** A jump-label or static-call site's bytes in the image and after boot (hex). */
function siteHex(r: InspectReport, address: number, length: number): { original: string | null; patched: string | null } {
  const o = r.image.read(address, length);
  const p = r.boot?.result.text.read(address, length);
  return { original: o === undefined ? null : hexBytes(o), patched: p === undefined ? null : hexBytes(p) };
}

function altJson(r: InspectReport, i: number) {
  const a = r.tables.altinstructions[i]!;
  return { feature: `${a.inverted ? '!' : ''}${featureName(a.feature)}`, replacement: hexAddress(a.replacement), replacementLength: a.replacementlen };
}

function disasmBlock(label: string, bytes: Uint8Array, address: number): string {
  const lines = disassemble(bytes, address).map((l) => `      ${hexAddress(l.address)}  ${hexBytes(l.bytes).padEnd(24)}  ${l.text}`);
  return [`    ${label}: ${hexBytes(bytes)}`, ...lines].join('\n');
}

function siteText(r: InspectReport, address: number): string {
  const hits = r.sites.filter((s) => s.address === address || (address > s.address && address < s.address + s.length));
  if (hits.length === 0) throw new InspectError(`no patch site covers ${hexAddress(address)} (${r.sites.length} sites in ${r.file})`);
  const out: string[] = [];
  for (const s of hits) {
    let what = s.table;
    if (s.table === 'parainstructions') what += `  pv_ops slot ${r.tables.parainstructions[s.index]!.type} (${pvOpsSlotName(r.tables.parainstructions[s.index]!.type)})`;
    if (s.table === 'altinstructions') {
      const a = r.tables.altinstructions[s.index]!;
      what += `  #${s.index}  feature ${a.inverted ? 'ALT_NOT(' : ''}${featureName(a.feature)}${a.inverted ? ')' : ''}  replacement ${hexAddress(a.replacement)} (${a.replacementlen} bytes)`;
      if (r.boot !== undefined) what += `  ${r.boot.result.alternatives[s.index]}`;
    }
    out.push(`${hexAddress(s.address)}  ${s.length} bytes  ${what}`);
    out.push(disasmBlock('original', s.original, s.address));
    out.push(s.patched === undefined ? `    patched: (${r.bootUnavailable})` : disasmBlock('patched ', s.patched, s.address));
    const j = s.table === 'parainstructions' ? r.judgements?.get(s.index) : undefined;
    if (j !== undefined) {
      out.push(`    runtime switch bare-metal <-> paravirt: ${j.protocols.length > 0 ? j.protocols.join(', ') : 'no protocol'} (${j.reason})`);
      out.push(disasmBlock('paravirt', j.paravirt.bytes, s.address));
      out.push(`      native boundaries ${j.native.boundaries.join(',')}   paravirt boundaries ${j.paravirt.boundaries.join(',')}`);
    }
  }
  return out.join('\n');
}

function summaryText(r: InspectReport, flags: InspectFlags): string {
  const out: string[] = [];
  out.push(`${r.kind} ${r.file}: ${r.image.elf.sections.length} sections`);
  const v = r.tables.layouts.version;
  out.push(`Linux ${versionString(v)} (${v.release}), from ${v.source.startsWith('vermagic') ? 'the module vermagic' : 'linux_banner'}`);
  out.push(`\nPatch-site tables (entries = table bytes / entry size, the layouts of Linux ${v.major}.${v.minor})`);
  out.push(table([['table', 'section', 'entries', 'entry', 'bytes'], ...r.counts.map((c) => [c.table, c.section, c.entries ?? '-', c.entrySize ?? '-', c.sectionBytes ?? '(absent)'])], [2, 3, 4]));
  if (r.boot === undefined) {
    out.push(`\nBoot patching: not reproduced: ${r.bootUnavailable}`);
  } else {
    const b = r.boot;
    const o = b.setup.options;
    out.push(`\nBoot patching for ${o.platform}, CPU ${o.cpu}, command line "${o.cmdline}" (return thunk ${b.setup.cpu.returnThunk})`);
    const tally = (xs: readonly string[]): string => [...xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>())].map(([k, v]) => `${k} ${n(v)}`).join(', ');
    const changed = (t: string): number => r.sites.filter((s) => s.table === t && s.patched !== undefined && s.patched.some((x, i) => x !== s.original[i])).length;
    out.push(table([
      ['pass (kernel order)', 'sites', 'changed', 'outcomes'],
      ['jump_label_init', b.result.jumpLabels.length, '-', tally(b.result.jumpLabels.map((j) => j.outcome))],
      ['static_call_init', b.result.staticCalls.length, '-', tally(b.result.staticCalls)],
      ['ftrace_init', b.result.ftrace.length, '-', tally(b.result.ftrace)],
      ['apply_paravirt', b.result.paravirt.length, changed('parainstructions'), tally(b.result.paravirt)],
      ['apply_retpolines', b.result.retpolines.length, changed('retpoline_sites'), tally(b.result.retpolines)],
      ['apply_returns', b.result.returns.length, changed('return_sites'), tally(b.result.returns)],
      ['apply_alternatives', b.result.alternatives.length, changed('altinstructions'), tally(b.result.alternatives)],
      ['apply_seal_endbr', b.result.endbr.length, '-', tally(b.result.endbr)],
      ['alternatives_smp_unlock', b.result.smpLocks.length, '-', b.setup.env.uniprocessor ? tally(b.result.smpLocks) : 'SMP boot: lock prefixes kept'],
    ], [1, 2]));
    for (const note of b.setup.env.notes) out.push(`  boot decision: ${note}`);
    out.push(`  ${n(bootDiff(r).reduce((s, d) => s + d.original.length, 0))} bytes changed in total (--diff lists them)`);
  }
  out.push('\n.parainstructions sites per pv_ops slot');
  out.push(table([['slot', 'pv_ops member', 'sites'], ...r.perSlot.map((s) => [s.slot, s.name, s.sites])], [0, 2]));
  out.push('\n.altinstructions entries per feature' + (r.boot === undefined ? '' : ' (applied = replacement copied)'));
  out.push(table([['feature', 'entries', 'applied'], ...r.perFeature.map((f) => [`${f.inverted ? '!' : ''}${f.feature}`, f.entries, r.boot === undefined ? '-' : f.applied])], [1, 2]));
  if (r.judgements !== undefined) {
    const js = [...r.judgements.values()].filter((j) => j.differs);
    const key = (j: SiteJudgement): string => (j.protocols.length === 0 ? 'none' : j.protocols.join('+'));
    const by = js.reduce((m, j) => m.set(key(j), (m.get(key(j)) ?? 0) + 1), new Map<string, number>());
    out.push(`\nRuntime switch bare-metal <-> ${flags.analyze === true ? 'kvm' : String(flags.analyze)}: ${n(js.length)} of ${n(r.judgements.size)} pv_ops sites differ`);
    out.push(table([['protocols that can switch', 'sites'], ...[...by].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v])], [1]));
    const hazard = js.find((j) => j.returnHazards.length > 0);
    if (hazard !== undefined) out.push(`  e.g. ${hexAddress(hazard.address)}: ${hazard.reason}`);
  }
  return out.join('\n');
}

/** Flags that name files must name files; flags that would be ignored are refused (issue 13). */
function checkInspectFlags(image: string, flags: InspectFlags): void {
  textFlag(flags.site, 'site');
  textFlag(flags.features, 'features');
  inputFileFlag(flags.symbols, 'symbols');
  inputFileFlag(flags.vmlinux, 'vmlinux');
  inputFileFlag(flags.compare, 'compare');
  if (flags.emitText !== undefined) checkOutputPath(flags.emitText, '--emit-text');
  if (flags.diff === true && flags.site !== undefined) throw new FlagError('--diff lists every changed byte and --site shows one site: give one of them');
}

/** `pvpatch inspect IMAGE`: the action behind its definition (src/cli/commands/definitions.ts). */
export function inspectCommand(image: string, flags: InspectFlags): void {
  checkInspectFlags(image, flags);
  const against = flags.analyze === undefined ? undefined : flags.analyze === true ? 'kvm' : flags.analyze;
  if (against !== undefined && !PLATFORMS.includes(against as Platform)) throw new InspectError(`--analyze wants one of ${PLATFORMS.join(', ')}, not '${against}'`);
  const site = flags.site === undefined ? undefined : parseAddress(flags.site);
  const r = inspect(image, {
    platform: flags.platform,
    cpu: flags.features,
    cmdline: flags.cmdline,
    symbols: flags.symbols,
    vmlinux: flags.vmlinux,
    analyzeAgainst: (against ?? (site !== undefined ? (flags.platform === 'bare-metal' ? 'kvm' : flags.platform) : undefined)) as Platform | undefined,
  });
  if (flags.vmlinux !== undefined && r.kind !== 'module') throw new FlagError(`--vmlinux does not apply: it names the kernel a module belongs to, and ${image} is a ${r.kind}`);
  if (flags.emitText !== undefined) emitText(r, flags.emitText);
  if (flags.compare !== undefined) {
    const c = compareWithDump(r, flags.compare, parseDumpBase(flags.dumpBase));
    process.stdout.write((flags.json === true ? JSON.stringify({ file: r.file, version: r.tables.layouts.version.release, compare: comparisonJson(c) }) : comparisonText(c)) + '\n');
    return;
  }
  if (flags.json === true) {
    const j = toJson(r, flags);
    process.stdout.write(JSON.stringify(site === undefined ? j : { ...j, sites: j.sites.filter((s) => BigInt(s.address) === BigInt.asUintN(64, BigInt(site))) }) + '\n');
    return;
  }
  if (site !== undefined) {
    process.stdout.write(siteText(r, site) + '\n');
    return;
  }
  if (flags.diff === true) {
    process.stdout.write(bootDiff(r).map((d) => `${hexAddress(d.address)}  ${hexBytes(d.original)}  ->  ${hexBytes(d.patched)}\n`).join(''));
    return;
  }
  process.stdout.write(summaryText(r, flags) + '\n');
}
