/**
 * One real image, read and boot-patched: what `pvpatch inspect` reports. Loads a vmlinux (or a
 * bzImage) or a module, reads its patch-site tables, reproduces alternative_instructions() for a
 * platform, CPU and command line, and (on request) judges every .parainstructions site for
 * switching between bare metal and a paravirt platform. Pure data out; the CLI formats it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { alternativeInstructions, bootTextWrites, siteBytes, type BootPatchResult, type SiteBytes } from './boot-patch.ts';
import { extractVmlinux } from './bzimage.ts';
import { featureName } from './cpufeatures.ts';
import { ElfFile } from './elf64.ts';
import { InspectError } from './errors.ts';
import { isModule, loadVmlinux, type KernelImage } from './image.ts';
import { loadModule } from './module.ts';
import { changedRuns, type ChangedRun } from './patched-text.ts';
import { parseKernelConfig, type KernelConfig } from './boot-keys.ts';
import { bootSetup, type BootOptions, type BootSetup, type Platform } from './platforms.ts';
import { pvOpsSlotName } from './pv-ops-slots.ts';
import { judgeSite, type SiteJudgement } from './site-analysis.ts';
import { readSymbolFile } from './system-map.ts';
import { readPatchTables, TABLE_SECTIONS, type PatchTables, type TableName } from './tables.ts';

export interface InspectOptions extends BootOptions {
  /** System.map or unstripped vmlinux naming the image's symbols. */
  readonly symbols?: string;
  /** For a module: the vmlinux it was built for (found beside it in the cache when omitted). */
  readonly vmlinux?: string;
  /** Judge .parainstructions sites for switching between bare metal and this platform. */
  readonly analyzeAgainst?: Platform;
}

export interface TableCount {
  readonly table: TableName;
  readonly section: string;
  /** Undefined when the image has no such table (or does not say where it is). */
  readonly entrySize: number | undefined;
  /** Table size in bytes. */
  readonly sectionBytes: number | undefined;
  readonly entries: number | undefined;
}

export interface InspectReport {
  readonly file: string;
  readonly kind: 'vmlinux' | 'module';
  readonly image: KernelImage;
  readonly tables: PatchTables;
  readonly counts: readonly TableCount[];
  /** Undefined for a module whose vmlinux could not be found. */
  readonly boot: { readonly setup: BootSetup; readonly result: BootPatchResult } | undefined;
  readonly bootUnavailable?: string;
  readonly sites: readonly SiteBytes[];
  readonly perSlot: readonly { slot: number; name: string; sites: number }[];
  readonly perFeature: readonly { feature: string; inverted: boolean; entries: number; applied: number }[];
  readonly judgements: ReadonlyMap<number, SiteJudgement> | undefined;
}

function readFile(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new InspectError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** vmlinux for a path: an ELF as is, a bzImage through its payload. */
export function loadKernelFile(path: string, symbolsPath?: string): KernelImage {
  const bytes = extractVmlinux(readFile(path), path);
  const elf = ElfFile.parse(bytes, path);
  if (isModule(elf)) throw new InspectError(`${path} is a module; give it as the image, not as --vmlinux`);
  return loadVmlinux(elf, symbolsPath === undefined ? undefined : readSymbolFile(readFile(symbolsPath), symbolsPath));
}

/** The cache keeps modules under <release>/modules/..., next to <release>/vmlinux. */
function vmlinuxBeside(modulePath: string): string | undefined {
  let dir = dirname(modulePath);
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'vmlinux');
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

function countTables(t: PatchTables): TableCount[] {
  return (Object.keys(TABLE_SECTIONS) as TableName[]).map((table) => {
    const size = t.sizes[table];
    return { table, section: TABLE_SECTIONS[table].section, entrySize: size?.entrySize, sectionBytes: size?.bytes, entries: size?.entries };
  });
}

/** The .config get-kernel.sh keeps beside a cached vmlinux (Debian's /boot/config-<release>). */
function configBeside(vmlinuxPath: string): KernelConfig | undefined {
  const path = join(dirname(vmlinuxPath), 'config');
  return existsSync(path) ? parseKernelConfig(new TextDecoder('latin1').decode(readFile(path))) : undefined;
}

/** A System.map kept beside a cached vmlinux (scripts/get-kernel.sh --symbols), for platforms that need names. */
function symbolsFor(vmlinuxPath: string, o: InspectOptions): string | undefined {
  if (o.symbols !== undefined) return o.symbols;
  const needNames = o.platform !== 'bare-metal' || o.analyzeAgainst !== undefined;
  const beside = join(dirname(vmlinuxPath), 'System.map');
  return needNames && existsSync(beside) ? beside : undefined;
}

export function inspect(path: string, o: InspectOptions): InspectReport {
  const raw = readFile(path);
  const elf = ElfFile.parse(extractVmlinux(raw, path), path);
  let image: KernelImage;
  let kernel: KernelImage | undefined;
  let bootUnavailable: string | undefined;
  if (isModule(elf)) {
    const vmlinuxPath = o.vmlinux ?? vmlinuxBeside(path);
    kernel = vmlinuxPath === undefined ? undefined : loadKernelFile(vmlinuxPath, symbolsFor(vmlinuxPath, o));
    image = loadModule(elf, kernel?.symbols);
    if (kernel === undefined) bootUnavailable = 'patching a module needs the vmlinux it was built for (--vmlinux): pv_ops and the thunks live there';
  } else {
    const symbols = symbolsFor(path, o);
    image = loadVmlinux(elf, symbols === undefined ? undefined : readSymbolFile(readFile(symbols), symbols));
    kernel = image;
  }
  const tables = readPatchTables(image);
  let boot: InspectReport['boot'];
  if (kernel !== undefined) {
    const kernelTables = kernel === image ? tables : readPatchTables(kernel);
    const v = kernelTables.layouts.version;
    if (o.platform !== 'bare-metal' && !(v.major === 6 && v.minor === 1)) {
      throw new InspectError(`platform ${o.platform} is modelled on Linux 6.1's pv_ops layout; this is ${v.release} (use --platform bare-metal)`);
    }
    const setup = bootSetup(kernel, kernelTables.parainstructions, { ...o, config: o.config ?? configBeside(kernel.file), nativePatch510: v.major === 5 && v.minor === 10 });
    // module_finalize patches a module's alternative_instructions() tables; its jump labels,
    // static calls and ftrace sites are written against keys that live in the vmlinux.
    const result = image === kernel ? bootTextWrites(image, tables, setup.env) : { ...alternativeInstructions(image, tables, setup.env), jumpLabels: [], staticCalls: [], ftrace: [], runtimeConsts: [] };
    boot = { setup, result };
  }
  const sites = siteBytes(image, tables, boot?.result.text);

  const slotCounts = new Map<number, number>();
  for (const p of tables.parainstructions) slotCounts.set(p.type, (slotCounts.get(p.type) ?? 0) + 1);
  const perSlot = [...slotCounts].sort((a, b) => a[0] - b[0]).map(([slot, n]) => ({ slot, name: pvOpsSlotName(slot), sites: n }));
  const feats = new Map<string, { feature: string; inverted: boolean; entries: number; applied: number }>();
  tables.altinstructions.forEach((a, i) => {
    const key = `${a.inverted ? '!' : ''}${a.feature}`;
    const e = feats.get(key) ?? { feature: featureName(a.feature), inverted: a.inverted, entries: 0, applied: 0 };
    e.entries++;
    if (boot?.result.alternatives[i] === 'patched') e.applied++;
    feats.set(key, e);
  });
  const perFeature = [...feats.values()].sort((a, b) => b.entries - a.entries || a.feature.localeCompare(b.feature));

  let judgements: Map<number, SiteJudgement> | undefined;
  if (o.analyzeAgainst !== undefined && boot !== undefined && kernel !== undefined) {
    judgements = judgeParaSites(image, tables, kernel, o, boot.result);
  }
  return { file: path, kind: image.kind, image, tables, counts: countTables(tables), boot, bootUnavailable, sites, perSlot, perFeature, judgements };
}

/** Native (bare metal) vs paravirt form of each .parainstructions site, keyed by table index. */
function judgeParaSites(image: KernelImage, tables: PatchTables, kernel: KernelImage, o: InspectOptions, current: BootPatchResult): Map<number, SiteJudgement> {
  const kernelTables = kernel === image ? tables : readPatchTables(kernel);
  const boot = (platform: Platform): BootPatchResult =>
    platform === o.platform ? current : { ...alternativeInstructions(image, tables, bootSetup(kernel, kernelTables.parainstructions, { ...o, platform, standInForUnnamed: true }).env), jumpLabels: [], staticCalls: [], ftrace: [], runtimeConsts: [] };
  const native = boot('bare-metal');
  const pv = boot(o.analyzeAgainst!);
  const out = new Map<number, SiteJudgement>();
  tables.parainstructions.forEach((p, i) => {
    const a = native.text.read(p.address, p.len);
    const b = pv.text.read(p.address, p.len);
    if (a !== undefined && b !== undefined) out.set(i, judgeSite(p.address, a.slice(), b.slice(), p.type));
  });
  return out;
}

/** Every byte boot patching changed, as runs (for --diff). */
export function bootDiff(r: InspectReport): ChangedRun[] {
  return r.boot === undefined ? [] : changedRuns(r.boot.result.text);
}
